"""Aligned plain-text tables: the one printer behind every table the terminal and ``medcode`` show."""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["aligned", "usd"]


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int | Collection[int] = 1) -> list[str]:
    """Header, a rule, then the rows. Text columns flush left — the first ``left`` columns, or the column
    indexes ``left`` names — the rest (numbers) flush right. No trailing spaces, so a table diffs cleanly."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]
    text = set(range(left)) if isinstance(left, int) else set(left)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i in text else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *map(line, rows)]


def usd(value: float | None) -> str:
    """Dollars to the cent, and to a hundredth of a cent under $1 (a small run's cost is not "$0.00");
    None is an unknown price, never $0."""
    if value is None:
        return "unknown"
    if 0 < abs(value) < 1:
        return f"${value:.4f}"
    return f"${value:,.2f}"

