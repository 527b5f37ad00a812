"""Reading what can still be read out of a damaged response cache, page by page, in one pass.

Python's ``sqlite3`` has no binding of SQLite's recovery API (the ``.recover`` of the ``sqlite3``
command-line shell is compiled into the shell only), and a run cannot count on that shell being
installed. So the file is read here as SQLite lays it out (https://sqlite.org/fileformat2.html):
the pages of the main file, overlaid by the committed frames of its ``-wal``; the schema on page 1
names the root pages of ``responses`` and of its key index. Each tree is walked from its root; a
tree whose walk meets no damaged page is *complete*. When the table's tree is not (a damaged root
or interior page), every page of the file that reads as a table leaf holding rows of the table's
shape, outside every other tree and the freelist, is read too: only rows on damaged leaf pages are
lost. Every page is read at most a few times, so the time is linear in the file's size.

Rows lost are the keys of the key index that no readable row has: exact when either tree is
complete, a lower bound otherwise (:attr:`Salvage.exact`).
"""

from __future__ import annotations

import re
import sqlite3
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"SQLite format 3\x00"
_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums in little-endian / big-endian words
_TABLE_LEAF, _TABLE_INTERIOR, _INDEX_LEAF, _INDEX_INTERIOR = 13, 5, 10, 2
_INDEX = "sqlite_autoindex_responses_1"


@dataclass
class Salvage:
    rows: dict[str, tuple[Any, ...]]  # key -> the row's columns, in ``columns`` order
    columns: tuple[str, ...]
    known: int | None  # rows the file is known to have held (kept + lost); None: no table could be read
    exact: bool = True  # False: ``lost`` is a lower bound (both the table and its key index were damaged)

    @property
    def lost(self) -> int | None:
        return None if self.known is None else max(0, self.known - len(self.rows))


class _Bad(Exception):
    """A page or cell that does not read as SQLite writes it."""


class _File:
    """The pages of a database file as of its last commit (main file overlaid by the committed WAL)."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        size = int.from_bytes(data[16:18], "big") if data[:16] == MAGIC else 0
        size = 65536 if size == 1 else size
        if size < 512 or size & (size - 1):
            size = 4096  # the header is damaged (or gone): SQLite's default page size
        self.page_size = size
        self.usable = size - (data[20] if len(data) > 20 and data[:16] == MAGIC else 0)
        self.encoding = {2: "utf-16-le", 3: "utf-16-be"}.get(int.from_bytes(data[56:60], "big"), "utf-8")
        self.pages: dict[int, bytes | memoryview] = {}
        view = memoryview(data)
        for number in range(1, len(data) // size + 1):
            self.pages[number] = view[(number - 1) * size : number * size]
        logged, pages_after = _wal_pages(path.with_name(path.name + "-wal"), size)
        self.pages.update(logged)
        for number in [n for n in self.pages if n > pages_after] if pages_after else ():
            del self.pages[number]  # the last commit shrank the file (a VACUUM): those pages are stale
        self.freelist = self._freelist(data)

    def _freelist(self, data: bytes) -> set[int]:
        """The pages on the freelist (they may hold stale rows); stops at the first damaged trunk."""
        free: set[int] = set()
        trunk = int.from_bytes(data[32:36], "big") if data[:16] == MAGIC else 0
        while trunk and trunk not in free and trunk in self.pages:
            free.add(trunk)
            page = self.pages[trunk]
            count = int.from_bytes(page[4:8], "big")
            if count > (self.usable - 8) // 4:
                break
            free.update(int.from_bytes(page[8 + 4 * i : 12 + 4 * i], "big") for i in range(count))
            trunk = int.from_bytes(page[0:4], "big")
        return free

    def page_type(self, number: int) -> int | None:
        page = self.pages.get(number)
        return None if page is None else page[100 if number == 1 else 0]

    def cells(self, number: int) -> tuple[int, list[tuple[int, bytes | None]], list[int]]:
        """(page type, cells, child pages) of b-tree page ``number``; a cell is (rowid or child, payload).

        Raises _Bad for a page that is not a b-tree page or whose cells do not fit in it."""
        page = self.pages.get(number)
        if page is None:
            raise _Bad("no such page")
        at = 100 if number == 1 else 0
        kind = page[at]
        if kind not in (_TABLE_LEAF, _TABLE_INTERIOR, _INDEX_LEAF, _INDEX_INTERIOR):
            raise _Bad("not a b-tree page")
        count = int.from_bytes(page[at + 3 : at + 5], "big")
        head = at + (8 if kind in (_TABLE_LEAF, _INDEX_LEAF) else 12)
        if head + 2 * count > self.usable:
            raise _Bad("too many cells")
        children: list[int] = []
        if kind in (_TABLE_INTERIOR, _INDEX_INTERIOR):
            children.append(int.from_bytes(page[at + 8 : at + 12], "big"))  # the right-most child
        out: list[tuple[int, bytes | None]] = []
        for i in range(count):
            ptr = int.from_bytes(page[head + 2 * i : head + 2 * i + 2], "big")
            if not head + 2 * count <= ptr < self.usable:
                raise _Bad("cell outside the page")
            if kind == _TABLE_INTERIOR:
                children.append(int.from_bytes(page[ptr : ptr + 4], "big"))
                continue
            if kind == _INDEX_INTERIOR:
                children.append(int.from_bytes(page[ptr : ptr + 4], "big"))
                ptr += 4
            length, ptr = _varint(page, ptr)
            rowid = 0
            if kind == _TABLE_LEAF:
                rowid, ptr = _varint(page, ptr)
            out.append((rowid, self._payload(page, ptr, length, kind == _TABLE_LEAF)))
        return kind, out, children

    def _payload(self, page: bytes | memoryview, at: int, length: int, table: bool) -> bytes | None:
        """A cell's payload, its overflow chain followed; None when the chain is broken."""
        usable = self.usable
        most = usable - 35 if table else (usable - 12) * 64 // 255 - 23
        if length <= most:
            if at + length > usable:
                raise _Bad("payload outside the page")
            return bytes(page[at : at + length])
        least = (usable - 12) * 32 // 255 - 23
        local = least + (length - least) % (usable - 4)
        local = local if local <= most else least
        if at + local + 4 > usable:
            raise _Bad("payload outside the page")
        parts = [bytes(page[at : at + local])]
        got, seen = local, set()
        nxt = int.from_bytes(page[at + local : at + local + 4], "big")
        while got < length:
            over = self.pages.get(nxt)
            if over is None or nxt in seen:
                return None
            seen.add(nxt)
            take = min(usable - 4, length - got)
            parts.append(bytes(over[4 : 4 + take]))
            got += take
            nxt = int.from_bytes(over[0:4], "big")
        return b"".join(parts)

    def record(self, payload: bytes | None) -> tuple[Any, ...] | None:
        """The column values of a record, or None when it does not decode exactly."""
        if payload is None:
            return None
        try:
            size, at = _varint(payload, 0)
            types: list[int] = []
            while at < size:
                kind, at = _varint(payload, at)
                types.append(kind)
            if at != size:
                return None
            values: list[Any] = []
            for kind in types:
                value, at = _value(payload, at, kind, self.encoding)
                values.append(value)
        except (_Bad, UnicodeDecodeError, struct.error):
            return None
        return tuple(values) if at == len(payload) else None


def _varint(buf: bytes | memoryview, at: int) -> tuple[int, int]:
    if at < len(buf) and buf[at] < 0x80:  # one byte: nearly every serial type and cell size
        return buf[at], at + 1
    value = 0
    for i in range(9):
        if at + i >= len(buf):
            raise _Bad("varint past the end")
        byte = buf[at + i]
        if i == 8:
            return (value << 8) | byte, at + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    raise AssertionError  # unreachable


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _value(buf: bytes, at: int, kind: int, encoding: str) -> tuple[Any, int]:
    if kind == 0:
        return None, at
    if kind in _INT_SIZES:
        end = at + _INT_SIZES[kind]
        if end > len(buf):
            raise _Bad("value past the end")
        return int.from_bytes(buf[at:end], "big", signed=True), end
    if kind == 7:
        return struct.unpack(">d", buf[at : at + 8])[0], at + 8
    if kind in (8, 9):
        return kind - 8, at
    if kind < 12:
        raise _Bad("reserved serial type")
    size = (kind - 12) // 2
    if at + size > len(buf):
        raise _Bad("value past the end")
    raw = buf[at : at + size]
    return (raw.decode(encoding) if kind % 2 else bytes(raw)), at + size


def _wal_pages(path: Path, page_size: int) -> tuple[dict[int, bytes], int]:
    """The newest committed copy of each page in a WAL file (frames checked by salt and checksum), and the
    file's size in pages after the last commit (0: no commit)."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}, 0
    if len(data) < 32:
        return {}, 0
    magic, _, size, _, salt1, salt2, sum1, sum2 = struct.unpack(">8I", data[:32])
    if magic not in _WAL_MAGIC or size != page_size:
        return {}, 0
    order = ">" if magic & 1 else "<"
    if _checksum(data[:24], order, 0, 0) != (sum1, sum2):
        return {}, 0
    state = (sum1, sum2)
    pending: dict[int, bytes] = {}
    committed: dict[int, bytes] = {}
    pages_after = 0
    at = 32
    while at + 24 + size <= len(data):
        number, commit, f_salt1, f_salt2, f_sum1, f_sum2 = struct.unpack(">6I", data[at : at + 24])
        if (f_salt1, f_salt2) != (salt1, salt2):
            break
        state = _checksum(data[at : at + 8], order, *state)
        state = _checksum(data[at + 24 : at + 24 + size], order, *state)
        if state != (f_sum1, f_sum2):
            break
        pending[number] = data[at + 24 : at + 24 + size]
        if commit:
            committed.update(pending)
            pending.clear()
            pages_after = commit
        at += 24 + size
    return committed, pages_after


def _checksum(chunk: bytes, order: str, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{order}{len(chunk) // 4}I", chunk)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _walk(db: _File, root: int, leaf: int) -> tuple[list[tuple[int, bytes | None]], set[int], bool]:
    """Every entry of the tree at ``root`` (leaf pages of type ``leaf`` and their interior pages), the
    pages it holds, and whether every page of it read cleanly."""
    interior = _TABLE_INTERIOR if leaf == _TABLE_LEAF else _INDEX_INTERIOR
    entries: list[tuple[int, bytes | None]] = []
    pages: set[int] = set()
    complete = True
    todo = [root]
    while todo:
        number = todo.pop()
        if number in pages:
            complete = False  # a loop: some page points where it should not
            continue
        pages.add(number)
        try:
            kind, cells, children = db.cells(number)
        except _Bad:
            complete = False
            continue
        if kind not in (leaf, interior):
            complete = False
            continue
        entries.extend(cells)
        todo.extend(children)
    return entries, pages, complete


def _schema(db: _File) -> list[tuple[Any, ...]] | None:
    """The rows of sqlite_master (type, name, tbl_name, rootpage, sql), or None when page 1 is unreadable."""
    entries, _, complete = _walk(db, 1, _TABLE_LEAF)
    rows = [r for r in (db.record(p) for _, p in entries) if r is not None and len(r) == 5]
    return rows if complete or rows else None


def _table_columns(sql: Any) -> tuple[str, ...] | None:
    """A table's column names, from its CREATE TABLE text (SQLite itself parses it, in memory)."""
    if not isinstance(sql, str):
        return None
    mem = sqlite3.connect(":memory:")
    try:
        mem.execute(sql)
        name = re.match(r"\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\S+)", sql, re.IGNORECASE)
        if name is None:
            return None
        return tuple(row[1] for row in mem.execute(f"PRAGMA table_info({name.group(1)})"))
    except sqlite3.Error:
        return None
    finally:
        mem.close()


def _better(new: tuple[Any, ...], old: tuple[Any, ...], text_at: int, created_at: int) -> bool:
    """Of two copies of one key (a stale page beside the live one): an answer beats an error, then the newer."""
    new_answer, old_answer = new[text_at] is not None, old[text_at] is not None
    if new_answer != old_answer:
        return new_answer
    return isinstance(new[created_at], (int, float)) and isinstance(old[created_at], (int, float)) \
        and new[created_at] > old[created_at]


def salvage(path: Path, columns: tuple[str, ...]) -> Salvage:
    """Every readable row of ``responses`` in the file at ``path`` (which is not modified); ``columns``
    starts with ``key`` and is the table's column order when its schema cannot be read."""
    try:
        db = _File(path)
    except OSError:
        return Salvage({}, columns, None)
    schema = _schema(db)
    roots = _roots(schema)
    present = _present_columns(schema, columns)
    shaped = _shaper(present, columns)

    others = _other_pages(db, roots)
    entries, table_pages, table_complete = _walk_if(db, roots.get("responses"), _TABLE_LEAF)
    index_root = None if table_complete else roots.get(_INDEX)  # every row read: the index has nothing to add
    index_entries, index_pages, index_complete = _walk_if(db, index_root, _INDEX_LEAF)

    rows, unreadable = _tree_rows(db, entries, shaped)
    if not table_complete:  # leaf pages cut off from the tree: read every page that looks like one
        _add_orphan_rows(rows, db, others | table_pages | index_pages, present, columns, shaped)

    keys = _index_keys(db, index_entries)
    if _INDEX in roots and not index_complete and not table_complete:
        _add_orphan_keys(keys, db, others | table_pages | index_pages)
    return _counted(rows, columns, schema is None, unreadable, keys, table_complete, index_complete)


def _walk_if(db: _File, root: int | None, leaf: int) -> tuple[list[tuple[int, bytes | None]], set[int], bool]:
    """:func:`_walk` of the tree at ``root``; no tree to read (``root`` None: absent, or not needed) gives no
    entries and is not complete, so one call site serves both the table and its key index."""
    entries: list[tuple[int, bytes | None]] = []
    pages: set[int] = set()
    complete = False
    if root is not None:
        entries, pages, complete = _walk(db, root, leaf)
    return entries, pages, complete


def _counted(rows: dict[str, tuple[Any, ...]], columns: tuple[str, ...], no_schema: bool, unreadable: int,
             keys: set[str], table_complete: bool, index_complete: bool) -> Salvage:
    """The result with the rows the file is known to have held: None when nothing could be read, a complete
    tree's own cells, else the rows read and the index's keys together (a lower bound unless the index was
    complete)."""
    if no_schema and not rows:
        return Salvage({}, columns, None)
    if table_complete:
        return Salvage(rows, columns, len(rows) + unreadable)
    return Salvage(rows, columns, len(rows.keys() | keys), exact=index_complete)


def _roots(schema: list[tuple[Any, ...]] | None) -> dict[Any, int]:
    """The root page of each tree the schema names (a row whose root is not a page number is left out)."""
    return {row[1]: row[3] for row in schema or () if isinstance(row[3], int) and row[3] > 0}


def _present_columns(schema: list[tuple[Any, ...]] | None, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns ``responses`` has in the file (its last schema row wins), so that rows written by an
    older or newer version are read by name; ``columns`` when the schema does not say."""
    present = None
    for schema_row in schema or ():
        if schema_row[0] == "table" and schema_row[1] == "responses":
            present = _table_columns(schema_row[4])
    return present or columns


_Shaper = Callable[[tuple[Any, ...] | None], tuple[Any, ...] | None]


def _shaper(present: tuple[str, ...], columns: tuple[str, ...]) -> _Shaper:
    """A function that puts a record of the file's columns (``present``) into ``columns`` order, or gives
    None for a record that cannot be a row of the table (so that one mapping serves tree and orphan pages)."""
    pick = [present.index(c) if c in present else None for c in columns]

    def shaped(values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if values is None or not 2 <= len(values) <= len(present):
            return None
        values = values + (None,) * (len(present) - len(values))
        row = tuple(None if i is None else values[i] for i in pick)
        return row if isinstance(row[0], str) else None

    return shaped


def _other_pages(db: _File, roots: dict[Any, int]) -> set[int]:
    """Page 1, the freelist and every page of the trees other than ``responses`` and its key index: no
    orphan row or key is read from them."""
    others: set[int] = {1} | db.freelist  # pages that belong elsewhere: never read as orphans
    for name, root in roots.items():
        if name not in ("responses", _INDEX):
            kind = db.page_type(root)
            others |= _walk(db, root, _INDEX_LEAF if kind in (_INDEX_LEAF, _INDEX_INTERIOR) else _TABLE_LEAF)[1]
    return others


def _tree_rows(db: _File, entries: list[tuple[int, bytes | None]],
               shaped: _Shaper) -> tuple[dict[str, tuple[Any, ...]], int]:
    """The rows read from the table's tree, and how many of its cells did not decode: those count as
    lost when the tree is complete."""
    rows: dict[str, tuple[Any, ...]] = {}
    unreadable = 0  # cells of the tree whose record does not decode (a broken overflow chain)
    for _, payload in entries:
        row = shaped(db.record(payload))
        if row is None:
            unreadable += 1
        else:
            rows[row[0]] = row
    return rows, unreadable


def _add_orphan_rows(rows: dict[str, tuple[Any, ...]], db: _File, taken: set[int], present: tuple[str, ...],
                     columns: tuple[str, ...], shaped: _Shaper) -> None:
    """Add to ``rows`` the rows of table leaf pages no tree holds (cut off by a damaged interior page);
    only a record of the table's full width counts, and of two copies of a key the better one is kept."""
    text_at = columns.index("text") if "text" in columns else 0
    created_at = columns.index("created") if "created" in columns else 0
    for cells in _orphans(db, taken, _TABLE_LEAF):
        for _, payload in cells:
            values = db.record(payload)
            row = shaped(values) if values is not None and len(values) == len(present) else None
            if row is None:
                continue
            old = rows.get(row[0])
            if old is None or _better(row, old, text_at, created_at):
                rows[row[0]] = row


def _index_keys(db: _File, index_entries: list[tuple[int, bytes | None]]) -> set[str]:
    """The keys the key index's tree holds: what the table held, to count the rows lost."""
    keys: set[str] = set()
    for _, payload in index_entries:
        entry = db.record(payload)
        if entry is not None and len(entry) == 2 and isinstance(entry[0], str):
            keys.add(entry[0])
    return keys


def _add_orphan_keys(keys: set[str], db: _File, taken: set[int]) -> None:
    """Add to ``keys`` those of index pages no tree holds (the index is damaged too), so that the count of
    rows lost is as close as it can be."""
    for kind in (_INDEX_LEAF, _INDEX_INTERIOR):
        for cells in _orphans(db, taken, kind):
            for _, payload in cells:
                entry = db.record(payload)
                if entry is not None and len(entry) == 2 and isinstance(entry[0], str) \
                        and isinstance(entry[1], int):
                    keys.add(entry[0])


def _orphans(db: _File, taken: set[int], kind: int) -> Iterator[list[tuple[int, bytes | None]]]:
    """The cells of each page of b-tree type ``kind`` that no readable tree holds and that reads cleanly."""
    for number in db.pages:
        if number in taken or db.page_type(number) != kind:
            continue
        try:
            yield db.cells(number)[1]
        except _Bad:
            continue
