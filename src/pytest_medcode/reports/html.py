"""``report.html``: one self-contained page with the run's tables and charts.

No JavaScript and nothing fetched at view time: CSS is inline and the charts are SVG written here.
A Content-Security-Policy forbids scripts and any network load, so even a bug in escaping could not
run what a model wrote. Everything that comes from a model, a code table or the user goes through
:func:`esc` (``html.escape``); numbers are formatted by us. The numbers are the run's results and
paper tables (see :mod:`pytest_medcode.reports.markdown`), the same as the terminal's and the summary's.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_medcode.codesystems import SYSTEMS
from pytest_medcode.redaction import mask_credentials
from pytest_medcode.reports.markdown import (
    budget_text,
    clip,
    cost_rows,
    has_values,
    records_of,
    row_title,
    run_tables,
    similarity_values,
    wrong_answers,
)
from pytest_medcode.reports.tables import format_cell
from pytest_medcode.reports.text import usd
from pytest_medcode.reports.verdict import check_cells
from pytest_medcode.results.aggregate import digit_position_rates
from pytest_medcode.safetext import visible
from pytest_medcode.vocabulary import SIMILARITY, answered, group_label

__all__ = ["CSP", "esc", "paper_table", "render"]

#: No scripts, no fetches; inline styles and data: images only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1b1f24; background: #fff; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.meta, p.note { color: #57606a; margin: 4px 0; }
table { border-collapse: collapse; margin: 8px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
td.raw, td.code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
                  white-space: pre-wrap; word-break: break-word; max-width: 460px; }
.gate { border-radius: 6px; padding: 12px 16px; margin: 16px 0; border: 1px solid; }
.gate.pass { background: #dafbe1; border-color: #4ac26b; }
.gate.fail { background: #ffebe9; border-color: #ff8182; }
.gate .verdict { font-size: 17px; font-weight: 700; }
tr.fail td { background: #fff5f5; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 11.5px; margin-left: 4px; }
.badge.example { background: #fff8c5; border: 1px solid #d4a72c; }
.badge.fabricated { background: #ffebe9; border: 1px solid #ff8182; }
.grid { display: flex; flex-wrap: wrap; gap: 12px 28px; }
.grid > div { flex: 0 0 auto; }
svg.chart { display: block; margin: 8px 0; background: #fff; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #1b1f24; }
svg .axis { stroke: #d0d7de; stroke-width: 1; }
svg .ci { stroke: #1b1f24; stroke-width: 1.5; }
pre { background: #f6f8fa; padding: 8px 12px; white-space: pre-wrap; word-break: break-word; }
ul.warnings li { color: #9a6700; }
"""


def esc(value: Any) -> str:
    """Any value as safe HTML text (quotes too, so it is also safe inside attributes), control characters
    shown as ``\\xNN`` (HTML escaping leaves ESC and BEL in the file, and in a terminal that prints it)."""
    return html.escape(visible(value), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _f(x: float) -> str:
    return f"{x:.1f}"


def _short(text: str, limit: int = 38) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _system_title(system: str) -> str:
    spec = SYSTEMS.get(system)
    return spec.title if spec else str(system)


# -- charts ------------------------------------------------------------------------------------


def _svg_open(chart_id: str, width: int, height: int, title: str, cls: str = "chart") -> list[str]:
    return [
        f'<svg id="{esc(chart_id)}" class="{esc(cls)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
    ]


def exact_match_chart(results: Sequence[dict[str, Any]]) -> str:
    """Horizontal bars of exact match per results row (model × system) with 95% Wilson whiskers."""
    label_w, plot_w, row_h, top, bottom = 270, 540, 30, 14, 34
    n = max(1, len(results))
    width, height = label_w + plot_w + 110, top + row_h * n + bottom
    systems = list(dict.fromkeys(r.get("system") for r in results))
    out = _svg_open(
        "chart-exact-match",
        width,
        height,
        "Exact match by model and code system, with 95% Wilson confidence intervals",
    )
    axis_y = top + row_h * n
    for t in range(0, 101, 20):
        x = label_w + plot_w * t / 100
        out.append(f'<line class="axis" x1="{_f(x)}" y1="{top}" x2="{_f(x)}" y2="{axis_y}"/>')
        out.append(f'<text x="{_f(x)}" y="{axis_y + 16}" text-anchor="middle">{t}%</text>')
    for i, row in enumerate(results):
        est = row.get("exact_match") or {}
        y = top + i * row_h
        mid = y + row_h / 2
        label = group_label(row)
        out.append('<g class="bar">')
        out.append(
            f"<title>{esc(label)}: {esc(format_cell(est, 'percent'))}, n={esc(est.get('n', 0))}</title>"
        )
        out.append(f'<text x="{label_w - 8}" y="{_f(mid + 4)}" text-anchor="end">{esc(_short(label))}</text>')
        value = est.get("value")
        if value is None:
            out.append(f'<text x="{label_w + 6}" y="{_f(mid + 4)}">no answered cases</text></g>')
            continue
        low = est.get("low") if est.get("low") is not None else value
        high = est.get("high") if est.get("high") is not None else value
        color = _color(systems.index(row.get("system")))
        out.append(
            f'<rect x="{label_w}" y="{_f(y + 7)}" width="{_f(plot_w * value)}" height="{row_h - 14}" '
            f'fill="{color}" fill-opacity="0.8"/>'
        )
        x1, x2 = label_w + plot_w * low, label_w + plot_w * high
        out.append(f'<line class="ci" x1="{_f(x1)}" y1="{_f(mid)}" x2="{_f(x2)}" y2="{_f(mid)}"/>')
        for x in (x1, x2):
            out.append(f'<line class="ci" x1="{_f(x)}" y1="{_f(mid - 6)}" x2="{_f(x)}" y2="{_f(mid + 6)}"/>')
        out.append(f'<text x="{_f(x2 + 6)}" y="{_f(mid + 4)}">{100 * value:.1f}%</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def _positions(row: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rates = row.get("digit_positions")
    if isinstance(rates, list):
        return [p for p in rates if isinstance(p, dict) and p.get("value") is not None]
    return digit_position_rates(answered(records_of(row, records)))


def digit_position_chart(results: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> str:
    """Share of answers matching the reference at each character position, one line per row."""
    series = [(row, _positions(row, records)) for row in results]
    k_max = max((int(p["position"]) for _, points in series for p in points), default=1)
    left, plot_w, plot_h, top, legend_w = 48, 460, 220, 16, 280
    width, height = left + plot_w + 30 + legend_w, max(top + plot_h + 44, 30 + 20 * len(series))
    out = _svg_open(
        "chart-digit-positions",
        width,
        height,
        "Matched characters by position of the reference code, per model and system",
    )

    def x_of(k: int) -> float:
        return left + (plot_w * (k - 1) / (k_max - 1) if k_max > 1 else plot_w / 2)

    def y_of(rate: float) -> float:
        return top + plot_h * (1 - rate)

    for t in range(0, 101, 25):
        y = y_of(t / 100)
        out.append(f'<line class="axis" x1="{left}" y1="{_f(y)}" x2="{left + plot_w}" y2="{_f(y)}"/>')
        out.append(f'<text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end">{t}%</text>')
    for k in range(1, k_max + 1):
        out.append(f'<text x="{_f(x_of(k))}" y="{top + plot_h + 18}" text-anchor="middle">{k}</text>')
    out.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 36}" text-anchor="middle">'
        "position in the reference code (dots not counted)</text>"
    )
    for i, (row, points) in enumerate(series):
        if not points:
            continue
        color, label = _color(i), group_label(row)
        coords = " ".join(f"{_f(x_of(int(p['position'])))},{_f(y_of(p['value']))}" for p in points)
        out.append(f'<g class="series"><title>{esc(label)}</title>')
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in points:
            out.append(
                f'<circle cx="{_f(x_of(int(p["position"])))}" cy="{_f(y_of(p["value"]))}" r="3.5" '
                f'fill="{color}"><title>{esc(label)}, position {int(p["position"])}: '
                f"{100 * p['value']:.1f}% of {esc(p.get('n', '?'))}</title></circle>"
            )
        out.append("</g>")
        ly, lx = top + 6 + i * 20, left + plot_w + 30
        out.append(f'<rect x="{lx}" y="{ly}" width="14" height="4" fill="{color}"/>')
        out.append(f'<text x="{lx + 20}" y="{ly + 6}">{esc(_short(label, 36))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def histogram_chart(
    chart_id: str, title: str, values: Sequence[float], color: str, subtitle: str = "", bins: int = 10
) -> str:
    """A small histogram of scores in [0, 1], bars as the share of cases per bin."""
    width, height, left, top, plot_w, plot_h = 310, 168, 44, 40, 250, 96
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    total = max(1, len(values))
    peak = max(max(counts) / total, 1e-9)
    out = _svg_open(chart_id, width, height, f"{title}: {subtitle}", cls="chart chart-similarity")
    out.append(f'<text x="{left}" y="14">{esc(_short(title, 44))}</text>')
    out.append(f'<text x="{left}" y="30">{esc(subtitle)}</text>')
    out.append(
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>'
    )
    bar_w = plot_w / bins
    for b, count in enumerate(counts):
        h = plot_h * (count / total) / peak
        x = left + b * bar_w
        out.append(
            f'<rect x="{_f(x + 1)}" y="{_f(top + plot_h - h)}" width="{_f(bar_w - 2)}" height="{_f(h)}" '
            f'fill="{color}" fill-opacity="0.8"><title>{b / bins:.1f}–{(b + 1) / bins:.1f}: '
            f"{count} case{'s' if count != 1 else ''}</title></rect>"
        )
    for t in (0.0, 0.5, 1.0):
        out.append(
            f'<text x="{_f(left + plot_w * t)}" y="{top + plot_h + 16}" text-anchor="middle">{t:g}</text>'
        )
    out.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{100 * peak:.0f}%</text>')
    out.append("</svg>")
    return "\n".join(out)


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


def _similarity_section(
    results: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]], tables: dict[str, Any]
) -> str:
    metrics = [m for m in SIMILARITY if similarity_values(records, m)]
    if not metrics:
        return ""
    out = [
        '<section id="similarity">',
        "<h2>Description similarity</h2>",
        '<p class="note">Between the reference description and the description of the generated code, '
        "for answers whose code has one; each histogram's title gives the mean with its 95% bootstrap "
        "interval.</p>",
    ]
    for key in ("similarity", "similarity_all"):
        if has_values(tables.get(key)):
            out.append(paper_table(tables[key]))
    for m in metrics:
        label = "METEOR" if m == "meteor" else "BERTScore"
        out.append(f"<h3>{label} distribution</h3>")
        out.append('<div class="grid">')
        for i, row in enumerate(results):
            values = similarity_values(records_of(row, records), m)
            if not values:
                continue
            mean = f"mean {format_cell(row.get(m), 'score')}, n={len(values)}"
            out.append(
                f"<div>{histogram_chart(f'chart-{m}-{i}', group_label(row), values, _color(i), mean)}</div>"
            )
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


def _wrong_section(records: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in wrong_answers(records):
        answer = r.get("raw_answer")
        if answer is None:
            answer = f"(call failed) {r.get('error') or ''}"
        rows.append(
            [
                r.get("model"),
                r.get("system"),
                r.get("code"),
                clip(r.get("description"), 90),
                r.get("predicted_code") or "-",
                r.get("outcome"),
                clip(mask_credentials(answer),
                     total=r.get("answer_chars") if r.get("raw_answer") is not None else None),
            ]
        )
    if not rows:
        return ""
    headers = ("Model", "System", "Expected", "Description", "Predicted", "Outcome", "Raw answer")
    return "\n".join(
        [
            '<section id="wrong-answers">',
            "<h2>Wrong answers</h2>",
            '<p class="note">The first 20 per model and system, as the model wrote them (shown as text).</p>',
            _table(headers, rows, table_id="wrong", raw=(6,)),
            "</section>",
        ]
    )


def _config_section(summary: dict[str, Any]) -> str:
    cfg = dict(summary.get("config") or {})
    if not cfg and not summary.get("prompt_template"):
        return ""
    rows = [
        [k, json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v] for k, v in cfg.items()
    ]
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


# -- the page ----------------------------------------------------------------------------------


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


def render(records: Sequence[dict[str, Any]], summary: dict[str, Any] | None = None, seed: int = 0) -> str:
    """The whole page as a string."""
    summary = summary or {}
    results, tables = run_tables(records, summary, seed)
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
    error_tables = [paper_table(t) for t in tables.get("error_analysis") or []]
    body = [
        "<header>",
        f"<h1>pytest-medcode report — {esc(run_id)}</h1>",
        f'<p class="meta">{meta}</p>',
        "</header>",
        _gate_section(summary.get("gate")),
        '<section id="exact-match">',
        "<h2>Exact match by model × system</h2>",
        '<p class="note">Share of answered cases whose code is exactly the reference code; whiskers show 95% '
        "Wilson intervals. Failed calls are counted apart, not as wrong codes.</p>",
        exact_match_chart(results),
        paper_table(tables["exact_match"]),
        "</section>",
        '<section id="digits">',
        "<h2>Matched digits by position</h2>",
        '<p class="note">Share of answers that have the reference code\'s k-th character (dots not '
        "counted) at the same place, among references with at least k characters.</p>",
        digit_position_chart(results, records),
        "</section>",
        '<section id="error-analysis">',
        "<h2>Error analysis</h2>",
        '<div class="grid">',
        *[f"<div>{t}</div>" for t in error_tables if t],
        "</div></section>",
        _top_codes_section(tables.get("top_codes") or []),
        _cost_section(summary.get("costs")),
        _similarity_section(results, records, tables),
        _wrong_section(records),
        _config_section(summary),
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>pytest-medcode report {esc(run_id)}</title>",
            f"<style>{CSS}</style>",
            "</head><body><main>",
            *[part for part in body if part],
            "</main></body></html>",
            "",
        ]
    )
