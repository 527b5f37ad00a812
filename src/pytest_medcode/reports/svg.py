"""SVG drawing primitives the pages' charts share: the palette, numbers as coordinates, the ``<svg>`` element,
line dashes and point markers. Text that goes into a chart is escaped here or by the caller (:func:`esc`).
"""

from __future__ import annotations

from pytest_medcode.reports.page import esc

__all__ = ["DASHES", "MARKERS", "PALETTE", "coord", "palette_color", "short", "svg_marker", "svg_open"]

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


def palette_color(i: int) -> str:
    """The ``i``-th series' colour, the palette cycled."""
    return PALETTE[i % len(PALETTE)]


def coord(x: float) -> str:
    """A coordinate as the SVG is written: one decimal."""
    return f"{x:.1f}"


def short(text: str, limit: int = 38) -> str:
    """A label cut to ``limit`` characters (an ellipsis marks the cut), to fit beside a chart."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg_open(chart_id: str, width: int, height: int, title: str, cls: str = "chart") -> list[str]:
    """An ``<svg>`` element's opening and its title (what a screen reader and a tooltip say); the caller
    appends the shapes and ``</svg>``."""
    return [
        f'<svg id="{esc(chart_id)}" class="{esc(cls)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
    ]


#: Line styles and marker shapes cycled through the series, so lines that coincide stay apart.
DASHES = ("", "7 4", "2 3", "9 3 2 3")
MARKERS = ("circle", "square", "triangle", "diamond")


def svg_marker(shape: str, x: float, y: float, color: str, tip: str) -> str:
    """A 7-px marker of ``shape`` at (x, y), with its tooltip."""
    title = f"<title>{tip}</title>"
    if shape == "square":
        return (f'<rect x="{coord(x - 3.5)}" y="{coord(y - 3.5)}" width="7" height="7" fill="{color}">'
                f"{title}</rect>")
    if shape == "triangle":
        pts = f"{coord(x)},{coord(y - 4.5)} {coord(x + 4.5)},{coord(y + 3.5)} {coord(x - 4.5)},{coord(y + 3.5)}"
        return f'<polygon points="{pts}" fill="{color}">{title}</polygon>'
    if shape == "diamond":
        pts = (f"{coord(x)},{coord(y - 5)} {coord(x + 5)},{coord(y)} {coord(x)},{coord(y + 5)} "
               f"{coord(x - 5)},{coord(y)}")
        return f'<polygon points="{pts}" fill="{color}">{title}</polygon>'
    return f'<circle cx="{coord(x)}" cy="{coord(y)}" r="3.5" fill="{color}">{title}</circle>'
