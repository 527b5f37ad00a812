"""Per-case records → per (model, system) results with confidence intervals.

Failed calls (outcome ``error``) are counted apart and left out of every rate's denominator: an
outage is not a wrong code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytest_medcode.records import CORRECT, ERROR, NO_CODE
from pytest_medcode.stats import bootstrap_mean, wilson


def _group_key(record: dict[str, Any]) -> tuple[str, str]:
    return record["model"], record["system"]


def group_records(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(_group_key(record), []).append(record)
    return groups


def summarize_group(records: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    answered = [r for r in records if r["outcome"] != ERROR]
    n = len(answered)

    def proportion(field: str) -> dict[str, Any]:
        return wilson(sum(1 for r in answered if r[field]), n).to_dict()

    def mean(field: str) -> dict[str, Any]:
        return bootstrap_mean([float(r[field]) for r in answered], seed=seed).to_dict()

    return {
        "n": len(records),
        "answered": n,
        "errors": len(records) - n,
        "correct": sum(1 for r in answered if r["outcome"] == CORRECT),
        "no_code": sum(1 for r in answered if r["outcome"] == NO_CODE),
        "exact_match": proportion("exact_match"),
        "valid": proportion("valid"),
        "billable": proportion("billable"),
        "fabricated": proportion("fabricated"),
        "length_match": proportion("length_match"),
        "codes_per_answer": mean("n_codes"),
        "digit_match": mean("digit_match"),
    }


def summarize(records: Iterable[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """One row per (model, system), in the order the cases were run."""
    return [
        {"model": model, "system": system, **summarize_group(rows, seed)}
        for (model, system), rows in group_records(records).items()
    ]
