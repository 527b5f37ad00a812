"""``report.md``: the study's tables for a run, in Markdown.

The numbers come from the run's results and paper-style tables (``summary.json``'s ``results`` and
``tables``, built by :mod:`pytest_medcode.results.aggregate` and :mod:`pytest_medcode.reports.tables`), so the
terminal, the summary and both reports always agree; they are rebuilt from the records when a summary
lacks them. What both reports read of a run beside the tables (each row's records, per-case scores, clipped
answers, the cost table) is in :mod:`pytest_medcode.reports.tables`; the wrong answers are report.md's own.

Model output is untrusted: every cell that can hold it is escaped for Markdown and for the HTML that
Markdown viewers allow, and its control characters are shown as ``\\xNN`` (:mod:`pytest_medcode.safetext`),
so ``cat report.md`` prints text, never terminal escape sequences.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_medcode.codesystems import SYSTEMS
from pytest_medcode.redaction import mask_credentials
from pytest_medcode.reports import document_section as documents
from pytest_medcode.reports import straight_through
from pytest_medcode.reports.tables import (
    budget_text,
    clip,
    cost_rows,
    deployment_rows,
    format_cell,
    has_values,
    row_title,
    run_tables,
)
from pytest_medcode.reports.text import usd
from pytest_medcode.reports.verdict import check_cells
from pytest_medcode.safetext import visible
from pytest_medcode.vocabulary import CORRECT, query_records

__all__ = ["cell", "render", "wrong_answers"]

WRONG_ANSWERS = 20
#: Characters of a wrong answer report.md shows: it lists at most :data:`WRONG_ANSWERS` per model and system,
#: so each can keep more than the case explorer's (explorer.EXPLORER_ANSWER_LIMIT), which holds every case.
WRONG_ANSWER_LIMIT = 300


# -- the wrong answers -------------------------------------------------------------------------


def wrong_answers(records: Iterable[dict[str, Any]], limit: int = WRONG_ANSWERS) -> list[dict[str, Any]]:
    """The first ``limit`` cases per model and system that were not an exact match (errors included)."""
    seen: Counter[tuple[Any, Any]] = Counter()
    out = []
    for r in records:
        if r.get("outcome") == CORRECT:
            continue
        key = (r.get("model"), r.get("system"))
        if seen[key] < limit:
            seen[key] += 1
            out.append(r)
    return out


# -- Markdown ----------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|!~])")


def cell(text: Any) -> str:
    """Untrusted text → one Markdown table cell: one line, Markdown specials and HTML escaped."""
    s = " ".join(visible(text).split())
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return html.escape(s, quote=False)  # after: a backslash before "&lt;" would print the entity


def _table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def table_lines(table: dict[str, Any], level: str = "##") -> list[str]:
    """A paper table (``reports.tables`` format) as a Markdown section."""
    if not table.get("rows"):
        return []
    out = [f"{level} {cell(table['title'])}", ""]
    if table.get("note"):
        note = cell(table["note"])
        out += [note[:1].upper() + note[1:] + ".", ""]
    headers = [table.get("row_header", ""), *(c["title"] for c in table["columns"])]
    rows = [[row_title(r["title"]), *(format_cell(c, r["kind"]) for c in r["cells"])] for r in table["rows"]]
    return out + _table(headers, rows) + [""]


def _config_lines(summary: dict[str, Any]) -> list[str]:
    cfg = summary.get("config") or {}
    sample = cfg.get("sample")
    versions = summary.get("code_systems") or {}
    lines = [
        f"Run {cell(summary.get('run_id', '?'))} · {cell(summary.get('created', ''))} · "
        f"pytest-medcode {cell(summary.get('plugin_version', '?'))}",
    ]
    if cfg:
        lines += [
            "",
            f"Prompt {cell(cfg.get('prompt', '?'))} · temperature {cell(cfg.get('temperature', '?'))} · "
            f"max tokens {cell(cfg.get('max_tokens', '?'))} · "
            f"{'every billable code' if sample is None else f'{cell(sample)} codes per system'} · "
            f"seed {cell(cfg.get('seed', '?'))}",
        ]
    if versions:
        titles = "; ".join(
            f"{cell(SYSTEMS[n].title if n in SYSTEMS else n)} {cell(v)}" for n, v in versions.items()
        )
        lines += ["", f"Code sets: {titles}"]
    return lines


def _gate_lines(gate: dict[str, Any] | None) -> list[str]:
    if not gate:
        return []
    verdict = "PASSED" if gate["passed"] else "FAILED"
    lines = ["## Release gate", "", f"**{verdict}** — {cell(gate['reason'])}", ""]
    columns = ("result", "check", "metric", "scope", "observed", "p", "reason")
    rows = [tuple(cells[k] for k in columns) for cells in map(check_cells, gate["checks"])]
    lines += _table(columns, rows)
    if gate.get("warnings"):
        lines += ["", *[f"- warning: {cell(w)}" for w in gate["warnings"]]]
    return [*lines, ""]


def _top_code_lines(entries: Sequence[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for entry in entries:
        if not entry.get("codes"):
            continue
        system = entry["system"]
        title = SYSTEMS[system].title if system in SYSTEMS else system
        out += [f"### {cell(entry['model'])} · {cell(title)}", ""]
        rows = []
        for t in entry["codes"]:
            notes = []
            if t.get("is_example"):
                notes.append("the prompt's example code")
            if t.get("valid") is False:
                notes.append("not a code of the system")
            rows.append(
                [
                    t["code"],
                    f"{t['per_1000']:.1f}",
                    t["count"],
                    clip(t.get("description"), 80),
                    "; ".join(notes),
                ]
            )
        out += [*_table(("Code", "Per 1,000", "Count", "Description", "Note"), rows), ""]
    if out:
        out = [
            "## Most generated codes, per 1,000 prompts",
            "",
            "How many answered prompts returned each code; models tend to echo the example code of the "
            "prompt's format line.",
            "",
            *out,
        ]
    return out


def _straight_through_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Coverage at each target accuracy, cases taken in decreasing confidence; nothing without confidences."""
    if not rows:
        return []
    return ["## Straight-through coding", "",
            "The share of cases a product can code on its own, taken in decreasing confidence, with the accuracy "
            "on what it codes at or above the target; the threshold is the lowest confidence auto-coded.", "",
            *_table(straight_through.TABLE_HEADERS, straight_through.table_rows(rows)), ""]


def cost_section_lines(costs: dict[str, Any] | None) -> list[str]:
    if not costs:
        return []
    out = ["## What the run cost", "",
           f"{usd(costs['total_usd'])} spent on model calls; {usd(costs['avoided_usd'])} avoided by answers "
           "from the response cache (what they cost when first asked). Prices from --medcode-price or "
           "litellm's price map; unknown when neither has the model.", ""]
    out += [*_table(*cost_rows(costs)), ""]
    out += [line + "\n" for line in budget_text(costs)]
    return out


def deployment_section_lines(deployments: Sequence[dict[str, Any]] | None) -> list[str]:
    """--medcode-router: what each deployment of a model answered, so a replica that differs shows up."""
    if not deployments:
        return []
    return ["## Deployments", "", "Each routed model's cases by the deployment that answered them "
            "(--medcode-router); exact match over its answered cases.", "",
            *_table(*deployment_rows(deployments)), ""]


def render(records: Sequence[dict[str, Any]], summary: dict[str, Any] | None = None, seed: int = 0) -> str:
    summary = summary or {}
    records = query_records(records)  # document cases have their own section (reports/document_section.py)
    _results, tables = run_tables(records, summary, seed)
    out = [f"# pytest-medcode report — {cell(summary.get('run_id', 'run'))}", ""]
    out += [*_config_lines(summary), ""]
    out += _gate_lines(summary.get("gate"))
    out += table_lines(tables["exact_match"])
    for key in ("similarity", "similarity_all"):
        if has_values(tables.get(key)):
            out += table_lines(tables[key])
    for table in tables.get("error_analysis") or []:
        out += table_lines(table)
    out += _top_code_lines(tables.get("top_codes") or [])
    out += _straight_through_lines(straight_through.rows_of(records, summary, seed))
    out += cost_section_lines(summary.get("costs"))
    out += deployment_section_lines(summary.get("deployments"))
    wrong = wrong_answers(records)
    if wrong:
        out += ["## Wrong answers (first 20 per model and system)", ""]
        rows = [
            [
                r.get("model"),
                r.get("system"),
                r.get("code"),
                r.get("predicted_code") or "-",
                r.get("outcome"),
                clip(mask_credentials(r.get("raw_answer") or r.get("error") or ""), WRONG_ANSWER_LIMIT,
                     total=r.get("answer_chars") if r.get("raw_answer") else None),
            ]
            for r in wrong
        ]
        out += [*_table(("Model", "System", "Expected", "Predicted", "Outcome", "Answer (raw)"), rows), ""]
    out += documents.markdown_lines(summary.get("documents"))
    out += [
        "## Methods",
        "",
        "Rates are shares of answered cases (failed calls are counted apart, never as wrong codes), with 95% "
        "Wilson intervals; means use a seeded percentile bootstrap (2,000 resamples). Regression checks pair "
        "cases with the baseline by model, system and code: exact McNemar test for yes/no metrics, paired "
        "bootstrap for scores; a check fails only when the drop exceeds its margin and is significant.",
        "",
    ]
    return "\n".join(out)
