"""Reading what can still be read out of a damaged response cache.

SQLite's own ``.recover`` is not in Python's ``sqlite3`` (3.11), so rows are salvaged one by one:
a scan in rowid order that jumps over the pages it cannot read, and a scan of the key index that
finds the rows the first scan jumped over (read then one at a time by rowid) and counts the rows
that are gone. A damaged file yields every row on an intact page; only rows on damaged pages are
lost, and the count of those is exact when the key index is intact (a lower bound otherwise).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MAX_JUMPS = 64


@dataclass
class Salvage:
    rows: dict[str, tuple[Any, ...]]  # key -> the row's columns, in ``columns`` order
    columns: tuple[str, ...]
    known: int | None  # rows the file is known to have held (kept + lost); None: its table could not be read

    @property
    def lost(self) -> int | None:
        return None if self.known is None else max(0, self.known - len(self.rows))


def salvage(path: Path, columns: tuple[str, ...]) -> Salvage:
    """Every readable row of ``responses`` in the file at ``path`` (which is not modified)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, isolation_level=None)
    except sqlite3.Error:
        return Salvage({}, columns, None)
    try:
        present = _columns(conn)
        if present is None:
            return Salvage({}, columns, None)
        select = ", ".join(c if c in present else "NULL" for c in columns)
        by_rowid: dict[int, tuple[Any, ...]] = {}
        for rowid, row in _scan(conn, f"SELECT rowid, {select} FROM responses WHERE rowid > ? ORDER BY rowid",
                                0, _next_int):
            by_rowid[rowid] = row
        index: dict[str, int] = {}
        for key, rowid in _scan(conn, "SELECT key, rowid FROM responses INDEXED BY sqlite_autoindex_responses_1 "
                                "WHERE key > ? ORDER BY key", "", _next_text):
            index[key] = rowid
        rows = {row[0]: row for row in by_rowid.values() if isinstance(row[0], str)}
        for key, rowid in index.items():
            if key not in rows and rowid not in by_rowid:
                try:
                    found = conn.execute(f"SELECT {select} FROM responses WHERE rowid = ?", (rowid,)).fetchone()
                except sqlite3.DatabaseError:
                    continue
                if found is not None and found[0] == key:
                    rows[key] = found
        return Salvage(rows, columns, len(rows.keys() | index.keys()))
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection) -> set[str] | None:
    try:
        names = {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
    except sqlite3.DatabaseError:
        return None
    return names or None


def _scan(conn: sqlite3.Connection, sql: str, start: Any, after: Callable[[Any, int], Any]) -> Iterator[Any]:
    """Rows of ``sql`` (ordered by its first column, resumable with ``> ?``), jumping over unreadable pages:
    on an error past ``last``, the scan restarts at ``after(last, 1)``, ``after(last, 2)``, ... further each time."""
    last = start
    while True:
        try:
            for first, *rest in conn.execute(sql, (last,)):
                yield first, tuple(rest) if len(rest) > 1 else rest[0]
                last = first
            return
        except sqlite3.DatabaseError:
            pass
        for jump in range(1, _MAX_JUMPS + 1):
            probe = after(last, jump)
            if probe is None:
                return
            try:
                if conn.execute(sql + " LIMIT 1", (probe,)).fetchone() is None:
                    return  # nothing readable lies beyond
            except sqlite3.DatabaseError:
                continue
            last = probe
            break
        else:
            return


def _next_int(last: int, jump: int) -> int:
    return last + 2 ** (jump - 1)


def _next_text(last: str, jump: int) -> str | None:
    """A key just past every key sharing ``last``'s prefix one character shorter per jump (keys are hex
    hashes, so each jump skips a larger slice of the key space)."""
    if not last:  # the first page is damaged: start again at each hex digit
        return "0123456789abcdef"[jump] if jump < 16 else None
    prefix = last[: max(0, len(last) - jump + 1)]
    while prefix:
        head, tail = prefix[:-1], prefix[-1]
        if ord(tail) < 0x10FFFF:
            return head + chr(ord(tail) + 1)
        prefix = head
    return None
