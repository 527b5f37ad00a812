"""The run history's renderings: ``history.html`` and the terminal table of ``medcode history``.

A run here is the plain dict :mod:`pytest_medcode.runs.history` builds (run id, creation time, code-set
releases, prompt, the gate's verdict, exact match per group with its Wilson interval). The page is
self-contained like ``report.html`` and needs no script at all: its Content-Security-Policy forbids
every script and every load. Each group keeps one colour, runs whose gate failed are marked in the
chart and the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_medcode.reports.page import document, esc
from pytest_medcode.reports.svg import DASHES, MARKERS, palette_color, svg_marker
from pytest_medcode.reports.text import aligned

__all__ = ["render_html", "render_terminal", "series_labels"]

HISTORY_CSS = """
td.failed, tr.failed td:first-child { background: #ffebe9; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 6px 0; }
.fail-mark { color: #cf222e; font-weight: 700; }
"""


def series_labels(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every group seen in any run, in first-seen order."""
    return list(dict.fromkeys(p["label"] for run in runs for p in run["points"]))


def _pct(point: Mapping[str, Any] | None, ci: bool = True) -> str:
    if not point or point.get("value") is None:
        return "-"
    text = f"{100 * point['value']:.1f}%"
    if ci and point.get("low") is not None and point.get("high") is not None:
        text += f" ({100 * point['low']:.1f}–{100 * point['high']:.1f})"
    if point.get("coverage@95") is not None:  # straight-through: the share auto-coded at 95 % accuracy
        text += f", auto-codes {100 * point['coverage@95']:.1f}% at 95%"
    return text


def _gate_word(run: Mapping[str, Any]) -> str:
    gate = run.get("gate")
    return "-" if not gate else ("pass" if gate["passed"] else "FAILED")


def _code_sets(run: Mapping[str, Any]) -> str:
    return "; ".join(f"{k} {v}" for k, v in (run.get("code_systems") or {}).items()) or "-"


def _prompt(run: Mapping[str, Any]) -> str:
    text = run.get("prompt") or "-"
    return f"{text} #{run['prompt_hash']}" if run.get("prompt_hash") else text


def render_terminal(runs: Sequence[Mapping[str, Any]], last: int | None = None) -> list[str]:
    """One line per run (the ``last`` newest), exact match per group with its 95% interval."""
    shown = list(runs)[-last:] if last else list(runs)
    labels = series_labels(shown)
    headers = ["run", "created", "gate", *labels, "code sets", "prompt"]
    rows = []
    for run in shown:
        by_label = {p["label"]: p for p in run["points"]}
        rows.append([run["run_id"], str(run.get("created") or "")[:16].replace("T", " "), _gate_word(run),
                     *(_pct(by_label.get(label)) for label in labels), _code_sets(run), _prompt(run)])
    lines = aligned(headers, rows, left={0, 1, 2, len(headers) - 2, len(headers) - 1})
    if last and len(runs) > len(shown):
        lines.append(f"({len(runs) - len(shown)} older runs not shown; all are in history.html)")
    return lines


def _chart(runs: Sequence[Mapping[str, Any]], labels: Sequence[str], colors: Mapping[str, str]) -> str:
    """Exact match over runs, one line per group with its 95% band; failed gates as red marks."""
    left, top, plot_h, bottom = 48, 16, 240, 40
    plot_w = max(560, min(1100, 14 * len(runs)))
    width, height = left + plot_w + 20, top + plot_h + bottom
    n = len(runs)

    def x_of(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - v)

    out = [f'<svg id="chart-history" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           'aria-label="Exact match per model and system over runs, with 95% Wilson intervals">',
           "<title>Exact match per model and system over runs</title>"]
    for t in range(0, 101, 25):
        y = y_of(t / 100)
        out.append(f'<line class="axis" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{t}%</text>')
    for i, run in enumerate(runs):
        gate = run.get("gate")
        if gate and not gate["passed"]:
            out.append(f'<rect class="gate-failed" x="{x_of(i) - 3:.1f}" y="{top}" width="6" height="{plot_h}" '
                       f'fill="#cf222e" fill-opacity="0.18"><title>{esc(run["run_id"])}: gate failed — '
                       f"{esc(gate.get('reason', ''))}</title></rect>")
    step = max(1, n // 10)
    for i in range(0, n, step):
        out.append(f'<text x="{x_of(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{i + 1}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 34}" text-anchor="middle">'
               "run, oldest first (numbered as in the table)</text>")
    for k, label in enumerate(labels):
        color, dash, shape = colors[label], DASHES[k % len(DASHES)], MARKERS[k % len(MARKERS)]
        pts = [(i, p) for i, run in enumerate(runs) for p in run["points"] if p["label"] == label]
        if not pts:
            continue
        band = [p for p in pts if p[1].get("low") is not None and p[1].get("high") is not None]
        out.append(f'<g class="series"><title>{esc(label)}</title>')
        if len(band) > 1:
            upper = " ".join(f"{x_of(i):.1f},{y_of(p['high']):.1f}" for i, p in band)
            lower = " ".join(f"{x_of(i):.1f},{y_of(p['low']):.1f}" for i, p in reversed(band))
            out.append(f'<polygon points="{upper} {lower}" fill="{color}" fill-opacity="0.12"/>')
        coords = " ".join(f"{x_of(i):.1f},{y_of(p['value']):.1f}" for i, p in pts)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"{dash_attr}/>')
        if len(pts) <= 120:
            for i, p in pts:
                out.append(svg_marker(shape, x_of(i), y_of(p["value"]), color,
                                   f"{esc(label)}, run {i + 1} ({esc(runs[i]['run_id'])}): {esc(_pct(p))}"))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def _legend(labels: Sequence[str], colors: Mapping[str, str]) -> str:
    items = "".join(f'<span><span class="swatch" style="background:{colors[label]}"></span>{esc(label)}</span>'
                    for label in labels)
    return f'<div class="legend">{items}</div>'


def render_html(runs: Sequence[Mapping[str, Any]], root: str = "") -> str:
    """The whole history page as a string."""
    labels = series_labels(runs)
    colors = {label: palette_color(i) for i, label in enumerate(labels)}
    failed = sum(1 for run in runs if run.get("gate") and not run["gate"]["passed"])
    body = [
        "<header>",
        "<h1>pytest-medcode run history</h1>",
        f'<p class="meta">{esc(root)} · {len(runs):,} runs · {len(labels)} model / system groups'
        + (f' · <span class="fail-mark">{failed} with a failed gate</span>' if failed else "") + "</p>",
        "</header>",
    ]
    if not runs:
        body.append('<p class="note">No run folders found.</p>')
    else:
        body += [
            '<section id="history-chart">',
            "<h2>Exact match over runs</h2>",
            '<p class="note">One line per model · system, shaded by its 95% Wilson interval; a red band marks '
            "a run whose release gate failed.</p>",
            _legend(labels, colors),
            f'<div class="scroll">{_chart(runs, labels, colors)}</div>',
            "</section>",
        ]
        heads = "".join(f"<th>{esc(h)}</th>" for h in ("#", "Run", "Created", "Gate", *labels, "Code sets",
                                                      "Prompt"))
        rows = []
        for i, run in enumerate(runs):
            by_label = {p["label"]: p for p in run["points"]}
            gate = run.get("gate") or {}
            failed_gate = bool(gate and not gate["passed"])
            gate_cell = (f'<td class="failed" title="{esc(gate["reason"])}">FAILED</td>' if failed_gate
                         else f"<td>{esc(_gate_word(run))}</td>")
            cells = "".join(f'<td class="num">{esc(_pct(by_label.get(label)))}</td>' for label in labels)
            rows.append(f'<tr{" class=" + chr(34) + "failed" + chr(34) if failed_gate else ""}>'
                        f'<td class="num">{i + 1}</td><td>{esc(run["run_id"])}</td>'
                        f"<td>{esc(str(run.get('created') or '')[:19].replace('T', ' '))}</td>{gate_cell}{cells}"
                        f"<td>{esc(_code_sets(run))}</td><td>{esc(_prompt(run))}</td></tr>")
        body += [
            '<section id="history-runs">',
            "<h2>Runs</h2>",
            '<p class="note">Exact match with its 95% Wilson interval; the prompt is its name and a hash of its '
            "template, so an edited template shows as a new hash.</p>",
            '<div class="scroll"><table id="history-table">',
            f"<thead><tr>{heads}</tr></thead><tbody>",
            *rows,
            "</tbody></table></div>",
            "</section>",
        ]
    return document("pytest-medcode run history", body, extra_css=HISTORY_CSS)
