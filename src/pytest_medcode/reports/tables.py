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
3. ``error_analysis`` - one table per system, metric × model, the study's rows first, then ours.

``top_codes`` lists the most returned codes per model and system (per 1,000 prompts, the prompt's example
code flagged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_medcode.codesystems import SYSTEMS, level_names
from pytest_medcode.reports.text import aligned
from pytest_medcode.vocabulary import model_label

__all__ = ["build_tables", "format_cell", "merge_error_tables", "render_table"]

_LEVEL_TITLES = {
    "chapter": "Same chapter, %",
    "block": "Same block, %",
    "category": "Same 3-character category, %",
    "subcategory": "Same subcategory, %",
}


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


def _error_rows(group: dict[str, Any] | None, system: str) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(key, title, kind, cell) for one (model, system) group, in the table's row order."""
    if group is None:
        return []
    incorrect = dict(group.get("incorrect") or {})
    incorrect["count"] = group.get("incorrect_n")
    rows: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("incorrect", "Incorrect codes, n (% of total)", "count_percent", incorrect),
        ("valid", "Valid code, % (95% CI)", "percent", _cell(group, "valid")),
        ("fabricated", "Fabricated code, % (95% CI)", "percent", _cell(group, "fabricated")),
        ("codes_per_answer", "Codes per answer, mean (95% CI)", "number", _cell(group, "codes_per_answer")),
        ("code_frequency", "Code frequency, mean (95% CI)", "number", _cell(group, "code_frequency")),
        ("length_match", "Matched length, % (95% CI)", "percent", _cell(group, "length_match")),
        ("digit_match", "Matched digits, % (95% CI)", "percent", _cell(group, "digit_match")),
    ]
    named = {pos["position"]: pos["axis"] for pos in group.get("axes") or []}
    for pos in group.get("digit_positions") or []:
        k = pos["position"]
        row_key, title = (f"axis_{k}", f"  matched at axis {k}, {named[k]}, %") if k in named else (
            f"digit_{k}", f"  matched at position {k}, %")
        rows.append((row_key, title, "percent", {key: pos.get(key) for key in ("value", "low", "high", "n")}))
    rows.append(("valid_not_billable", "Valid but not billable, %", "percent", _cell(group, "valid_not_billable")))
    own_names = level_names(system)
    for lv in ("chapter", "block", "category", "subcategory"):
        cell = _cell(group, f"same_{lv}")
        if cell is not None and cell.get("value") is not None:
            title = f"Same {own_names[lv]}, %" if lv in own_names else _LEVEL_TITLES[lv]
            rows.append((f"same_{lv}", title, "percent", cell))
    cell = _cell(group, "closeness")
    if cell is not None and cell.get("value") is not None:
        rows.append(("closeness", "Hierarchy closeness, mean (95% CI)", "score", cell))
    rows.append(("other_system", "Code of another system, %", "percent", _cell(group, "other_system")))
    if system in ("icd9cm", "icd10cm"):
        rows.append(("crosswalk_match", "  ... that the GEMs map to the reference, %", "percent",
                     _cell(group, "crosswalk_match")))
    return rows


_ROW_ORDER = ("incorrect", "valid", "fabricated", "codes_per_answer", "code_frequency", "length_match",
              "digit_match", "digit_", "valid_not_billable", "same_chapter", "same_block", "same_category",
              "same_subcategory", "other_system", "crosswalk_match")


def _row_rank(key: str) -> tuple[int, int]:
    if key.startswith("digit_") and key[6:].isdigit():
        return _ROW_ORDER.index("digit_"), int(key[6:])
    if key.startswith("axis_") and key[5:].isdigit():  # ICD-10-PCS: positions named by their axis
        return _ROW_ORDER.index("digit_"), 100 + int(key[5:])
    if key == "closeness":
        return _ROW_ORDER.index("same_subcategory"), 1
    return (_ROW_ORDER.index(key) if key in _ROW_ORDER else len(_ROW_ORDER)), 0


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


def build_tables(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The paper-style tables of a run from its results rows (``aggregate.summarize``)."""
    systems = _ordered([r["system"] for r in results])
    similarity = (("meteor", "METEOR"), ("bertscore", "BERTScore"))
    return {
        "exact_match": _model_system_table(
            results, "exact_match", "Exact match, % (95% CI)",
            "share of answered cases; 95% Wilson interval", (("exact_match", ""),), "percent"),
        "similarity": _model_system_table(
            results, "similarity", "METEOR / BERTScore, mean (95% CI)",
            "over cases whose predicted code has a description (the study's policy); identical descriptions "
            "score 1.0; seeded bootstrap interval", [(f"{m}", t) for m, t in similarity], "score"),
        "similarity_all": _model_system_table(
            results, "similarity_all", "METEOR / BERTScore over all answered cases, mean (95% CI)",
            "a prediction without a description (no code, fabricated, no description in the table) counts 0",
            [(f"{m}_all", t) for m, t in similarity], "score"),
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
