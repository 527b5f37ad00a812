"""Aligned plain-text tables: the one printer behind every table the terminal and ``medcode`` show."""

from __future__ import annotations

from collections.abc import Collection, Sequence

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


def fitted(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1,
           width: int = DEFAULT_WIDTH) -> list[str]:
    """:func:`aligned`, no line wider than ``width``: the first ``left`` columns (the row labels) repeat in
    each of several stacked blocks that share the other columns out in order; labels too long even for one
    value column are cut in the middle. One block, exactly as :func:`aligned` draws it, when it fits."""
    headers = [str(h) for h in headers]
    body = [[str(c) for c in row] for row in rows]
    whole = aligned(headers, body, left)
    if max(map(len, whole)) <= width or len(headers) <= left:
        return whole
    labels = [max(len(r[i]) for r in (headers, *body)) for i in range(left)]
    # A value column as wide as a long model name (the error tables' columns are models) is cut first, down
    # to what the labels leave; then labels are cut if even one value column does not fit beside them.
    cap = max(MIN_COLUMN, width - sum(labels) - 2 * left)
    headers = [*headers[:left], *(_shorten(h, cap) for h in headers[left:])]
    body = [[*r[:left], *(_shorten(c, cap) for c in r[left:])] for r in body]
    values = [max(len(r[i]) for r in (headers, *body)) for i in range(left, len(headers))]
    room = width - max(values) - 2  # the labels' share of a line that holds the widest value column
    while sum(labels) + 2 * (len(labels) - 1) > room and max(labels) > 4:
        widest = labels.index(max(labels))
        labels[widest] -= 1
    headers = [*(_shorten(h, w) for h, w in zip(headers[:left], labels)), *headers[left:]]
    body = [[*(_shorten(c, w) for c, w in zip(r[:left], labels)), *r[left:]] for r in body]
    label_width = sum(max(len(r[i]) for r in (headers, *body)) for i in range(left)) + 2 * (left - 1)
    blocks: list[list[int]] = []
    used = label_width
    for i, w in zip(range(left, len(headers)), values):
        if blocks and used + 2 + w <= width:
            blocks[-1].append(i)
            used += 2 + w
        else:
            blocks.append([i])
            used = label_width + 2 + w
    out: list[str] = []
    for n, block in enumerate(blocks):
        cols = [*range(left), *block]
        if n:
            out.append("")
        out += aligned([headers[i] for i in cols], [[r[i] for i in cols] for r in body], left)
    return out


def wrapped(text: str, width: int = DEFAULT_WIDTH, indent: str = "") -> list[str]:
    """A sentence as lines of at most ``width`` characters (continuation lines indented by ``indent``); a word
    longer than that (a path) gets a line of its own, whole."""
    import textwrap

    return textwrap.wrap(text, width=width, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=False) or [""]  # a path or a code is never cut
