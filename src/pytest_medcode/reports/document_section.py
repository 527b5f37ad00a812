"""The document benchmark's section of every report: the terminal, report.md and report.html.

It renders ``summary["documents"]`` (:func:`section`), which the reporting process builds from the
document records (results/document_summary.py; the straight-through numbers, when the coders gave their codes
confidences, from results/document_selective.py), so a re-rendered run folder shows the same numbers.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from pytest_medcode.reports import straight_through
from pytest_medcode.reports.charts import risk_coverage_chart
from pytest_medcode.reports.text import DEFAULT_WIDTH, fitted, wrapped
from pytest_medcode.results.document_selective import document_selective_rows
from pytest_medcode.results.document_summary import summarize_documents
from pytest_medcode.results.selective import DEFAULT_TARGETS
from pytest_medcode.vocabulary import group_label

__all__ = ["html_section", "markdown_lines", "precision_coverage_chart", "section", "terminal_lines"]

SYNTHETIC_NOTE = ("SYNTHETIC documents: notes generated from the code tables by pytest-medcode (not patient "
                  "records); their numbers show how a coder handles the wordings, distractors and negations "
                  "they contain, not how it codes real documentation.")
NOTE = ("Micro: codes of all answered documents pooled (95% CI: bootstrap over documents). Macro: mean of "
        "per-document values (bootstrap CI). Set match: the predicted set is exactly the gold set (Wilson CI). "
        "Category F1: codes compared at their 3-character category. Invalid: predicted codes that are not "
        "billable codes of the system (fabricated: not in the table at all), share of all predicted codes.")


def section(records: Sequence[dict[str, Any]], seed: int, prompt_version: str,
            targets: Sequence[float] = DEFAULT_TARGETS) -> dict[str, Any] | None:
    """``summary["documents"]``: the per-(model, system) rows of the document records, or None without any; with
    ``selective`` (documents auto-coded at each target precision) only when a coder gave its codes confidences."""
    if not records:
        return None
    rows = summarize_documents(records, seed)
    out: dict[str, Any] = {
        "n_documents": len(records),
        "synthetic": all(r.get("synthetic") for r in records),
        "prompt_version": prompt_version,
        "results": rows,
    }
    selective = document_selective_rows(records, seed=seed, targets=targets)
    if selective:
        out["selective"] = selective
    return out


def _pct(estimate: dict[str, Any] | None, ci: bool = True) -> str:
    if not estimate or estimate.get("value") is None:
        return "-"
    text = f"{100 * estimate['value']:.1f}"
    if ci and estimate.get("low") is not None:
        text += f" ({100 * estimate['low']:.1f}–{100 * estimate['high']:.1f})"
    return text


STRAIGHT_THROUGH = "Straight-through document coding"

_HEADERS = ("model / system", "docs", "set match %", "micro P", "micro R", "micro F1 % (95% CI)",
            "macro P", "macro R", "macro F1 % (95% CI)", "category F1", "invalid %", "fabricated %", "errors")


def _rows(data: dict[str, Any]) -> list[list[str]]:
    return [
        [group_label(r), str(r["n_documents"]), _pct(r["set_match"], False), _pct(r["micro_precision"], False),
         _pct(r["micro_recall"], False), _pct(r["micro_f1"]), _pct(r["macro_precision"], False),
         _pct(r["macro_recall"], False), _pct(r["macro_f1"]), _pct(r["category_f1"], False),
         _pct(r["invalid_code_rate"], False), _pct(r["fabricated_code_rate"], False), str(r["n_errors"])]
        for r in data["results"]
    ]


def _code_rows(row: dict[str, Any]) -> list[list[str]]:
    return [[c["code"], str(c["support"]), str(c["predicted"]), f"{100 * c['precision']:.0f}",
             f"{100 * c['recall']:.0f}", f"{100 * c['f1']:.0f}"] for c in row.get("per_code") or ()]


_CODE_HEADERS = ("code", "gold", "predicted", "P %", "R %", "F1 %")


def terminal_lines(data: dict[str, Any] | None, width: int = DEFAULT_WIDTH) -> list[str]:
    """The document table for the terminal summary, no line wider than ``width``."""
    if not data:
        return []
    lines = wrapped(f"Document coding ({data['n_documents']} cases, prompt {data.get('prompt_version')})", width)
    if data.get("synthetic"):
        lines += wrapped(SYNTHETIC_NOTE, width)
    lines += fitted(_HEADERS, _rows(data), width=width)
    for row in data["results"]:
        if row.get("per_code"):
            lines += wrapped(f"per-code F1, most frequent gold codes — {group_label(row)}: " + ", ".join(
                f"{c['code']} {100 * c['f1']:.0f}% (n={c['support']})" for c in row["per_code"][:5]), width,
                indent="  ")
    return lines + straight_through.document_section_lines(data.get("selective") or [], width)


def markdown_lines(data: dict[str, Any] | None) -> list[str]:
    """``## Document coding`` for report.md."""
    if not data:
        return []
    out = ["## Document coding", ""]
    if data.get("synthetic"):
        out += [f"**{SYNTHETIC_NOTE}**", ""]
    out += [f"{data['n_documents']} document cases, prompt `{data.get('prompt_version')}`. {NOTE}", ""]
    out += _md_table(_HEADERS, _rows(data))
    for row in data["results"]:
        if row.get("per_code"):
            out += [f"### Per-code F1, most frequent gold codes — {group_label(row)}", ""]
            out += _md_table(_CODE_HEADERS, _code_rows(row))
    if data.get("selective"):
        out += [f"### {STRAIGHT_THROUGH}", "", straight_through.DOCUMENT_NOTE, ""]
        out += _md_table(straight_through.DOCUMENT_TABLE_HEADERS,
                         straight_through.document_table_rows(data["selective"]))
    return out


def _md_table(headers: Sequence[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows), ""]


def html_section(data: dict[str, Any] | None) -> str:
    """``<section id="documents">`` for report.html (empty without document cases)."""
    if not data:
        return ""

    def table(headers: Sequence[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = ['<section id="documents">', "<h2>Document coding</h2>"]
    if data.get("synthetic"):
        parts.append(f'<p class="note"><strong>{html.escape(SYNTHETIC_NOTE)}</strong></p>')
    parts.append(f'<p class="note">{data["n_documents"]} document cases, prompt '
                 f'{html.escape(str(data.get("prompt_version")))}. {html.escape(NOTE)}</p>')
    parts.append(table(_HEADERS, _rows(data)))
    for row in data["results"]:
        if row.get("per_code"):
            parts.append(f"<h3>Per-code F1, most frequent gold codes — {html.escape(group_label(row))}</h3>")
            parts.append(table(_CODE_HEADERS, _code_rows(row)))
    if data.get("selective"):
        parts.append(f'<h3 id="documents-straight-through">{html.escape(STRAIGHT_THROUGH)}</h3>')
        parts.append(f'<p class="note">{html.escape(straight_through.DOCUMENT_NOTE)}</p>')
        parts.append(table(straight_through.DOCUMENT_TABLE_HEADERS,
                           straight_through.document_table_rows(data["selective"])))
        parts.append(f'<div class="scroll">{precision_coverage_chart(data["selective"])}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def precision_coverage_chart(rows: Sequence[dict[str, Any]]) -> str:
    """The precision–coverage curve over predicted codes, one line per group with confidences, and a dashed line
    at each target precision: the risk–coverage chart's drawing, with 1 - precision as the risk."""
    series = [{"model": r.get("model"), "system": r.get("system"), "coverage": r["coverage"],
               "curve": [(c, 1.0 - p, t) for c, p, t in r["curve"]]} for r in rows if r.get("curve")]
    return risk_coverage_chart(series, chart_id="chart-document-precision",
                               title="Predicted codes kept in decreasing confidence: 1 - precision against the "
                                     "share kept, per model",
                               x_label="share of predicted codes kept (coverage)",
                               y_label="share not in the gold set (1 - precision)", measure="precision")
