"""What the session prints at the end: the overview table, then the study's tables (reports/tables.py)."""

from __future__ import annotations

from typing import Any

from pytest_medcode.reports.tables import build_tables, merge_error_tables
from pytest_medcode.reports.tables import render_table as render_paper_table

TOP_CODES_SHOWN = 5


def _pct(est: dict[str, Any], ci: bool = False) -> str:
    if est["value"] is None:
        return "-"
    text = f"{100 * est['value']:.1f}%"
    if ci:
        text += f" ({100 * est['low']:.1f}–{100 * est['high']:.1f})"
    return text


def _num(est: dict[str, Any]) -> str:
    return "-" if est["value"] is None else f"{est['value']:.2f}"


def _dim(value: Any) -> str:
    return "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


HEADERS = ("model", "system", "n", "exact match (95% CI)", "valid", "fabricated", "codes/answer",
           "length", "digits", "errors")


def table_rows(groups: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (
            g["model"], g["system"], str(g["answered"]), _pct(g["exact_match"], ci=True), _pct(g["valid"]),
            _pct(g["fabricated"]), _num(g["codes_per_answer"]), _pct(g["length_match"]),
            _pct(g["digit_match"]), str(g["errors"]),
        )
        for g in groups
    ]


def render_table(groups: list[dict[str, Any]]) -> list[str]:
    """The one-line-per-(model, system) overview."""
    # Case dimensions (variant, temperature sweep) become columns after "system" when the run has them.
    dims = [d for d in ("variant", "temperature") if any(d in g for g in groups)]
    headers = (*HEADERS[:2], *dims, *HEADERS[2:])
    body = [(*r[:2], *(_dim(g.get(d)) for d in dims), *r[2:]) for g, r in zip(groups, table_rows(groups))]
    rows = [headers, *body]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    lines = []
    for j, row in enumerate(rows):
        cells = [c.ljust(w) if i < 2 + len(dims) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def similarity_lines(tables: dict[str, Any]) -> list[str]:
    """Both similarity tables in one, long format for a terminal: rows model × metric, columns systems.

    (summary.json keeps the study's wide layout: model × (metric × system).)"""
    scorable, everything = tables["similarity"], tables["similarity_all"]
    systems = list(dict.fromkeys(c["system"] for c in scorable["columns"]))
    titles = {c["system"]: c["title"].split(" ", 1)[1] for c in scorable["columns"]}
    rows = []
    for source, suffix in ((scorable, ""), (everything, ", all answered")):
        metric_of = {c["metric"]: c["title"].split(" ", 1)[0] for c in source["columns"]}
        for row in source["rows"]:
            cells = {(c["metric"], c["system"]): cell for c, cell in zip(source["columns"], row["cells"])}
            for metric, title in metric_of.items():
                rows.append({"key": f"{row['key']}:{metric}", "title": f"{row['title']}  {title}{suffix}",
                             "kind": "score", "cells": [cells.get((metric, s)) for s in systems]})
    table = {
        "title": "METEOR / BERTScore, mean (95% CI): over cases whose predicted code has a description; "
                 "'all answered': unresolved = 0",
        "row_header": "model  metric",
        "columns": [{"key": s, "title": titles[s]} for s in systems],
        "rows": rows,
    }
    return render_paper_table(table)


def _top_code_lines(tables: dict[str, Any]) -> list[str]:
    out = []
    for entry in tables.get("top_codes") or []:
        # Codes returned more than once, and the prompt's example code: a list of singletons says nothing.
        codes = [c for c in entry.get("codes") or [] if c.get("count", 0) > 1 or c.get("is_example")]
        if not codes:
            continue
        shown = ", ".join(
            f"{c['code']}{'*' if c.get('is_example') else ''} {c['per_1000']:.0f}" for c in codes[:TOP_CODES_SHOWN]
        )
        out.append(f"  {entry['model']} · {entry['system']}: {shown}")
    if out:
        out.insert(0, "Most returned codes, per 1,000 prompts (* = the prompt's own example code)")
    return out


def _has_values(table: dict[str, Any]) -> bool:
    return any(c and c.get("value") is not None for r in table["rows"] for c in r["cells"])


def render_summary(summary: dict[str, Any]) -> list[str]:
    """Everything the terminal shows of a run: header notes, the overview, the study's tables, top codes."""
    from pytest_medcode.scoring.session_metrics import describe

    results = summary.get("results") or []
    tables = summary.get("tables") or build_tables(results)
    lines: list[str] = []
    profile = (summary.get("config") or {}).get("profile") or summary.get("profile")
    if profile:
        lines.append(f"scoring profile: {profile}")
    lines += describe(summary.get("similarity"))
    if lines:
        lines.append("")
    lines += render_table(results)
    lines.append("")
    blocks: list[list[str]] = [render_paper_table(tables["exact_match"])]
    if _has_values(tables["similarity"]) or _has_values(tables["similarity_all"]):
        blocks.append(similarity_lines(tables))
    errors = tables.get("error_analysis") or []
    merged = merge_error_tables(errors)
    blocks += [render_paper_table(merged)] if merged is not None else [render_paper_table(t) for t in errors]
    blocks.append(_top_code_lines(tables))
    for block in blocks:
        if block:
            lines += [*block, ""]
    lines.append(
        "Rates over answered cases, 95% Wilson intervals; means with a seeded bootstrap (2,000 resamples). "
        "errors: failed calls, not scored."
    )
    return lines
