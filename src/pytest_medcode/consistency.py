"""Case dimensions beyond (model, system): robustness variants, temperature sweeps, repeats.

- :func:`group_fields` — how to group records for the results table: (model, system) plus
  ``variant`` / ``temperature`` when the run varies them;
- :func:`self_consistency` — with ``--medcode-repeats K``: per (model, system, variant, temperature)
  group, how often the K answers to one question agree, and exact match per repeat;
- :func:`pivot` and the ``render_*`` functions — the terminal sections ("exact match by variant",
  "self-consistency") the session prints under the main table.

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

from pytest_medcode.stats import wilson

__all__ = ["DIMENSIONS", "group_fields", "pivot", "render_consistency", "render_pivot", "self_consistency"]

#: Dimensions a run may vary, with the value meaning "not varied".
DIMENSIONS: dict[str, Any] = {"variant": "exact", "temperature": None}
_ERROR = "error"


def group_fields(records: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """``("model", "system")`` plus each dimension some record carries a non-default value of."""
    records = list(records)
    extra = [d for d, default in DIMENSIONS.items() if any(r.get(d, default) != default for r in records)]
    return ("model", "system", *extra)


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
            answered = [r for r in rows if r.get("outcome") != _ERROR]
            for r in answered:
                per_repeat_n[r["repeat"]] += 1
                per_repeat_hits[r["repeat"]] += bool(r.get("exact_match"))
            if not answered:
                continue
            votes = Counter(r.get("predicted_code") for r in answered)
            top = max(votes.values())
            modal = next(r.get("predicted_code") for r in answered if votes[r.get("predicted_code")] == top)
            agreement.append(top / len(answered))
            unanimous += top == len(answered)
            majority += modal is not None and modal == rows[0]["code"]
            any_exact += any(r.get("exact_match") for r in answered)
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


def pivot(results: Sequence[dict[str, Any]], dimension: str) -> tuple[list[str], list[Any], list[tuple]]:
    """Results rows → (row label fields, values of ``dimension``, [(*labels, [exact match per value])]).

    Rows are (model, system) plus any other varied dimension, so a variant × temperature run gets
    one line per (model, system, temperature) in the variant pivot and vice versa."""
    others = [d for d in DIMENSIONS if d != dimension and any(d in row for row in results)]
    fields = ["model", "system", *others]
    values: list[Any] = []
    cells: dict[tuple, dict[Any, Any]] = {}
    for row in results:
        value = row.get(dimension, DIMENSIONS.get(dimension))
        if value not in values:
            values.append(value)
        label = tuple(row.get(f) for f in fields)
        cells.setdefault(label, {})[value] = row["exact_match"]["value"]
    return fields, values, [(*label, [per.get(v) for v in values]) for label, per in cells.items()]


def _value(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> list[str]:
    widths = [max(len(str(r[i])) for r in (headers, *rows)) for i in range(len(headers))]
    lines = []
    for j, row in enumerate((headers, *rows)):
        lines.append("  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def render_pivot(results: Sequence[dict[str, Any]], dimension: str) -> list[str]:
    """Exact match with one column per value of ``dimension`` (how each coder degrades)."""
    fields, values, rows = pivot(results, dimension)
    label = "t=" if dimension == "temperature" else ""
    headers = [*fields, *(f"{label}{_value(v)}" for v in values)]
    body = [(*map(_value, row[:-1]), *map(_pct, row[-1])) for row in rows]
    return _table(headers, body, left=len(fields))


def render_consistency(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The self-consistency section: agreement across repeats and exact match per repeat."""
    if not rows:
        return []
    dims = [d for d, default in DIMENSIONS.items() if any(r[d] != default for r in rows)]
    headers = ["model", "system", *dims, "cases", "K", "agreement", "unanimous", "majority vote",
               "any (pass@K)", "exact per repeat"]
    body = []
    for r in rows:
        body.append((
            r["model"], r["system"], *(_value(r[d]) for d in dims),
            str(r["cases"]), str(r["repeats"]), _pct(r["agreement"]), _pct(r["unanimous"]["value"]),
            _pct(r["majority_exact"]["value"]), _pct(r["any_exact"]["value"]),
            " ".join(_pct(v) for v in r["exact_per_repeat"]),
        ))
    return _table(headers, body, left=2 + len(dims))
