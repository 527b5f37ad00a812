"""Per-case code metrics, as the study defined them (REFERENCE.md §1).

Pure functions of (reference code, predicted code, code system); "no code" is an explicit None
and scores as not exact, not valid, length 0, no digits matched.
"""

from __future__ import annotations

from typing import Any

from pytest_medcode.codesystems import CodeSystem


def length_match(reference: str, predicted: str | None) -> bool:
    """Same length, dots included."""
    return predicted is not None and len(predicted) == len(reference)


def digit_match(reference: str, predicted: str | None) -> float:
    """Share of the reference's non-dot characters equal to the prediction's at the same index."""
    positions = [i for i, ch in enumerate(reference) if ch != "."]
    if not positions:
        return 0.0
    if predicted is None:
        return 0.0
    hits = sum(1 for i in positions if i < len(predicted) and predicted[i] == reference[i])
    return hits / len(positions)


def digit_positions(reference: str, predicted: str | None) -> list[bool]:
    """Per non-dot position k of the reference: did the prediction match there (for by-position tables)."""
    return [
        predicted is not None and i < len(predicted) and predicted[i] == reference[i]
        for i, ch in enumerate(reference)
        if ch != "."
    ]


def code_metrics(system: CodeSystem, reference: str, predicted: str | None) -> dict[str, Any]:
    """exact, valid (exists at category level or below), billable, fabricated (exists nowhere), length, digits."""
    entry = system.lookup(predicted) if predicted is not None else None
    return {
        "exact_match": predicted == reference,
        "valid": entry is not None,
        "billable": bool(entry and entry.billable),
        "fabricated": predicted is not None and entry is None,
        "length_match": length_match(reference, predicted),
        "digit_match": digit_match(reference, predicted),
        "digit_positions": digit_positions(reference, predicted),
        "predicted_description": entry.description if entry else None,
    }
