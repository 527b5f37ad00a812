"""A code system from the user's own table: SNOMED CT or LOINC subsets they license, a payer's local codes.

``--medcode-codeset NAME=PATH`` (or ``NAME:TITLE=PATH``) with a NAME that is not built in reads a CSV, TSV
or Parquet file with ``code`` and ``description`` columns and optional ``parent`` (the code one level up,
empty at the top) and ``billable`` (1/0, yes/no, true/false; every code is billable without the column).
Codes are compared as keys: upper case, dots and spaces removed (``12.3`` and ``123`` are one code).

Everything is checked before a table is built, and the first problem stops the run with one line naming
the file, the row and the problem: a missing column, an empty code or description, a duplicate code, a
parent that is not in the file, a cycle in the parent chain, a billable value that is not yes or no
(and what :func:`~pytest_medcode.codesystems.cpt.read_table_file` refuses: a row with extra cells, a cell
too long, a Parquet column that does not hold text or integer codes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_medcode.codesystems.cpt import CodeFileError, read_table_file, shown
from pytest_medcode.codesystems.normalize import key as code_key

if TYPE_CHECKING:
    from pytest_medcode.codesystems.table import TableRow

_YES = frozenset({"1", "y", "yes", "true", "t"})
_NO = frozenset({"0", "n", "no", "false", "f"})
#: A system name: what --medcode-system, thresholds (NAME:METRIC) and run folders spell it as.
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _billable(path: Path, line: int, value: str) -> bool:
    text = value.strip().lower()
    if text == "" or text in _YES:
        return True
    if text in _NO:
        return False
    raise CodeFileError(f"{path}: row {line}: billable '{shown(value)}' is not one of 1/0, yes/no, true/false")


def read(path: Path) -> list[tuple[str, str, bool, str | None, int]]:
    """(code key, description, billable, parent key, row) per code, checked as the module docstring says."""
    names, records = read_table_file(path, ("code", "description"))
    has_parent, has_billable = "parent" in names, "billable" in names
    out: list[tuple[str, str, bool, str | None, int]] = []
    first_row: dict[str, int] = {}
    for rec in records:
        line, raw = rec.line, rec["code"]
        code = code_key(raw)
        if not code:
            raise CodeFileError(f"{path}: row {line}: empty code")
        if not rec["description"]:
            raise CodeFileError(f"{path}: row {line}: code {shown(raw)}: empty description")
        if code in first_row:
            raise CodeFileError(f"{path}: row {line}: duplicate code {shown(raw)} (first at row {first_row[code]}; "
                                "codes are compared without dots, spaces or case)")
        first_row[code] = line
        parent = code_key(rec.get("parent", "")) if has_parent else ""
        billable = _billable(path, line, rec.get("billable", "")) if has_billable else True
        out.append((code, rec["description"], billable, parent or None, line))
    if not out:
        raise CodeFileError(f"{path}: no codes")
    parents = {code: parent for code, _, _, parent, _ in out}
    for code, _, _, parent_key, line in out:
        if parent_key is not None and parent_key not in parents:
            raise CodeFileError(f"{path}: row {line}: code {shown(code)}: parent {shown(parent_key)} is not a code in "
                                "the file")
    _check_cycles(path, parents, first_row)
    return out


def _check_cycles(path: Path, parents: dict[str, str | None], rows: dict[str, int]) -> None:
    """Walk every parent chain once (codes already known to reach a root are not walked again)."""
    rooted: set[str] = set()
    for start in parents:
        chain: list[str] = []
        on_chain: set[str] = set()
        node: str | None = start
        while node is not None and node not in rooted:
            if node in on_chain:
                cycle = [*chain[chain.index(node):], node]
                raise CodeFileError(f"{path}: row {rows[node]}: code {shown(node)}: cycle in the parent chain "
                                    f"({' > '.join(shown(c) for c in cycle)})")
            chain.append(node)
            on_chain.add(node)
            node = parents[node]
        rooted.update(chain)


def rows(path: Path) -> Iterator[TableRow]:
    """Table rows (codesystems/table.py SCHEMA order): every code is a ``code`` row, so lookups find it.
    The file is read and checked now, not when the rows are first iterated."""
    return iter([(code, description, billable, parent, "code", None)
                 for code, description, billable, parent, _ in read(path)])


def example(codes: list[tuple[str, str]]) -> str:
    """The code the prompt's format line shows: the file's first billable code (the user chooses it by order)."""
    return codes[0][0] if codes else ""
