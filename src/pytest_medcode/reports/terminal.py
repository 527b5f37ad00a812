"""The paper-style table printed at the end of the session."""

from __future__ import annotations

from typing import Any


def _pct(est: dict[str, Any], ci: bool = False) -> str:
    if est["value"] is None:
        return "-"
    text = f"{100 * est['value']:.1f}%"
    if ci:
        text += f" ({100 * est['low']:.1f}–{100 * est['high']:.1f})"
    return text


def _num(est: dict[str, Any]) -> str:
    return "-" if est["value"] is None else f"{est['value']:.2f}"


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
    rows = [HEADERS, *table_rows(groups)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = []
    for j, row in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
