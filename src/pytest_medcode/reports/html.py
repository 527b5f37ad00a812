"""``report.html``: one self-contained page with the run's headline, tables, charts and every case.

This module holds the page's sections and :func:`render`; the shell around them (the Content-Security-Policy,
escaping, the style sheet) is :mod:`pytest_medcode.reports.page`, the charts :mod:`pytest_medcode.reports.charts`.
The one script is the case explorer's (:mod:`pytest_medcode.reports.explorer`), allowed by its SHA-256; the
cases ride in a JSON block (:func:`~pytest_medcode.reports.page.json_script`) that the explorer writes as text.
Everything else that comes from a model, a code table or the user goes through
:func:`~pytest_medcode.reports.page.esc`; numbers are formatted by us. The numbers are the run's results and
paper tables (:mod:`pytest_medcode.reports.tables`), the same as the terminal's, the summary's and report.md's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_medcode.codesystems import SYSTEMS
from pytest_medcode.reports import document_section as documents
from pytest_medcode.reports import straight_through
from pytest_medcode.reports.charts import (
    digit_position_chart,
    exact_match_chart,
    histogram_chart,
    reliability_chart,
    risk_coverage_chart,
    series_colors,
    stacked_chart,
)
from pytest_medcode.reports.explorer import EXPLORER_ANSWER_LIMIT, EXPLORER_JS, ExplorerText, explorer_data
from pytest_medcode.reports.page import document, esc, json_script
from pytest_medcode.reports.tables import (
    budget_text,
    cases_by_row,
    clip,
    cost_rows,
    deployment_rows,
    format_cell,
    has_values,
    records_of,
    row_title,
    run_tables,
    similarity_values,
)
from pytest_medcode.reports.text import usd
from pytest_medcode.reports.verdict import check_cells
from pytest_medcode.results.costs import tally
from pytest_medcode.results.stats import mcnemar_exact
from pytest_medcode.scoring.hierarchy import LEVELS
from pytest_medcode.vocabulary import (
    DIMENSIONS,
    ERROR_MIX,
    METRICS,
    MIX_FAILED,
    SIMILARITY,
    error_kind,
    format_p,
    group_label,
    query_records,
)

__all__ = ["cost_text", "paper_table", "render", "similarity_models"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _system_title(system: str) -> str:
    spec = SYSTEMS.get(system)
    return spec.title if spec else str(system)


# -- tables ------------------------------------------------------------------------------------


class _Markup(str):
    """HTML this module assembled from escaped parts; :func:`_table` does not escape it again."""


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    table_id: str | None = None,
    numeric: Iterable[int] = (),
    raw: Iterable[int] = (),
    row_classes: Sequence[str] | None = None,
) -> str:
    numeric, raw = set(numeric), set(raw)
    attr = f' id="{esc(table_id)}"' if table_id else ""
    out = [
        f"<table{attr}>",
        "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>",
        "<tbody>",
    ]
    for j, row in enumerate(rows):
        cls = f' class="{esc(row_classes[j])}"' if row_classes and row_classes[j] else ""
        cells = []
        for i, value in enumerate(row):
            klass = ' class="num"' if i in numeric else (' class="raw"' if i in raw else "")
            cells.append(f"<td{klass}>{value if isinstance(value, _Markup) else esc(value)}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def paper_table(table: dict[str, Any], level: str = "h3") -> str:
    """A paper table (``reports.tables`` format) with its title and note."""
    if not table.get("rows"):
        return ""
    headers = [table.get("row_header", ""), *(c["title"] for c in table["columns"])]
    rows = [[row_title(r["title"]), *(format_cell(c, r["kind"]) for c in r["cells"])] for r in table["rows"]]
    parts = [f"<{level}>{esc(table['title'])}</{level}>"]
    if table.get("note"):
        note = str(table["note"])
        parts.append(f'<p class="note">{esc(note[:1].upper() + note[1:])}.</p>')
    parts.append(
        _table(headers, rows, table_id=f"table-{_slug(table['id'])}", numeric=range(1, len(headers)))
    )
    return "\n".join(parts)


def _gate_section(gate: dict[str, Any] | None) -> str:
    if not gate:
        return ""
    state, word = ("pass", "PASSED") if gate["passed"] else ("fail", "FAILED")
    out = [
        '<section id="gate">',
        "<h2>Release gate</h2>",
        f'<div class="gate {state}"><div class="verdict">Gate {word}</div>',
        f"<div>{esc(gate['reason'])}</div></div>",
    ]
    columns = ("result", "check", "metric", "scope", "observed", "baseline", "p", "reason")
    rows = [[cells[k] for k in columns] for cells in map(check_cells, gate["checks"])]
    classes = ["" if c["passed"] else "fail" for c in gate["checks"]]
    headers = ("Result", "Check", "Metric", "Scope", "Observed", "Baseline", "p", "Reason")
    out.append(_table(headers, rows, table_id="gate-checks", numeric=(4, 5, 6), row_classes=classes))
    if gate.get("warnings"):
        out.append(
            '<ul class="warnings">' + "".join(f"<li>{esc(w)}</li>" for w in gate["warnings"]) + "</ul>"
        )
    out.append("</section>")
    return "\n".join(out)


def _top_codes_section(entries: Sequence[dict[str, Any]]) -> str:
    blocks = []
    for i, entry in enumerate(entries):
        if not entry.get("codes"):
            continue
        rows = []
        for t in entry["codes"]:
            code = esc(t["code"])
            if t.get("is_example"):
                code += '<span class="badge example">prompt example</span>'
            if t.get("valid") is False:
                code += '<span class="badge fabricated">not a code</span>'
            rows.append(
                [_Markup(code), f"{t['per_1000']:.1f}", f"{t['count']:,}", clip(t.get("description"), 70)]
            )
        blocks.append(f"<div><h3>{esc(entry['model'])} · {esc(_system_title(entry['system']))}</h3>")
        headers = ("Code", "Per 1,000", "Count", "Description")
        blocks.append(_table(headers, rows, table_id=f"top-codes-{i}", numeric=(1, 2)) + "</div>")
    if not blocks:
        return ""
    return "\n".join(
        [
            '<section id="top-codes">',
            "<h2>Most generated codes</h2>",
            '<p class="note">How many answered prompts returned each code, per 1,000. '
            '<span class="badge example">prompt example</span> marks the example code shown in the prompt\'s '
            "format line, which models tend to echo.</p>",
            '<div class="grid">',
            *blocks,
            "</div></section>",
        ]
    )


def similarity_models(summary: Mapping[str, Any]) -> dict[str, str]:
    """Metric → what computed it (``BERTScore F1 (sentence-transformers/all-MiniLM-L6-v2)``), as the
    session recorded it in summary.json's ``similarity``."""
    info = summary.get("similarity") or {}
    out = {}
    for m in SIMILARITY:
        entry = info.get(m) if isinstance(info, Mapping) else None
        if isinstance(entry, Mapping) and entry.get("available"):
            out[m] = str(entry.get("label") or entry.get("model") or m)
    return out


def _similarity_section(
    results: Sequence[dict[str, Any]],
    records: Sequence[dict[str, Any]],
    tables: dict[str, Any],
    summary: Mapping[str, Any] | None = None,
    colors: Mapping[str, str] | None = None,
) -> str:
    metrics = [m for m in SIMILARITY if similarity_values(records, m)]
    if not metrics:
        return ""
    colors = colors or series_colors(results)
    models = similarity_models(summary or {})
    out = [
        '<section id="similarity">',
        "<h2>Description similarity</h2>",
        '<p class="note">Between the reference description and the description of the generated code, '
        "for answers whose code has one; each histogram's title gives the mean with its 95% bootstrap "
        "interval.</p>",
    ]
    if models:
        out.append('<p class="note" id="similarity-models">Scored with: '
                   + "; ".join(esc(v) for v in models.values()) + ".</p>")
    for key in ("similarity", "similarity_all"):
        if has_values(tables.get(key)):
            out.append(paper_table(tables[key]))
    for m in metrics:
        label = METRICS[m].title
        out.append(f"<h3>{label} distribution</h3>")
        out.append('<div class="grid">')
        for i, row in enumerate(results):
            values = similarity_values(records_of(row, records), m)
            if not values:
                continue
            mean = f"mean {format_cell(row.get(m), 'score')}, n={len(values)}"
            out.append(
                f"<div>{histogram_chart(f'chart-{m}-{i}', group_label(row), values, colors[group_label(row)], mean)}"
                "</div>"
            )
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


def _config_section(summary: dict[str, Any]) -> str:
    cfg = dict(summary.get("config") or {})
    if not cfg and not summary.get("prompt_template"):
        return ""
    used = similarity_models(summary)
    if cfg.get("bertscore_model") is None and "bertscore" in used:
        cfg["bertscore_model"] = f"{used['bertscore']} (the default)"
    rows = [
        [k, json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v] for k, v in cfg.items()
    ]
    if "meteor" in used:
        rows.append(["meteor", used["meteor"]])
    for name, version in (summary.get("code_systems") or {}).items():
        rows.append([f"code set {name}", version])
    out = [
        '<section id="config">',
        "<h2>Configuration</h2>",
        _table(("Setting", "Value"), rows, table_id="config"),
    ]
    if summary.get("prompt_template"):
        out.append(f"<h3>Prompt template</h3><pre>{esc(summary['prompt_template'])}</pre>")
    out.append("</section>")
    return "\n".join(out)


#: Colours of the error mix's parts and of the hierarchy levels, from right (green) to far off (red).
MIX_COLORS = dict(zip(ERROR_MIX, ("#2da44e", "#f0883e", "#d4a72c", "#8250df", "#bf8700", "#cf222e", "#8c959f",
                                  "#57606a")))
LEVEL_COLORS = dict(zip((*LEVELS, "none"), ("#1a7f37", "#4ac26b", "#9be9a8", "#f5c26b", "#f0883e", "#cf222e")))
LEVEL_TITLES = {"code": "same code", "subcategory": "same subcategory", "category": "same category",
                "block": "same block", "chapter": "same chapter", "none": "unrelated"}


def _mix_section(results: Sequence[dict[str, Any]], by_row: Mapping[str, list[dict[str, Any]]],
                 colors: Mapping[str, str]) -> str:
    bars = []
    for row in results:
        counts: dict[str, int] = {}
        for r in by_row[group_label(row)]:
            kind = error_kind(r)
            counts[kind] = counts.get(kind, 0) + 1
        failed = counts.pop(MIX_FAILED, 0)
        label = group_label(row)
        bars.append((label, colors.get(label, "#000"), counts,
                     f"n={sum(counts.values()):,}" + (f", {failed:,} failed" if failed else "")))
    if not any(sum(c.values()) for _, _, c, _ in bars):
        return ""
    parts = {k: (k, MIX_COLORS[k]) for k in ERROR_MIX if k != MIX_FAILED}
    return "\n".join([
        '<section id="error-mix">',
        "<h2>Error mix</h2>",
        '<p class="note">What each answered case got: the reference code, another real code, a real code that '
        "cannot be billed, a code of an earlier release (outdated) or of a later one (not yet valid), a code "
        "that exists in no release, or no code at all. Failed calls are counted apart.</p>",
        '<div class="scroll">',
        stacked_chart("chart-error-mix", "Error mix per model and system", bars, parts),
        "</div></section>",
    ])


def _hierarchy_section(results: Sequence[dict[str, Any]], colors: Mapping[str, str]) -> str:
    bars = []
    for row in results:
        levels = row.get("hierarchy_levels")
        if isinstance(levels, dict) and levels:
            label = group_label(row)
            bars.append((label, colors.get(label, "#000"), levels, f"n={sum(levels.values()):,}"))
    if not bars:
        return ""
    parts = {k: (LEVEL_TITLES[k], LEVEL_COLORS[k]) for k in (*LEVELS, "none")}
    return "\n".join([
        '<section id="hierarchy">',
        "<h2>Hierarchy closeness</h2>",
        '<p class="note">How close the predicted code is to the reference in the code system\'s tree: the '
        "deepest level they share (same code, subcategory, 3-character category, block, chapter), for "
        "answered cases with a code; systems without a tree (CPT) are left out.</p>",
        '<div class="scroll">',
        stacked_chart("chart-hierarchy", "Deepest shared level per model and system", bars, parts),
        "</div></section>",
    ])


# -- the headline ------------------------------------------------------------------------------


def cost_text(records: Sequence[dict[str, Any]]) -> str:
    """What a row's model calls cost, added up as the run's total is (results/costs.py ``tally``): spent,
    and what its cache hits avoided; "unknown" only when a price or a call's usage is unknown, "-" for a
    coder that makes no model call (lookup)."""
    row = tally(records)
    if not row["calls"] and not row["cache_hits"]:
        return "-"
    text = usd(row["cost_usd"])
    return f"{text} ({usd(row['avoided_usd'])} avoided)" if row["cache_hits"] else text


def _pair_key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r.get("code"), *(r.get(d) for d in DIMENSIONS), r.get("repeat"))


def _lead(system: str, ranked: Sequence[dict[str, Any]], by_row: Mapping[str, list[dict[str, Any]]]) -> str:
    """One sentence on a system: the best model, its exact match, and its lead over the runner-up with a
    paired exact McNemar test on the cases both answered."""
    best = ranked[0]
    est = best["exact_match"]
    text = (f"<b>{esc(_system_title(system))}</b>: best is <b>{esc(best.get('model'))}"
            f"{esc(_dims(best))}</b> with exact match {esc(format_cell(est, 'percent'))}")
    if len(ranked) < 2:
        return text + "."
    second = ranked[1]
    gap = est["value"] - second["exact_match"]["value"]
    a = {_pair_key(r): r["exact_match"] for r in by_row[group_label(best)] if r.get("exact_match") is not None}
    b = {_pair_key(r): r["exact_match"] for r in by_row[group_label(second)] if r.get("exact_match") is not None}
    both = a.keys() & b.keys()
    gained = sum(1 for k in both if a[k] and not b[k])
    lost = sum(1 for k in both if b[k] and not a[k])
    text += (f", {100 * gap:.1f} pp ahead of {esc(second.get('model'))}{esc(_dims(second))} "
             f"({esc(format_cell(second['exact_match'], 'percent', ci=False))})")
    if not both:
        return text + " (no cases in common to compare)."
    p = mcnemar_exact(gained, lost)
    word = "a real difference" if p < 0.05 else "could be chance"
    return text + (f"; paired over {len(both):,} cases ({gained:,} won, {lost:,} lost), McNemar "
                   f"p={esc(format_p(p))}: {word}.")


def _dims(row: Mapping[str, Any]) -> str:
    return group_label(row)[len(f"{row.get('model')} / {row.get('system')}"):]


def _headline_section(results: Sequence[dict[str, Any]], by_row: Mapping[str, list[dict[str, Any]]],
                      gate: dict[str, Any] | None, colors: Mapping[str, str],
                      costs: dict[str, Any] | None = None) -> str:
    scored = [r for r in results if (r.get("exact_match") or {}).get("value") is not None]
    if not scored and not gate:
        return ""
    out = ['<section id="headline">', "<h2>Headline</h2>"]
    if gate:
        state, word = ("pass", "PASSED") if gate.get("passed") else ("fail", "FAILED")
        out.append(f'<div class="gate {state}"><div class="verdict">Gate {word}</div>'
                   f"<div>{esc(gate.get('reason', ''))}</div>")
        failed = [c for c in gate.get("checks") or [] if not c.get("passed")]
        if failed:
            out.append("<ul>" + "".join(f"<li>{esc(check_cells(c)['check'])}: {esc(check_cells(c)['reason'])}</li>"
                                       for c in failed) + "</ul>")
        out.append("</div>")
    for system in dict.fromkeys(r.get("system") for r in scored):
        ranked = sorted((r for r in scored if r.get("system") == system),
                        key=lambda r: -r["exact_match"]["value"])
        out.append(f'<p class="lead">{_lead(str(system), ranked, by_row)}</p>')
    rows = []
    for row in results:
        label = group_label(row)
        mine = by_row[label]
        swatch = f'<span class="swatch" style="background:{colors.get(label, "#000")}"></span>'
        rows.append([
            _Markup(swatch + esc(label)),
            f"{len(mine):,}",
            format_cell(row.get("exact_match"), "percent"),
            format_cell(row.get("valid"), "percent", ci=False),
            format_cell(row.get("fabricated"), "percent", ci=False),
            format_cell(row.get("outdated"), "percent", ci=False),
            f"{row.get('errors', 0):,}",
            cost_text(mine),
        ])
    headers = ("Model / system", "Cases", "Exact match (95% CI)", "Valid", "Fabricated", "Outdated", "Failed calls",
               "Cost")
    out.append('<div class="scroll">' + _table(headers, rows, table_id="headline-table", numeric=range(1, 8))
               + "</div>")
    note = ("Rates over answered cases. Cost: what the row's model calls cost, their usage at the run's "
            "prices (unknown when no price is known); answers from the response cache cost nothing and are "
            "counted as avoided.")
    if costs:
        note += (f" The whole run, documents included: {usd(costs['total_usd'])} spent on model calls, "
                 f"{usd(costs['avoided_usd'])} avoided (What the run cost, below).")
    out.append(f'<p class="note">{esc(note)}</p>')
    out.append("</section>")
    return "\n".join(out)


# -- the case explorer -------------------------------------------------------------------------


def _explorer_section(records: Sequence[dict[str, Any]], text: ExplorerText | None) -> str:
    if not records:
        return ""
    data = explorer_data(records, text)
    confident = any(row[9] is not None for row in data["rows"])
    columns = [0, 1, *([3] if len(data["variants"]) > 1 else []), 2, 4, 5, 6, 7, 8, *([9] if confident else [])]
    titles = {0: "Model", 1: "System", 2: "Outcome", 3: "Variant", 4: "Expected", 5: "Description",
              6: "Predicted", 7: "Predicted code's description", 8: "Raw answer", 9: "Confidence"}

    def options(element_id: str, label: str, values: Sequence[str]) -> str:
        if len(values) < 2:
            return ""
        opts = "".join(f'<option value="{i}">{esc(v)}</option>' for i, v in enumerate(values))
        return (f'<label>{esc(label)} <select id="{element_id}"><option value="-1">all</option>'
                f"{opts}</select></label>")

    chips = "".join(f'<button type="button" data-kind="{i}" aria-pressed="false">{esc(k)}</button>'
                    for i, k in enumerate(data["kinds"]))
    heads = "".join(f'<th><button type="button" data-col="{c}" aria-sort="none">{esc(titles[c])}</button></th>'
                    for c in columns)
    return "\n".join([
        '<section id="cases">',
        "<h2>Cases</h2>",
        f'<p class="note">Every case of the run ({len(records):,}). Filter by model, system, outcome and '
        f"variant, search any text, sort by a column's title. Raw answers are cut at {EXPLORER_ANSWER_LIMIT} "
        "characters (whole in cases.parquet); shown as text.</p>",
        "<noscript><p>The case explorer needs JavaScript.</p></noscript>",
        f'<div id="explorer" hidden data-columns="{esc(json.dumps(columns))}">',
        '<div class="filters">',
        options("explorer-model", "Model", data["models"]),
        options("explorer-system", "System", data["systems"]),
        options("explorer-variant", "Variant", data["variants"]),
        '<label>Search <input type="search" id="explorer-q" placeholder="code, description, answer…" '
        'autocomplete="off"></label>',
        ('<label>Auto-coded at a threshold of <input type="number" id="explorer-conf" min="0" max="1" '
         'step="0.01" placeholder="0.83"></label>') if confident else "",
        "</div>",
        f'<div class="filters" role="group" aria-label="Outcome">Outcome: {chips}</div>',
        '<div class="pager"><button type="button" id="explorer-prev">‹ previous</button>'
        '<button type="button" id="explorer-next">next ›</button><span id="explorer-status"></span></div>',
        '<div class="scroll"><table id="explorer-table">',
        f"<thead><tr>{heads}</tr></thead>",
        '<tbody id="explorer-rows"></tbody></table></div>',
        "</div>",
        json_script(data, "explorer-data"),
        "</section>",
    ])


# -- the page ----------------------------------------------------------------------------------


def _straight_through_section(rows: Sequence[dict[str, Any]], colors: Mapping[str, str]) -> str:
    """Coverage at each target accuracy (the table), the risk-coverage curve with the targets' lines and the
    reliability diagram; nothing when no answer had a confidence."""
    if not rows:
        return ""
    head = "".join(f"<th>{esc(h)}</th>" for h in straight_through.TABLE_HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
                   for cells in straight_through.table_rows(rows))
    return "\n".join([
        '<section id="straight-through">',
        "<h2>Straight-through coding</h2>",
        '<p class="note">Cases taken in decreasing confidence: the share a product can code on its own with the '
        "accuracy on what it codes at or above the target (95% interval: seeded case bootstrap), the threshold "
        "that takes them, the calibration error over 10 bins and the area under the risk-coverage curve. A "
        "threshold takes every case of its confidence or none.</p>",
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>',
        f'<div class="grid"><div class="scroll">{risk_coverage_chart(rows, colors)}</div>'
        f'<div class="scroll">{reliability_chart(rows, colors)}</div></div>',
        "</section>",
    ])


def _deployment_section(deployments: Sequence[dict[str, Any]] | None) -> str:
    """--medcode-router: each routed model's cases by the deployment that answered them (the report.md table)."""
    if not deployments:
        return ""
    headers, rows = deployment_rows(deployments)
    return ('<section id="deployments"><h2>Deployments</h2><p class="note">Each routed model\'s cases by the '
            "deployment that answered them (--medcode-router); exact match over its answered cases.</p>"
            f"{_table(headers, rows, numeric=range(2, len(headers)))}</section>")


def _cost_section(costs: dict[str, Any] | None) -> str:
    """What the run cost: the same table as report.md, and the budget."""
    if not costs:
        return ""
    headers, rows = cost_rows(costs)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    notes = "".join(f'<p class="note">{esc(line)}</p>' for line in budget_text(costs))
    return (f'<section id="costs"><h2>What the run cost</h2><p class="note">{esc(usd(costs["total_usd"]))} spent '
            f'on model calls; {esc(usd(costs["avoided_usd"]))} avoided by the response cache.</p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}</section>")


def render(records: Sequence[dict[str, Any]], summary: dict[str, Any] | None = None, seed: int = 0,
           explorer_text: ExplorerText | None = None) -> str:
    """The whole page as a string (``explorer_text``: the explorer's cell text made as the records arrived)."""
    summary = summary or {}
    records = query_records(records)  # document cases have their own section (reports/document_section.py)
    results, tables = run_tables(records, summary, seed)
    colors = series_colors(results)
    by_row = cases_by_row(results, records)
    run_id = summary.get("run_id", "run")
    cfg = summary.get("config") or {}
    meta = " · ".join(
        esc(x)
        for x in (
            summary.get("created", ""),
            f"pytest-medcode {summary.get('plugin_version', '?')}",
            f"prompt {cfg.get('prompt', '?')}",
            f"temperature {cfg.get('temperature', '?')}",
            f"{len(records):,} cases",
        )
        if x
    )
    error_tables = [t for t in (paper_table(t) for t in tables.get("error_analysis") or []) if t]
    digits = digit_position_chart(results, records, colors)
    explorer = _explorer_section(records, explorer_text)
    body = [
        "<header>",
        f"<h1>pytest-medcode report — {esc(run_id)}</h1>",
        f'<p class="meta">{meta}</p>',
        "</header>",
        _headline_section(results, by_row, summary.get("gate"), colors, summary.get("costs")),
        _gate_section(summary.get("gate")),
    ]
    if results:
        body += [
            '<section id="exact-match">',
            "<h2>Exact match by model × system</h2>",
            '<p class="note">Share of answered cases whose code is exactly the reference code; whiskers show '
            "95% Wilson intervals. Failed calls are counted apart, not as wrong codes.</p>",
            f'<div class="scroll">{exact_match_chart(results, colors)}</div>',
            paper_table(tables["exact_match"]),
            "</section>",
        ]
    body.append(_mix_section(results, by_row, colors))
    if digits:
        body += [
            '<section id="digits">',
            "<h2>Matched digits by position</h2>",
            '<p class="note">Share of answers that have the reference code\'s k-th character (dots not '
            "counted) at the same place, among references with at least k characters. Each model · system "
            "has its own colour, dash and marker; coinciding lines are drawn slightly apart.</p>",
            f'<div class="scroll">{digits}</div>',
            "</section>",
        ]
    body.append(_hierarchy_section(results, colors))
    if error_tables:
        body += [
            '<section id="error-analysis">',
            "<h2>Error analysis</h2>",
            '<div class="grid">',
            *[f'<div class="scroll">{t}</div>' for t in error_tables],
            "</div></section>",
        ]
    body += [
        _top_codes_section(tables.get("top_codes") or []),
        _straight_through_section(straight_through.rows_of(records, summary, seed), colors),
        _cost_section(summary.get("costs")),
        _deployment_section(summary.get("deployments")),
        _similarity_section(results, records, tables, summary, colors),
        explorer,
        documents.html_section(summary.get("documents")),
        _config_section(summary),
    ]
    scripts = [EXPLORER_JS] if explorer else []
    return document(f"pytest-medcode report {run_id}", body, scripts=scripts)
