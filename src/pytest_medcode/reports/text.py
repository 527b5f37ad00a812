"""Aligned plain-text tables: the one printer behind every table the terminal and ``medcode`` show."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from pytest_medcode.asking.pricing import usd

__all__ = ["DEFAULT_WIDTH", "aligned", "fitted", "usd", "wrapped"]


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int | Collection[int] = 1) -> list[str]:
    """Header, a rule, then the rows. Text columns flush left — the first ``left`` columns, or the column
    indexes ``left`` names — the rest (numbers) flush right. No trailing spaces, so a table diffs cleanly."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]
    text = set(range(left)) if isinstance(left, int) else set(left)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i in text else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *map(line, rows)]


#: The widest a table is drawn when nothing says otherwise: fits a default 100-column terminal and a diff.
DEFAULT_WIDTH = 100
#: A value column is never cut below this (an estimate with its interval, "100.0% (83.9–100.0)", is 19).
MIN_COLUMN = 24


def _shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters: both ends of a long model name stay readable."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


def _widths(rows: Sequence[Sequence[str]], columns: Iterable[int]) -> list[int]:
    return [max(len(r[i]) for r in rows) for i in columns]


def _cut(rows: list[list[str]], columns: range, widths: Sequence[int]) -> list[list[str]]:
    """``rows`` with the cells of ``columns`` cut in the middle to their column's width."""
    return [[*r[: columns.start], *(_shorten(r[i], w) for i, w in zip(columns, widths)), *r[columns.stop:]]
            for r in rows]


def _label_widths(labels: list[int], widest_value: int, width: int) -> list[int]:
    """The label columns' widths, the widest cut by one until the labels and the widest value column fit."""
    room = width - widest_value - 2  # the labels' share of a line that holds the widest value column
    while sum(labels) + 2 * (len(labels) - 1) > room and max(labels) > 4:
        labels[labels.index(max(labels))] -= 1
    return labels


def _blocks(label_width: int, values: Sequence[int], left: int, width: int) -> list[list[int]]:
    """The value columns (by index) shared out in order into blocks that fit beside the labels."""
    blocks: list[list[int]] = []
    used = label_width
    for i, w in enumerate(values, start=left):
        if blocks and used + 2 + w <= width:
            blocks[-1].append(i)
            used += 2 + w
        else:
            blocks.append([i])
            used = label_width + 2 + w
    return blocks


def fitted(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1,
           width: int = DEFAULT_WIDTH) -> list[str]:
    """:func:`aligned`, no line wider than ``width``: the first ``left`` columns (the row labels) repeat in
    each of several stacked blocks that share the other columns out in order; labels too long even for one
    value column are cut in the middle. One block, exactly as :func:`aligned` draws it, when it fits."""
    table = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    whole = aligned(table[0], table[1:], left)
    if max(map(len, whole)) <= width or len(table[0]) <= left:
        return whole
    labels, values = range(left), range(left, len(table[0]))
    label_widths = _widths(table, labels)
    # A value column as wide as a long model name (the error tables' columns are models) is cut first, down
    # to what the labels leave; then labels are cut if even one value column does not fit beside them.
    cap = max(MIN_COLUMN, width - sum(label_widths) - 2 * left)
    table = _cut(table, values, [cap] * len(values))
    value_widths = _widths(table, values)
    table = _cut(table, labels, _label_widths(label_widths, max(value_widths), width))
    label_width = sum(_widths(table, labels)) + 2 * (left - 1)
    return _stacked(table, left, _blocks(label_width, value_widths, left, width))


def _stacked(table: list[list[str]], left: int, blocks: Sequence[Sequence[int]]) -> list[str]:
    """One :func:`aligned` table per block of value columns, each with the labels, a blank line between."""
    out: list[str] = []
    for n, block in enumerate(blocks):
        cols = [*range(left), *block]
        if n:
            out.append("")
        out += aligned([table[0][i] for i in cols], [[r[i] for i in cols] for r in table[1:]], left)
    return out


def wrapped(text: str, width: int = DEFAULT_WIDTH, indent: str = "") -> list[str]:
    """A sentence as lines of at most ``width`` characters (continuation lines indented by ``indent``); a word
    longer than that (a path) gets a line of its own, whole."""
    import textwrap

    return textwrap.wrap(text, width=width, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=False) or [""]  # a path or a code is never cut
