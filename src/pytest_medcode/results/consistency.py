"""Case dimensions beyond (model, system): robustness variants, temperature sweeps, repeats.

- :func:`self_consistency` — with ``--medcode-repeats K``: per (model, system, variant, temperature)
  group, how often the K answers to one question agree, and exact match per repeat;
- :func:`pivot` — exact match with one column per value of a dimension (how each coder degrades), which
  the terminal prints as "exact match by variant / temperature".

Agreement of a case is the share of its answered repeats that gave its most frequent predicted
code (no code counts as an answer of its own); 1.0 when all agree. ``unanimous`` is the share of
cases whose answered repeats all agree; ``majority_exact`` scores the most frequent code of each
case (self-consistency voting, ties to the code given first); ``any_exact`` is pass@K. Repeats whose
call failed are left out, as everywhere; a case with no answered repeat is left out of the group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_medcode.results.stats import wilson
from pytest_medcode.vocabulary import DIMENSIONS, answered

__all__ = ["pivot", "self_consistency"]

def _case_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["model"], record["system"], record.get("variant", "exact"), record.get("temperature"),
            record["code"])


def self_consistency(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, system, variant, temperature) group of a run with repeats; [] without."""
    cases: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in records:
        if record.get("repeat") is None:
            continue
        cases.setdefault(_case_key(record), []).append(record)
    groups: dict[tuple[Any, ...], list[list[dict[str, Any]]]] = {}
    for key, rows in cases.items():
        groups.setdefault(key[:4], []).append(sorted(rows, key=lambda r: r["repeat"]))
    out = []
    for (model, system, variant, temperature), per_case in groups.items():
        repeats = max(r["repeat"] for rows in per_case for r in rows) + 1
        agreement, unanimous, majority, any_exact = [], 0, 0, 0
        per_repeat_hits = [0] * repeats
        per_repeat_n = [0] * repeats
        for rows in per_case:
            done = answered(rows)
            for r in done:
                per_repeat_n[r["repeat"]] += 1
                per_repeat_hits[r["repeat"]] += bool(r.get("exact_match"))
            if not done:
                continue
            votes = Counter(r.get("predicted_code") for r in done)
            top = max(votes.values())
            modal = next(r.get("predicted_code") for r in done if votes[r.get("predicted_code")] == top)
            agreement.append(top / len(done))
            unanimous += top == len(done)
            majority += modal is not None and modal == rows[0]["code"]
            any_exact += any(r.get("exact_match") for r in done)
        n = len(agreement)
        out.append({
            "model": model, "system": system, "variant": variant, "temperature": temperature,
            "repeats": repeats, "cases": n,
            "agreement": sum(agreement) / n if n else None,
            "unanimous": wilson(unanimous, n).to_dict(),
            "majority_exact": wilson(majority, n).to_dict(),
            "any_exact": wilson(any_exact, n).to_dict(),
            "exact_per_repeat": [h / m if m else None for h, m in zip(per_repeat_hits, per_repeat_n)],
        })
    return out


def pivot(results: Sequence[dict[str, Any]], dimension: str) -> tuple[list[str], list[Any], list[tuple[Any, ...]]]:
    """Results rows → (row label fields, values of ``dimension``, [(*labels, [exact match per value])]).

    Rows are (model, system) plus any other varied dimension, so a variant × temperature run gets
    one line per (model, system, temperature) in the variant pivot and vice versa."""
    others = [d for d in DIMENSIONS if d != dimension and any(d in row for row in results)]
    fields = ["model", "system", *others]
    values: list[Any] = []
    cells: dict[tuple[Any, ...], dict[Any, Any]] = {}
    for row in results:
        value = row.get(dimension, DIMENSIONS.get(dimension))
        if value not in values:
            values.append(value)
        label = tuple(row.get(f) for f in fields)
        cells.setdefault(label, {})[value] = row["exact_match"]["value"]
    return fields, values, [(*label, [per.get(v) for v in values]) for label, per in cells.items()]
