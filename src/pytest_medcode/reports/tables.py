"""The study's tables as data: built once from the results rows, kept in ``summary.json``, rendered anywhere.

A table is a plain dict::

    {"id": "exact_match", "title": "...", "note": "...", "row_header": "model",
     "columns": [{"key": "icd10cm", "title": "ICD-10-CM"}, ...],
     "rows": [{"key": "gpt-4", "title": "gpt-4", "kind": "percent", "cells": [estimate | None, ...]}, ...]}

Each cell is an estimate dict ``{value, low, high, n}`` (``count`` too for "n (%)" cells) aligned with
``columns``; ``kind`` says how to show it: ``percent`` (a proportion, as %), ``score`` (a mean in [0, 1],
3 decimals), ``number`` (a mean, 1 decimal) or ``count_percent`` ("n (%)"). The tables mirror the study's:

1. ``exact_match`` - model × system, % with 95 % Wilson interval;
2. ``similarity`` - model × (METEOR, BERTScore) × system, mean with bootstrap interval over the cases whose
   predicted code has a description (the study's policy); ``similarity_all`` - the same over every answered
   case, an unresolved prediction counting 0;
3. ``error_analysis`` - one table per system, metric × model, the study's rows first, then ours: the rows,
   their titles, kinds and order are the declarations of :data:`~pytest_medcode.vocabulary.METRICS`.

``top_codes`` lists the most returned codes per model and system (per 1,000 prompts, the prompt's example
code flagged).

What every format reads of a run beside the tables is here too, so report.md and report.html cannot tell it
differently: a run's (results, tables) from its summary or its records, each row's records, the per-case
scores, answers clipped to a length, the cost table and the budget's sentences.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_medcode.codesystems import SYSTEMS, level_names
from pytest_medcode.reports.text import aligned, usd
from pytest_medcode.results.aggregate import summarize
from pytest_medcode.vocabulary import (
    COUNT_PERCENT,
    DECIMAL,
    DIMENSIONS,
    GROUP_KEYS,
    METRICS,
    PERCENT,
    SIMILARITY,
    Metric,
    answered,
    group_label,
    model_label,
)

__all__ = [
    "budget_text",
    "build_tables",
    "cases_by_row",
    "clip",
    "cost_rows",
    "format_cell",
    "has_values",
    "merge_error_tables",
    "records_of",
    "render_table",
    "row_title",
    "run_tables",
    "similarity_values",
]

def _title(system: str) -> str:
    spec = SYSTEMS.get(system)
    return spec.title if spec else system


def _ordered(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _cell(row: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if row is None:
        return None
    value = row.get(key)
    return value if isinstance(value, dict) else None


def _model_system_table(
    results: Sequence[dict[str, Any]], table_id: str, title: str, note: str, metrics: Sequence[tuple[str, str]],
    kind: str,
) -> dict[str, Any]:
    """Rows = models; columns = metric × system (one metric: just the systems)."""
    models = _ordered([model_label(r) for r in results])
    systems = _ordered([r["system"] for r in results])
    by = {(model_label(r), r["system"]): r for r in results}
    columns = [
        {"key": f"{m}:{s}" if len(metrics) > 1 else s, "metric": m, "system": s,
         "title": f"{mt} {_title(s)}" if len(metrics) > 1 else _title(s)}
        for m, mt in metrics for s in systems
    ]
    rows = [
        {"key": model, "title": model, "kind": kind,
         "cells": [_cell(by.get((model, c["system"])), c["metric"]) for c in columns]}
        for model in models
    ]
    return {"id": table_id, "title": title, "note": note, "row_header": "model", "columns": columns, "rows": rows}


#: The metric whose row is followed by the sub-rows of matched characters by position (or by axis).
_POSITIONS_AFTER = "digit_match"
_LAST = 1 << 30  # the rank of a row no metric declares (a key of an older summary)
#: One row of an error-analysis table for one group: (key, title, kind, cell).
_Row = tuple[str, str, str, dict[str, Any] | None]


def _row_metrics() -> list[Metric]:
    """The metrics that are rows of the error-analysis table, in their declared order."""
    rows = [m for m in METRICS.values() if m.row is not None and not m.documents]
    return sorted(rows, key=lambda m: m.row or 0)


def _position_rows(group: dict[str, Any]) -> list[_Row]:
    """Matched characters by position k; for a system whose characters are axes (ICD-10-PCS), named."""
    named = {pos["position"]: pos["axis"] for pos in group.get("axes") or []}
    rows: list[_Row] = []
    for pos in group.get("digit_positions") or []:
        k = pos["position"]
        row_key, title = (f"axis_{k}", f"  matched at axis {k}, {named[k]}, %") if k in named else (
            f"digit_{k}", f"  matched at position {k}, %")
        rows.append((row_key, title, PERCENT, {key: pos.get(key) for key in ("value", "low", "high", "n")}))
    return rows


def _row_title(m: Metric, own_names: Mapping[str, str]) -> str:
    """A metric's row title; a shared level is named as the system names it (``Same block`` → its own word)."""
    level = m.name.removeprefix("same_")
    if m.name.startswith("same_") and level in own_names:
        return f"Same {own_names[level]}, %"
    return m.title


def _has_row(m: Metric, system: str, cell: dict[str, Any] | None) -> bool:
    """A metric's row is left out of a system it is not for, and where a sparse metric has no value."""
    if m.systems and system not in m.systems:
        return False
    return not m.sparse or (cell is not None and cell.get("value") is not None)


def _error_rows(group: dict[str, Any] | None, system: str) -> list[_Row]:
    """(key, title, kind, cell) for one (model, system) group, in the table's row order."""
    if group is None:
        return []
    own_names = level_names(system)
    rows: list[_Row] = []
    for m in _row_metrics():
        cell = _cell(group, m.name)
        if not _has_row(m, system, cell):
            continue
        if m.shown == COUNT_PERCENT:
            cell = {**(cell or {}), "count": group.get(f"{m.name}_n")}
        rows.append((m.name, _row_title(m, own_names), m.shown, cell))
        if m.name == _POSITIONS_AFTER:
            rows += _position_rows(group)
    return rows


def _row_rank(key: str) -> tuple[int, int]:
    if key.startswith("digit_") and key[6:].isdigit():
        return _rank(_POSITIONS_AFTER), int(key[6:])
    if key.startswith("axis_") and key[5:].isdigit():  # ICD-10-PCS: positions named by their axis
        return _rank(_POSITIONS_AFTER), 100 + int(key[5:])
    return _rank(key), 0


def _rank(name: str) -> int:
    m = METRICS.get(name)
    return _LAST if m is None or m.row is None else m.row


def _error_table(results: Sequence[dict[str, Any]], system: str) -> dict[str, Any]:
    models = _ordered([model_label(r) for r in results if r["system"] == system])
    by = {model_label(r): r for r in results if r["system"] == system}
    per_model = {m: {key: (title, kind, cell) for key, title, kind, cell in _error_rows(by.get(m), system)}
                 for m in models}
    keys = sorted(_ordered([key for m in models for key in per_model[m]]), key=_row_rank)
    rows = []
    for key in keys:
        title, kind = next((per_model[m][key][0], per_model[m][key][1]) for m in models if key in per_model[m])
        rows.append({"key": key, "title": title, "kind": kind,
                     "cells": [per_model[m][key][2] if key in per_model[m] else None for m in models]})
    return {
        "id": f"error_analysis:{system}",
        "system": system,
        "title": f"Error analysis: {_title(system)}",
        "note": "over answered cases; matched digits by position over references with at least k characters",
        "row_header": "metric",
        "columns": [{"key": m, "title": m} for m in models],
        "rows": rows,
    }


def _titled(names: Sequence[str], suffix: str = "") -> list[tuple[str, str]]:
    return [(f"{name}{suffix}", METRICS[name].title) for name in names]


def build_tables(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The paper-style tables of a run from its results rows (``aggregate.summarize``)."""
    systems = _ordered([r["system"] for r in results])
    similarity = " / ".join(title for _, title in _titled(SIMILARITY))
    exact = METRICS["exact_match"]
    return {
        "exact_match": _model_system_table(
            results, "exact_match", exact.title, "share of answered cases; 95% Wilson interval",
            (("exact_match", ""),), exact.shown),
        "similarity": _model_system_table(
            results, "similarity", f"{similarity}, mean (95% CI)",
            "over cases whose predicted code has a description (the study's policy); identical descriptions "
            "score 1.0; seeded bootstrap interval", _titled(SIMILARITY), DECIMAL),
        "similarity_all": _model_system_table(
            results, "similarity_all", f"{similarity} over all answered cases, mean (95% CI)",
            "a prediction without a description (no code, fabricated, no description in the table) counts 0",
            _titled(SIMILARITY, "_all"), DECIMAL),
        "error_analysis": [_error_table(results, s) for s in systems],
        "top_codes": [
            {"model": model_label(r), "system": r["system"],
             "example": getattr(SYSTEMS.get(r["system"]), "example", None), "answered": r.get("answered"),
             "codes": r.get("top_codes") or []}
            for r in results
        ],
    }


# -- rendering as text ------------------------------------------------------------------------------------


def format_cell(cell: dict[str, Any] | None, kind: str, ci: bool = True) -> str:
    """One cell as the study prints it: ``45.9% (44.8–47.0)``, ``0.593 (0.585–0.602)``, ``5467 (71.0%)``."""
    if not cell or cell.get("value") is None:
        return "-"
    v, lo, hi = cell["value"], cell.get("low"), cell.get("high")
    if kind == "count_percent":
        count = cell.get("count")
        return f"{count} ({100 * v:.1f}%)" if count is not None else f"{100 * v:.1f}%"
    if kind == "percent":
        text, band = f"{100 * v:.1f}%", (f"{100 * lo:.1f}–{100 * hi:.1f}" if lo is not None and hi is not None
                                         else "")
    elif kind == "score":
        text, band = f"{v:.3f}", (f"{lo:.3f}–{hi:.3f}" if lo is not None else "")
    else:
        text, band = f"{v:.1f}", (f"{lo:.1f}–{hi:.1f}" if lo is not None else "")
    return f"{text} ({band})" if ci and band else text


def render_table(table: dict[str, Any], ci: bool = True) -> list[str]:
    """A table as aligned text lines: title, header, rule, rows."""
    header = [table.get("row_header", ""), *(c["title"] for c in table["columns"])]
    body = [[r["title"], *(format_cell(c, r["kind"], ci) for c in r["cells"])] for r in table["rows"]]
    if not body:
        return []
    return [table["title"], *aligned(header, body, left=1)]


def merge_error_tables(tables: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """One model's error tables side by side (columns = systems), or None when there are several models."""
    models = {tuple(c["key"] for c in t["columns"]) for t in tables}
    if len(models) != 1 or len(next(iter(models))) != 1:
        return None
    model = next(iter(models))[0]
    keys = sorted(_ordered([r["key"] for t in tables for r in t["rows"]]), key=_row_rank)
    rows = []
    for key in keys:
        found = [next((r for r in t["rows"] if r["key"] == key), None) for t in tables]
        first = next(r for r in found if r is not None)
        rows.append({"key": key, "title": first["title"], "kind": first["kind"],
                     "cells": [r["cells"][0] if r is not None else None for r in found]})
    return {
        "id": "error_analysis",
        "title": f"Error analysis: {model}",
        "row_header": "metric",
        "columns": [{"key": t["system"], "title": _title(t["system"])} for t in tables],
        "rows": rows,
    }


# -- what every report format reads of a run ----------------------------------------------------------


def run_tables(
    records: Sequence[dict[str, Any]], summary: dict[str, Any] | None, seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(results rows, paper tables) of a run: the summary's, or rebuilt from the records."""
    summary = summary or {}
    results = summary.get("results") or summarize(records, seed=seed)
    tables = summary.get("tables") or build_tables(results)
    return list(results), tables


def row_title(title: str) -> str:
    """A table row's title; the leading spaces that mark a sub-row become an arrow, which survives
    HTML and Markdown (both collapse plain spaces)."""
    stripped = title.lstrip()
    return f"↳ {stripped}" if len(stripped) < len(title) else stripped


def records_of(row: dict[str, Any], records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records a results row was computed from (same model, system and grouping dimensions)."""
    dims = [d for d in (*GROUP_KEYS, *DIMENSIONS) if d in row]
    return [r for r in records if all(r.get(d) == row[d] for d in dims)]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def similarity_values(records: Iterable[dict[str, Any]], metric: str) -> list[float]:
    """The per-case scores of ``metric`` (cases whose predicted code has a description)."""
    return [float(r[metric]) for r in answered(records) if _number(r.get(metric))]


def has_values(table: dict[str, Any] | None) -> bool:
    """Whether a table has any number to show (a run without similarity scores has none in that table)."""
    if not table:
        return False
    return any(c is not None and c.get("value") is not None for row in table["rows"] for c in row["cells"])


def cases_by_row(
    results: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Each results row's records (as :func:`records_of` finds them), by the row's group label, in one pass
    over the records: at 75,000 cases a pass per row and section costs seconds."""
    out: dict[str, list[dict[str, Any]]] = {group_label(row): [] for row in results}
    dims = [d for d in (*GROUP_KEYS, *DIMENSIONS) if any(d in row for row in results)]
    labels = {tuple(row.get(d) for d in dims): group_label(row) for row in results}
    for r in records:
        label = labels.get(tuple(r.get(d) for d in dims))
        if label is not None:
            out[label].append(r)
    return out


def clip(text: str | None, limit: int, total: int | None = None) -> str:
    """At most ``limit`` characters, and how many more there were (of ``total``: the whole answer's length,
    when ``text`` is already the excerpt a record keeps)."""
    text = text or ""
    total = max(total or 0, len(text))
    return text if total <= limit else f"{text[:limit]}… [{total - limit} more characters]"


def cost_rows(costs: dict[str, Any]) -> tuple[tuple[str, ...], list[list[Any]]]:
    """The cost table (per model, then per model × system), shared by report.md and report.html."""
    headers = ("Model", "System", "Calls", "Prompt tokens", "Completion tokens", "Cost", "Cache hits",
               "Avoided", "Price (USD per 1M in/out)")
    rows = []
    for row in [*costs["models"], *costs["systems"]] if len(costs["systems"]) > len(costs["models"]) \
            else costs["models"]:
        price = row["price"]
        rows.append([row["model"], row["system"] or "all", f"{row['calls']:,}", f"{row['prompt_tokens']:,}",
                     f"{row['completion_tokens']:,}", usd(row["cost_usd"]), f"{row['cache_hits']:,}",
                     usd(row["avoided_usd"]),
                     f"{price['input_per_m']:g} / {price['output_per_m']:g} ({price['source']})"
                     if price else "unknown"])
    return headers, rows


def budget_text(costs: dict[str, Any]) -> list[str]:
    """One sentence per budget limit, and the cases it left unasked."""
    budget = costs.get("budget")
    if not budget:
        return []
    out = [f"Budget ({'the run' if b['scope'] is None else b['scope']}): {usd(b['spent_usd'])} of "
           f"{usd(b['limit_usd'])} spent, {usd(b['left_usd'])} left." for b in budget["limits"]]
    if budget["not_asked"]:
        out.append(f"{budget['not_asked']:,} case(s) were not asked: the budget would have been passed; a rerun "
                   "with a higher --medcode-max-cost asks only them.")
    return out



def deployment_rows(deployments: Sequence[dict[str, Any]] | None) -> tuple[tuple[str, ...], list[list[Any]]]:
    """The per-deployment table (--medcode-router; summary.json's ``deployments``), for every format."""
    headers = ("Model", "Deployment", "Cases", "Answered", "Failed calls", "From the cache", "Exact match")
    rows = [[d["model"], d["deployment"] if d["deployment"] is not None else "(no answer)", f"{d['cases']:,}",
             f"{d['answered']:,}", f"{d['errors']:,}", f"{d['cache_hits']:,}",
             "-" if d["exact_match"] is None else f"{d['exact_match']:.3f}"] for d in deployments or ()]
    return headers, rows
