"""``report.html``: one self-contained page with the run's headline, tables, charts and every case.

Nothing is fetched at view time: CSS is inline and the charts are SVG written here. The one script is
the case explorer's (:mod:`pytest_medcode.reports.explorer`); the Content-Security-Policy allows exactly
that script by its SHA-256 and forbids every other script and any network load, so even a bug in
escaping could not run what a model wrote. The cases ride in a ``<script type="application/json">``
block whose ``<``, ``>`` and ``&`` are JSON escapes (:func:`json_script`), and the explorer writes
them as text. Everything else that comes from a model, a code table or the user goes through
:func:`esc` (``html.escape``); numbers are formatted by us. The numbers are the run's results and
paper tables (see :mod:`pytest_medcode.reports.markdown`), the same as the terminal's and the summary's.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_medcode.codesystems import SYSTEMS
from pytest_medcode.reports import documents
from pytest_medcode.reports.explorer import EXPLORER_JS, RAW_LIMIT, explorer_data
from pytest_medcode.reports.markdown import (
    budget_text,
    clip,
    cost_rows,
    has_values,
    records_of,
    row_title,
    run_tables,
    similarity_values,
)
from pytest_medcode.reports.tables import format_cell
from pytest_medcode.reports.text import usd
from pytest_medcode.reports.verdict import check_cells
from pytest_medcode.results.aggregate import digit_position_rates
from pytest_medcode.results.costs import tally
from pytest_medcode.results.stats import mcnemar_exact
from pytest_medcode.safetext import visible
from pytest_medcode.scoring.hierarchy import LEVELS
from pytest_medcode.vocabulary import (
    DIMENSIONS,
    ERROR_MIX,
    GROUP_KEYS,
    MIX_FAILED,
    SIMILARITY,
    answered,
    error_kind,
    format_p,
    group_label,
    query_records,
)

__all__ = ["CSP", "esc", "json_script", "page_csp", "paper_table", "render", "series_colors"]

#: No scripts, no fetches; inline styles and data: images only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def page_csp(*scripts: str) -> str:
    """:data:`CSP` that also runs exactly these inline scripts (by their SHA-256), nothing else."""
    if not scripts:
        return CSP
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode('utf-8')).digest()).decode()}'" for s in scripts
    )
    return f"{CSP}; script-src {hashes}"


_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_script(data: Any, element_id: str) -> str:
    """Data for a page's script as a ``<script type="application/json">`` block. ``<``, ``>`` and ``&`` are
    written as JSON escapes, so no text inside (a model's ``</script>``) can end the block or open a tag."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    text = re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], text)
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'

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
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
#headline .lead { font-size: 16px; margin: 6px 0; }
#headline .gate { margin: 10px 0; }
.scroll { overflow-x: auto; max-width: 100%; }
#explorer .filters { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; margin: 8px 0; }
#explorer input[type=search] { min-width: 220px; padding: 4px 6px; font: inherit; }
#explorer select { font: inherit; padding: 3px; }
#explorer button { font: inherit; cursor: pointer; border: 1px solid #d0d7de; background: #f6f8fa;
                   border-radius: 12px; padding: 2px 10px; }
#explorer button[aria-pressed=true] { background: #0969da; color: #fff; border-color: #0969da; }
#explorer th button { border: 0; background: none; padding: 0; font-weight: 600; border-radius: 0; }
#explorer th button[aria-sort=ascending]::after { content: " \\25B2"; }
#explorer th button[aria-sort=descending]::after { content: " \\25BC"; }
#explorer table { width: 100%; min-width: 880px; }
#explorer td { font-size: 13px; }
#explorer .pager { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
#explorer .pager button { border-radius: 4px; }
@media (max-width: 600px) {
  main { padding: 12px 10px 32px; }
  svg.chart { max-width: 100%; height: auto; }
  table { display: block; overflow-x: auto; max-width: 100%; }
  .grid > div { max-width: 100%; }
  pre { max-width: 100%; overflow-x: auto; }
  #explorer input[type=search] { min-width: 0; width: 100%; }
}
"""


def esc(value: Any) -> str:
    """Any value as safe HTML text (quotes too, so it is also safe inside attributes), control characters
    shown as ``\\xNN`` (HTML escaping leaves ESC and BEL in the file, and in a terminal that prints it)."""
    return html.escape(visible(value), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def series_colors(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """One colour per results group (model · system, and the run's other dimensions), in first-seen order:
    the same group has the same colour in every chart and table of a page."""
    colors: dict[str, str] = {}
    for row in rows:
        colors.setdefault(group_label(row), _color(len(colors)))
    return colors


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


def exact_match_chart(results: Sequence[dict[str, Any]], colors: Mapping[str, str] | None = None) -> str:
    """Horizontal bars of exact match per results row (model × system) with 95% Wilson whiskers."""
    label_w, plot_w, row_h, top, bottom = 270, 540, 30, 14, 34
    n = max(1, len(results))
    width, height = label_w + plot_w + 110, top + row_h * n + bottom
    colors = colors or series_colors(results)
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
        low = value if est.get("low") is None else est["low"]
        high = value if est.get("high") is None else est["high"]
        color = colors.get(label, _color(i))
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


#: Line styles and marker shapes cycled through the series, so lines that coincide stay apart.
DASHES = ("", "7 4", "2 3", "9 3 2 3")
MARKERS = ("circle", "square", "triangle", "diamond")


def svg_marker(shape: str, x: float, y: float, color: str, tip: str) -> str:
    """A 7-px marker of ``shape`` at (x, y), with its tooltip."""
    title = f"<title>{tip}</title>"
    if shape == "square":
        return f'<rect x="{_f(x - 3.5)}" y="{_f(y - 3.5)}" width="7" height="7" fill="{color}">{title}</rect>'
    if shape == "triangle":
        pts = f"{_f(x)},{_f(y - 4.5)} {_f(x + 4.5)},{_f(y + 3.5)} {_f(x - 4.5)},{_f(y + 3.5)}"
        return f'<polygon points="{pts}" fill="{color}">{title}</polygon>'
    if shape == "diamond":
        pts = f"{_f(x)},{_f(y - 5)} {_f(x + 5)},{_f(y)} {_f(x)},{_f(y + 5)} {_f(x - 5)},{_f(y)}"
        return f'<polygon points="{pts}" fill="{color}">{title}</polygon>'
    return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="3.5" fill="{color}">{title}</circle>'


def digit_position_chart(
    results: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]], colors: Mapping[str, str] | None = None
) -> str:
    """Share of answers matching the reference at each character position, one line per row. Each series
    has its own dash, marker and a small sideways offset, so identical lines are all still seen."""
    colors = colors or series_colors(results)
    series = [(row, _positions(row, records)) for row in results]
    if not any(points for _, points in series):
        return ""
    shift = 0.0 if len(series) < 2 else min(4.0, 16.0 / (len(series) - 1))
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
        label = group_label(row)
        color, dash, shape = colors.get(label, _color(i)), DASHES[i % len(DASHES)], MARKERS[i % len(MARKERS)]
        dx = shift * (i - (len(series) - 1) / 2)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        coords = " ".join(f"{_f(x_of(int(p['position'])) + dx)},{_f(y_of(p['value']))}" for p in points)
        out.append(f'<g class="series"><title>{esc(label)}</title>')
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"{dash_attr}/>')
        for p in points:
            tip = f"{esc(label)}, position {int(p['position'])}: {100 * p['value']:.1f}% of {esc(p.get('n', '?'))}"
            out.append(svg_marker(shape, x_of(int(p["position"])) + dx, y_of(p["value"]), color, tip))
        out.append("</g>")
        ly, lx = top + 6 + i * 20, left + plot_w + 30
        out.append(f'<line x1="{lx}" y1="{ly + 2}" x2="{lx + 22}" y2="{ly + 2}" stroke="{color}" '
                   f'stroke-width="2"{dash_attr}/>')
        out.append(svg_marker(shape, lx + 11, ly + 2, color, esc(label)))
        out.append(f'<text x="{lx + 28}" y="{ly + 6}">{esc(_short(label, 36))}</text>')
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
        label = "METEOR" if m == "meteor" else "BERTScore"
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
MIX_COLORS = dict(zip(ERROR_MIX, ("#2da44e", "#f0883e", "#d4a72c", "#cf222e", "#8c959f", "#57606a")))
LEVEL_COLORS = dict(zip((*LEVELS, "none"), ("#1a7f37", "#4ac26b", "#9be9a8", "#f5c26b", "#f0883e", "#cf222e")))
LEVEL_TITLES = {"code": "same code", "subcategory": "same subcategory", "category": "same category",
                "block": "same block", "chapter": "same chapter", "none": "unrelated"}


def stacked_chart(
    chart_id: str,
    title: str,
    bars: Sequence[tuple[str, str, Mapping[str, int], str]],
    parts: Mapping[str, tuple[str, str]],
) -> str:
    """Horizontal 100% bars, one per (label, series colour, counts per part, note), split into ``parts``
    (key → (legend title, colour)), with the legend above."""
    label_w, plot_w, row_h, top = 270, 540, 28, 40
    width, height = label_w + plot_w + 140, top + row_h * len(bars) + 10
    out = _svg_open(chart_id, width, height, title)
    x = float(label_w)
    for name, color in parts.values():
        out.append(f'<rect x="{_f(x)}" y="8" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{_f(x + 16)}" y="18">{esc(name)}</text>')
        x += 30 + 7.2 * len(name)
    for i, (label, series_color, counts, note) in enumerate(bars):
        y = top + i * row_h
        total = sum(counts.get(k, 0) for k in parts)
        out.append('<g class="bar">')
        out.append(f'<rect x="4" y="{_f(y + 9)}" width="10" height="10" fill="{series_color}"/>')
        out.append(f'<text x="{label_w - 8}" y="{_f(y + 18)}" text-anchor="end">{esc(_short(label))}</text>')
        x = float(label_w)
        for key, (name, color) in parts.items():
            count = counts.get(key, 0)
            if not count or not total:
                continue
            w = plot_w * count / total
            out.append(
                f'<rect x="{_f(x)}" y="{_f(y + 5)}" width="{_f(w)}" height="{row_h - 10}" fill="{color}">'
                f"<title>{esc(label)}: {esc(name)} {count:,} of {total:,} ({100 * count / total:.1f}%)</title></rect>"
            )
            if w > 34:
                out.append(f'<text x="{_f(x + w / 2)}" y="{_f(y + 18)}" text-anchor="middle">'
                           f"{100 * count / total:.0f}%</text>")
            x += w
        if not total:
            out.append(f'<text x="{label_w + 6}" y="{_f(y + 18)}">no answered cases</text>')
        out.append(f'<text x="{label_w + plot_w + 8}" y="{_f(y + 18)}">{esc(note)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


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
        "cannot be billed, a code that does not exist, or no code at all. Failed calls are counted apart.</p>",
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
            f"{row.get('errors', 0):,}",
            cost_text(mine),
        ])
    headers = ("Model / system", "Cases", "Exact match (95% CI)", "Valid", "Fabricated", "Failed calls", "Cost")
    out.append('<div class="scroll">' + _table(headers, rows, table_id="headline-table", numeric=range(1, 7))
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


def _explorer_section(records: Sequence[dict[str, Any]]) -> str:
    if not records:
        return ""
    data = explorer_data(records)
    columns = [0, 1, *([3] if len(data["variants"]) > 1 else []), 2, 4, 5, 6, 7, 8]
    titles = {0: "Model", 1: "System", 2: "Outcome", 3: "Variant", 4: "Expected", 5: "Description",
              6: "Predicted", 7: "Predicted code's description", 8: "Raw answer"}

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
        f"variant, search any text, sort by a column's title. Raw answers are cut at {RAW_LIMIT} characters "
        "(whole in cases.parquet); shown as text.</p>",
        "<noscript><p>The case explorer needs JavaScript.</p></noscript>",
        f'<div id="explorer" hidden data-columns="{esc(json.dumps(columns))}">',
        '<div class="filters">',
        options("explorer-model", "Model", data["models"]),
        options("explorer-system", "System", data["systems"]),
        options("explorer-variant", "Variant", data["variants"]),
        '<label>Search <input type="search" id="explorer-q" placeholder="code, description, answer…" '
        'autocomplete="off"></label>',
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
    records = query_records(records)  # document cases have their own section (reports/documents.py)
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
    explorer = _explorer_section(records)
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
        _cost_section(summary.get("costs")),
        _similarity_section(results, records, tables, summary, colors),
        explorer,
        documents.html_section(summary.get("documents")),
        _config_section(summary),
    ]
    scripts = [EXPLORER_JS] if explorer else []
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{esc(page_csp(*scripts))}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>pytest-medcode report {esc(run_id)}</title>",
            f"<style>{CSS}</style>",
            "</head><body><main>",
            *[part for part in body if part],
            *[f"<script>{script}</script>" for script in scripts],
            "</main></body></html>",
            "",
        ]
    )
