"""A code system as one Arrow table plus the in-memory index lookups need.

The table is the unit that is built once, cached as Parquet and shipped into reports; the index
(key → row) is rebuilt on load because a dict of 100k strings is faster to build than to unpickle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pytest_medcode.atomic import write_atomically
from pytest_medcode.codesystems.normalize import key as code_key

#: One row of a code table as a source yields it: (code, description, billable, parent, level, chapter).
TableRow = tuple[Any, ...]

SCHEMA = pa.schema(
    [
        ("code", pa.string()),  # canonical form, with dots
        ("key", pa.string()),  # upper case, no dots: what lookups use
        ("description", pa.string()),  # null for headers the source does not describe
        ("billable", pa.bool_()),
        ("parent", pa.string()),  # canonical code of the parent node, null at the top
        ("level", pa.string()),  # chapter | block | category | subcategory | code
        ("chapter", pa.string()),
    ]
)
#: Bumped whenever the table layout or a builder's logic changes, so stale caches are rebuilt.
TABLE_FORMAT = 1

LEVELS_THAT_ARE_CODES = frozenset({"category", "subcategory", "code"})


@dataclass(frozen=True)
class Entry:
    code: str
    description: str | None
    billable: bool
    parent: str | None
    level: str
    chapter: str | None


@dataclass
class CodeSystem:
    """One classification: its table, how its codes are spelled, and how the prompt names it."""

    name: str  # option value: icd9cm, icd9cm-proc, icd10cm, cpt
    title: str  # human name: ICD-10-CM
    prompt_name: str  # how the authors' prompt writes it: ICD10CM
    example: str  # the example code in the authors' prompt
    version: str
    table: pa.Table
    dot: Callable[[str], str]
    release: str = ""  # the bundled release's key (--medcode-release); "" for a table the user brings
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    _columns: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    _entries: dict[int, Entry] = field(default_factory=dict, repr=False)  # built on first lookup, then reused

    def __post_init__(self) -> None:
        keys = self.table.column("key").to_pylist()
        self._index = {k: i for i, k in enumerate(keys) if self._is_code_level(i)}
        # Chapters/blocks share no keys with codes except in ICD-10-CM's few one-code blocks
        # ("B20"), where the code row must win; _is_code_level filters them out above.

    def _is_code_level(self, i: int) -> bool:
        levels = self._column("level")
        return levels[i] in LEVELS_THAT_ARE_CODES

    def _column(self, name: str) -> list[Any]:
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = self.table.column(name).to_pylist()
        return col

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def canonical(self, code: str) -> str:
        """The classification's spelling of any form a model may write."""
        return self.dot(code_key(code))

    def lookup(self, code: str) -> Entry | None:
        """The entry for a code at category level or below, or None if it does not exist."""
        i = self._index.get(code_key(code))
        if i is None:
            return None
        entry = self._entries.get(i)
        if entry is not None:  # scoring looks up ~10 codes a case: at 75k cases, building each Entry shows
            return entry
        entry = self._entries[i] = Entry(
            code=self._column("code")[i],
            description=self._column("description")[i],
            billable=self._column("billable")[i],
            parent=self._column("parent")[i],
            level=self._column("level")[i],
            chapter=self._column("chapter")[i],
        )
        return entry

    def codes(self) -> list[str]:
        """The lookup key of every code at category level or below."""
        return list(self._index)

    def billable_codes(self) -> list[tuple[str, str]]:
        """(code, description) of every billable code, in table order."""
        codes, descs, bill = self._column("code"), self._column("description"), self._column("billable")
        return [(c, d) for c, d, b in zip(codes, descs, bill) if b]


def rows_to_table(rows: Iterable[TableRow], version: str) -> pa.Table:
    """Rows in SCHEMA order (key is computed here) → a table carrying its release in metadata."""
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for code, description, billable, parent, level, chapter in rows:
        cols["code"].append(code)
        cols["key"].append(code_key(code) if level in LEVELS_THAT_ARE_CODES else code)
        cols["description"].append(description)
        cols["billable"].append(billable)
        cols["parent"].append(parent)
        cols["level"].append(level)
        cols["chapter"].append(chapter)
    table = pa.Table.from_pydict(cols, schema=SCHEMA)
    return table.replace_schema_metadata({b"version": version.encode()})


def keys_table(keys: Iterable[str]) -> pa.Table:
    """A release's code set as a one-column table (``key``), the compact form the outdated check caches."""
    return pa.Table.from_pydict({"key": sorted(keys)}, schema=pa.schema([("key", pa.string())]))


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet through a temp file and rename, so readers never see half a table."""
    write_atomically(path, lambda tmp: pq.write_table(table, tmp))
