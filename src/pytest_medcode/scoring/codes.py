"""Per-case code metrics, as the study defined them (the authors' ``Code/Analysis.py``), and the answer → fields step.

Pure functions of (reference code, predicted code, code system); "no code" is an explicit None
and scores as not exact, not valid, length 0, no digits matched. Two profiles:

- ``default``: ``valid`` = the code exists at category level or below, ``billable`` = a billable leaf,
  ``fabricated`` = the answer names a code that exists nowhere (an answer with no code is neither);
- ``paper``: the authors' definitions - ``valid`` = ``billable`` = the code with dots removed is in the
  billable list; ``fabricated`` = not valid (their tables add valid and fabricated to 100 %); no CPT check
  (all three None for CPT); a description only for a code spelled exactly as the table spells it.

Exact match (string equality), matched length and matched digits are the same function in both; they
differ only through what each profile's extractor reads.
"""

from __future__ import annotations

import threading
from typing import Any

from pytest_medcode.codesystems import CodeSystem
from pytest_medcode.scoring.crosswalk import EMPTY as NO_CROSSWALK
from pytest_medcode.scoring.crosswalk import crosswalk_metrics
from pytest_medcode.scoring.hierarchy import FLAG_LEVELS, hierarchy_metrics
from pytest_medcode.scoring.parsing import PROFILES as PARSERS
from pytest_medcode.scoring.parsing import extract

#: The scoring profiles, one per way of reading an answer (scoring/parsing.py).
PROFILES: tuple[str, ...] = tuple(PARSERS)


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


_BILLABLE_KEYS: dict[int, tuple[CodeSystem, frozenset[str]]] = {}
_LOCK = threading.Lock()


def billable_keys(system: CodeSystem) -> frozenset[str]:
    """The billable list as the authors matched against it: codes without dots."""
    held = _BILLABLE_KEYS.get(id(system))
    if held is None or held[0] is not system:
        with _LOCK:
            held = _BILLABLE_KEYS.get(id(system))
            if held is None or held[0] is not system:
                keys = frozenset(code.replace(".", "") for code, _ in system.billable_codes())
                held = _BILLABLE_KEYS[id(system)] = (system, keys)
    return held[1]


def _shared_metrics(reference: str, predicted: str | None) -> dict[str, Any]:
    return {
        "exact_match": predicted == reference,
        "length_match": length_match(reference, predicted),
        "digit_match": digit_match(reference, predicted),
        "digit_positions": digit_positions(reference, predicted),
    }


def code_metrics(system: CodeSystem, reference: str, predicted: str | None, profile: str = "default") -> dict[str, Any]:
    """exact, valid, billable, fabricated, length, digits and the predicted code's description (module doc)."""
    entry = system.lookup(predicted) if predicted is not None else None
    if profile == "paper":
        if system.name == "cpt":  # the study checked no CPT code against a list
            valid = None
        else:
            valid = predicted is not None and predicted.replace(".", "") in billable_keys(system)
        resolved = entry is not None and entry.code == predicted  # as a UMLS lookup of that exact string
        return {
            **_shared_metrics(reference, predicted),
            "valid": valid,
            "billable": valid,
            "fabricated": None if valid is None else not valid,
            "predicted_description": entry.description if resolved and entry is not None else None,
        }
    if profile != "default":
        raise ValueError(f"unknown scoring profile {profile!r}; choose from {', '.join(PROFILES)}")
    return {
        **_shared_metrics(reference, predicted),
        "valid": entry is not None,
        "billable": bool(entry and entry.billable),
        "fabricated": predicted is not None and entry is None,
        "predicted_description": entry.description if entry else None,
    }


def score_answer(system: CodeSystem, reference: str, text: str, profile: str = "default") -> dict[str, Any]:
    """Every per-case field that follows from a raw answer, under ``profile``.

    ``predicted_code`` is the profile's reading. ``codes`` and ``n_codes`` (over-generation) always use the
    default reading - every whole code of the system named in the answer - since the paper's extractor
    reads one code only. Hierarchy and other-system fields are computed alike in both profiles.
    """
    parsed = extract(system.name, text, profile)
    counted = parsed if profile == "default" else extract(system.name, text, "default")
    predicted = parsed.predicted
    metrics = code_metrics(system, reference, predicted, profile)
    valid, billable = metrics["valid"], metrics["billable"]
    return {
        "profile": profile,
        "codes": list(counted.codes),
        "predicted_code": predicted,
        "n_codes": counted.n_codes,
        **metrics,
        "valid_not_billable": None if valid is None else bool(valid and not billable),
        **hierarchy_metrics(system, reference, predicted),
        **crosswalk_metrics(system, reference, predicted, text),
    }


def unscored_fields(profile: str = "default") -> dict[str, Any]:
    """The answer-derived fields of a case whose call failed: nothing was read, nothing is scored."""
    return {
        "profile": profile,
        "codes": [],
        "predicted_code": None,
        "n_codes": 0,
        "exact_match": None,
        "valid": None,
        "billable": None,
        "fabricated": None,
        "length_match": None,
        "digit_match": None,
        "digit_positions": [],
        "predicted_description": None,
        "valid_not_billable": None,
        "hierarchy_level": None,
        **{f"same_{lv}": None for lv in FLAG_LEVELS},
        "closeness": None,
        **NO_CROSSWALK,
    }
