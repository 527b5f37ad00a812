"""The charts of ``report.html``, as inline SVG: exact match with its intervals, matched digits by position,
score histograms and 100% stacked bars (the error mix, hierarchy closeness). Each results group keeps one
colour on the whole page (:func:`series_colors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_medcode.reports.page import esc
from pytest_medcode.reports.svg import DASHES, MARKERS, coord, palette_color, short, svg_marker, svg_open
from pytest_medcode.reports.tables import format_cell, records_of
from pytest_medcode.results.aggregate import digit_position_rates
from pytest_medcode.vocabulary import answered, group_label

__all__ = ["digit_position_chart", "exact_match_chart", "histogram_chart", "reliability_chart", "risk_coverage_chart",
           "series_colors", "stacked_chart"]


def series_colors(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """One colour per results group (model · system, and the run's other dimensions), in first-seen order:
    the same group has the same colour in every chart and table of a page."""
    colors: dict[str, str] = {}
    for row in rows:
        colors.setdefault(group_label(row), palette_color(len(colors)))
    return colors


def exact_match_chart(results: Sequence[dict[str, Any]], colors: Mapping[str, str] | None = None) -> str:
    """Horizontal bars of exact match per results row (model × system) with 95% Wilson whiskers."""
    label_w, plot_w, row_h, top, bottom = 270, 540, 30, 14, 34
    n = max(1, len(results))
    width, height = label_w + plot_w + 110, top + row_h * n + bottom
    colors = colors or series_colors(results)
    out = svg_open(
        "chart-exact-match",
        width,
        height,
        "Exact match by model and code system, with 95% Wilson confidence intervals",
    )
    axis_y = top + row_h * n
    for t in range(0, 101, 20):
        x = label_w + plot_w * t / 100
        out.append(f'<line class="axis" x1="{coord(x)}" y1="{top}" x2="{coord(x)}" y2="{axis_y}"/>')
        out.append(f'<text x="{coord(x)}" y="{axis_y + 16}" text-anchor="middle">{t}%</text>')
    for i, row in enumerate(results):
        est = row.get("exact_match") or {}
        y = top + i * row_h
        mid = y + row_h / 2
        label = group_label(row)
        out.append('<g class="bar">')
        out.append(
            f"<title>{esc(label)}: {esc(format_cell(est, 'percent'))}, n={esc(est.get('n', 0))}</title>"
        )
        out.append(f'<text x="{label_w - 8}" y="{coord(mid + 4)}" text-anchor="end">{esc(short(label))}</text>')
        value = est.get("value")
        if value is None:
            out.append(f'<text x="{label_w + 6}" y="{coord(mid + 4)}">no answered cases</text></g>')
            continue
        low = value if est.get("low") is None else est["low"]
        high = value if est.get("high") is None else est["high"]
        color = colors.get(label, palette_color(i))
        out.append(
            f'<rect x="{label_w}" y="{coord(y + 7)}" width="{coord(plot_w * value)}" height="{row_h - 14}" '
            f'fill="{color}" fill-opacity="0.8"/>'
        )
        x1, x2 = label_w + plot_w * low, label_w + plot_w * high
        out.append(f'<line class="ci" x1="{coord(x1)}" y1="{coord(mid)}" x2="{coord(x2)}" y2="{coord(mid)}"/>')
        for x in (x1, x2):
            out.append(f'<line class="ci" x1="{coord(x)}" y1="{coord(mid - 6)}" x2="{coord(x)}" '
                       f'y2="{coord(mid + 6)}"/>')
        out.append(f'<text x="{coord(x2 + 6)}" y="{coord(mid + 4)}">{100 * value:.1f}%</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def _positions(row: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rates = row.get("digit_positions")
    if isinstance(rates, list):
        return [p for p in rates if isinstance(p, dict) and p.get("value") is not None]
    return digit_position_rates(answered(records_of(row, records)))


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
    out = svg_open(
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
        out.append(f'<line class="axis" x1="{left}" y1="{coord(y)}" x2="{left + plot_w}" y2="{coord(y)}"/>')
        out.append(f'<text x="{left - 6}" y="{coord(y + 4)}" text-anchor="end">{t}%</text>')
    for k in range(1, k_max + 1):
        out.append(f'<text x="{coord(x_of(k))}" y="{top + plot_h + 18}" text-anchor="middle">{k}</text>')
    out.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 36}" text-anchor="middle">'
        "position in the reference code (dots not counted)</text>"
    )
    for i, (row, points) in enumerate(series):
        if not points:
            continue
        label = group_label(row)
        color, dash, shape = colors.get(label, palette_color(i)), DASHES[i % len(DASHES)], MARKERS[i % len(MARKERS)]
        dx = shift * (i - (len(series) - 1) / 2)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        coords = " ".join(f"{coord(x_of(int(p['position'])) + dx)},{coord(y_of(p['value']))}" for p in points)
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
        out.append(f'<text x="{lx + 28}" y="{ly + 6}">{esc(short(label, 36))}</text>')
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
    out = svg_open(chart_id, width, height, f"{title}: {subtitle}", cls="chart chart-similarity")
    out.append(f'<text x="{left}" y="14">{esc(short(title, 44))}</text>')
    out.append(f'<text x="{left}" y="30">{esc(subtitle)}</text>')
    out.append(
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>'
    )
    bar_w = plot_w / bins
    for b, count in enumerate(counts):
        h = plot_h * (count / total) / peak
        x = left + b * bar_w
        out.append(
            f'<rect x="{coord(x + 1)}" y="{coord(top + plot_h - h)}" width="{coord(bar_w - 2)}" height="{coord(h)}" '
            f'fill="{color}" fill-opacity="0.8"><title>{b / bins:.1f}–{(b + 1) / bins:.1f}: '
            f"{count} case{'s' if count != 1 else ''}</title></rect>"
        )
    for t in (0.0, 0.5, 1.0):
        out.append(
            f'<text x="{coord(left + plot_w * t)}" y="{top + plot_h + 16}" text-anchor="middle">{t:g}</text>'
        )
    out.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{100 * peak:.0f}%</text>')
    out.append("</svg>")
    return "\n".join(out)


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
    out = svg_open(chart_id, width, height, title)
    x = float(label_w)
    for name, color in parts.values():
        out.append(f'<rect x="{coord(x)}" y="8" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{coord(x + 16)}" y="18">{esc(name)}</text>')
        x += 30 + 7.2 * len(name)
    for i, (label, series_color, counts, note) in enumerate(bars):
        y = top + i * row_h
        total = sum(counts.get(k, 0) for k in parts)
        out.append('<g class="bar">')
        out.append(f'<rect x="4" y="{coord(y + 9)}" width="10" height="10" fill="{series_color}"/>')
        out.append(f'<text x="{label_w - 8}" y="{coord(y + 18)}" text-anchor="end">{esc(short(label))}</text>')
        x = float(label_w)
        for key, (name, color) in parts.items():
            count = counts.get(key, 0)
            if not count or not total:
                continue
            w = plot_w * count / total
            out.append(
                f'<rect x="{coord(x)}" y="{coord(y + 5)}" width="{coord(w)}" height="{row_h - 10}" fill="{color}">'
                f"<title>{esc(label)}: {esc(name)} {count:,} of {total:,} ({100 * count / total:.1f}%)</title></rect>"
            )
            if w > 34:
                out.append(f'<text x="{coord(x + w / 2)}" y="{coord(y + 18)}" text-anchor="middle">'
                           f"{100 * count / total:.0f}%</text>")
            x += w
        if not total:
            out.append(f'<text x="{label_w + 6}" y="{coord(y + 18)}">no answered cases</text>')
        out.append(f'<text x="{label_w + plot_w + 8}" y="{coord(y + 18)}">{esc(note)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)



# -- straight-through coding: the risk-coverage curve and the reliability diagram -----------------------------


def _unit_frame(out: list[str], box: tuple[int, int, int, int], x_label: str, y_label: str) -> None:
    """Axes of a [0, 1] × [0, 1] plot at ``box`` (left, top, width, height), gridlines every 25 %."""
    left, top, w, h = box
    for t in range(0, 101, 25):
        y, x = top + h * (1 - t / 100), left + w * t / 100
        out.append(f'<line class="axis" x1="{left}" y1="{coord(y)}" x2="{left + w}" y2="{coord(y)}"/>')
        out.append(f'<text x="{left - 6}" y="{coord(y + 4)}" text-anchor="end">{t}%</text>')
        out.append(f'<text x="{coord(x)}" y="{top + h + 16}" text-anchor="middle">{t}%</text>')
    out.append(f'<text x="{left + w / 2}" y="{top + h + 34}" text-anchor="middle">{esc(x_label)}</text>')
    out.append(f'<text x="12" y="{top + h / 2}" transform="rotate(-90 12 {top + h / 2})" '
               f'text-anchor="middle">{esc(y_label)}</text>')


def _legend(out: list[str], x: int, top: int, i: int, label: str, color: str) -> None:
    y = top + 6 + i * 20
    out.append(f'<line x1="{x}" y1="{y + 2}" x2="{x + 22}" y2="{y + 2}" stroke="{color}" stroke-width="2"/>')
    out.append(f'<text x="{x + 28}" y="{y + 6}">{esc(short(label, 36))}</text>')


_BOX = (56, 16, 320, 220)


def _unit_chart(n_series: int, chart_id: str, title: str, x_label: str, y_label: str) -> list[str]:
    """The opening of a chart of shares on both axes: the page sized for its legend, the framed unit box."""
    left, top, w, h = _BOX
    width, height = left + w + 30 + 280, max(top + h + 44, 30 + 20 * n_series)
    out = svg_open(chart_id, width, height, title)
    _unit_frame(out, _BOX, x_label, y_label)
    return out


def risk_coverage_chart(rows: Sequence[dict[str, Any]], colors: Mapping[str, str] | None = None, *,
                        chart_id: str = "chart-risk-coverage",
                        title: str = "Risk of auto-coded cases against coverage, per model",
                        x_label: str = "share of cases auto-coded (coverage)",
                        y_label: str = "share wrong among them (risk)", measure: str = "accuracy") -> str:
    """Risk (share wrong) of the auto-coded cases against the share auto-coded, one line per group with a
    confidence, and a dashed line at each target's risk (1 - target accuracy). The documents' precision–coverage
    curve is drawn by it too, as 1 - precision of the codes kept (its own id, title, labels and ``measure``)."""
    series = [r for r in rows if r.get("curve")]
    if not series:
        return ""
    colors = colors or series_colors(series)
    left, top, w, h = _BOX
    out = _unit_chart(len(series), chart_id, title, x_label, y_label)
    for target in sorted({e["target"] for r in series for e in r["coverage"].values()}):
        y = top + h * target  # risk 1 - target, measured from the top
        out.append(f'<line class="target" x1="{left}" y1="{coord(y)}" x2="{left + w}" y2="{coord(y)}" '
                   f'stroke="#555" stroke-dasharray="4 3"><title>target: {100 * target:g}% {esc(measure)}</title>'
                   "</line>")
    for i, row in enumerate(series):
        label = group_label(row)
        color = colors.get(label, palette_color(i))
        points = " ".join(f"{coord(left + w * c)},{coord(top + h * (1 - r))}" for c, r, _ in row["curve"])
        out.append(f'<g class="series"><title>{esc(label)}</title>'
                   f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/></g>')
        _legend(out, left + w + 30, top, i, label, color)
    out.append("</svg>")
    return "\n".join(out)


def reliability_chart(rows: Sequence[dict[str, Any]], colors: Mapping[str, str] | None = None) -> str:
    """Accuracy against mean confidence in each of the 10 confidence bins, one line per group; the diagonal
    is a calibrated product."""
    series = [r for r in rows if r.get("reliability")]
    if not series:
        return ""
    colors = colors or series_colors(series)
    left, top, w, h = _BOX
    out = _unit_chart(len(series), "chart-reliability", "Reliability: accuracy against confidence, per model",
                      "confidence (mean in its bin)", "exact match in the bin")
    out.append(f'<line class="diagonal" x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top}" stroke="#999" '
               'stroke-dasharray="2 3"/>')
    for i, row in enumerate(series):
        label, bins = group_label(row), [b for b in row["reliability"] if b["n"]]
        color, shape = colors.get(label, palette_color(i)), MARKERS[i % len(MARKERS)]
        xy = [(left + w * b["confidence"], top + h * (1 - b["accuracy"]), b) for b in bins]
        out.append(f'<g class="series"><title>{esc(label)}</title><polyline points="'
                   + " ".join(f"{coord(x)},{coord(y)}" for x, y, _ in xy)
                   + f'" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, b in xy:
            tip = (f"{esc(label)}: confidence {b['low']:.1f}–{b['high']:.1f}, {b['n']} cases, "
                   f"mean {b['confidence']:.2f}, exact match {100 * b['accuracy']:.1f}%")
            out.append(svg_marker(shape, x, y, color, tip))
        out.append("</g>")
        _legend(out, left + w + 30, top, i, label, color)
    out.append("</svg>")
    return "\n".join(out)
