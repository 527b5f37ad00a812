"""Merging response caches: the shards of a run asked on several machines become one file that replays all.

Each machine (a CI shard, a colleague's laptop) keeps its answers in its own cache file; merged, the next run
of any shard finds every answer and asks nothing. The rules are the cache's own (:mod:`.cache`):

- **The first answer of a key is kept.** Files are read in the order given (``--into``'s own answers, when it
  already exists, first): a key answered in two files keeps the first file's answer; a stored failure is
  replaced by a later file's answer, never the reverse (as :meth:`ResponseStore.put` does).
- **Idempotent.** Merging the same files again gives the same rows.
- **Only our caches.** A file that is not a response cache (no ``responses`` table of the cache's columns) is
  refused with one line before anything is written.
- **Whole or not at all.** The result is built in a temp file beside ``--into`` and renamed into place
  (:mod:`pytest_medcode.atomic`): a merge killed half-way leaves ``--into`` as it was.

Claims (which process is asking what) belong to running processes and are not carried; tables other modules
keep in the same file are, when the caller names them (the similarity scores, ``scoring/score_store.py``):
their rows are merged by key the same way, the first file's row kept.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from pytest_medcode.asking.cache import _COLUMNS, _DDL, SCHEMA_VERSION, CacheError
from pytest_medcode.asking.salvage import MAGIC
from pytest_medcode.atomic import write_atomically

__all__ = ["MergeResult", "check_cache_file", "merge_caches"]


@dataclass
class MergeResult:
    """What a merge wrote: rows of ``responses`` (answers and stored failures) and of each carried table."""

    into: Path
    answers: int = 0
    errors: int = 0
    carried: dict[str, int] = field(default_factory=dict)
    files: int = 0


def _tables(conn: sqlite3.Connection, schema: str = "main") -> dict[str, str]:
    """Table name → its CREATE statement."""
    return dict(conn.execute(f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'table'").fetchall())


def check_cache_file(path: Path) -> None:
    """``path`` is a readable response cache of ours, else :class:`CacheError` in one line (nothing changed)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(MAGIC))
    except FileNotFoundError:
        raise CacheError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CacheError(f"{path}: a folder, not a response cache file") from None
    except OSError as exc:
        raise CacheError(f"{path}: {exc.strerror or exc}") from None
    if head != MAGIC:
        raise CacheError(f"{path} is not a pytest-medcode response cache (not an SQLite file); nothing was written")
    try:
        conn = sqlite3.connect(_uri(path, "ro"), uri=True)
        try:
            columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(responses)"))
            conn.execute("SELECT count(*) FROM responses").fetchone() if columns else None
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CacheError(f"{path}: cannot be read ({exc}); open it once with 'medcode cache stats --path {path}', "
                         "which salvages a damaged cache, then merge again") from None
    if columns != _COLUMNS:
        raise CacheError(f"{path} is not a pytest-medcode response cache (no responses table of its columns); "
                         "nothing was written")


def merge_caches(sources: Sequence[Path], into: Path, carry: Sequence[str] = ()) -> MergeResult:
    """Merge ``sources`` (and ``into`` itself, first, when it exists) into ``into``, atomically.

    ``carry``: further tables of the same file to merge by key (their first row of a key kept). Every file is
    checked before anything is written; a problem is :class:`CacheError` with one line."""
    into_exists = into.exists()
    ordered = [into] if into_exists else []
    for source in sources:
        if all(not _same_file(source, seen) for seen in ordered):
            ordered.append(source)
    for path in ordered:
        check_cache_file(path)
    if into_exists and Path(f"{into}-wal").exists() and Path(f"{into}-wal").stat().st_size:
        raise CacheError(f"{into} is in use (its write-ahead log is not empty: a run is writing to it); merge once "
                         "it has finished")
    result = MergeResult(into, files=len(ordered))

    def write(tmp: str) -> None:
        Path(tmp).unlink()  # mkstemp's empty file is no database: SQLite makes its own
        conn = sqlite3.connect(_uri(Path(tmp), "rwc"), uri=True, isolation_level=None)
        try:
            conn.executescript(_DDL)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            for path in ordered:
                _merge_one(conn, path, carry)
            result.answers, result.errors = conn.execute(
                "SELECT count(text), sum(text IS NULL) FROM responses").fetchone()
            result.errors = result.errors or 0
            have = _tables(conn)
            result.carried = {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                              for name in carry if name in have}
            conn.execute("PRAGMA journal_mode=WAL")  # as every cache is; the log is gone once closed
        except sqlite3.Error as exc:
            raise CacheError(f"{into}: the merge could not be written ({exc}); nothing was changed") from None
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(tmp + suffix).unlink()

    try:
        write_atomically(into, write)
    except OSError as exc:
        raise CacheError(f"{into}: {exc.strerror or exc}; nothing was changed") from None
    return result


def _uri(path: Path, mode: str) -> str:
    """An SQLite URI for ``path`` (``ro``: a source is never written, not even its journal mode)."""
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a == b


def _merge_one(conn: sqlite3.Connection, path: Path, carry: Sequence[str]) -> None:
    """One file's rows into the merge (one transaction): a key already answered keeps its answer."""
    columns = ",".join(_COLUMNS)
    updates = ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS if c != "key")
    conn.execute("ATTACH DATABASE ? AS src", (_uri(path, "ro"),))
    try:
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO main.responses ({columns}) SELECT {columns} FROM src.responses WHERE true "
                     f"ON CONFLICT(key) DO UPDATE SET {updates} "
                     "WHERE main.responses.text IS NULL AND excluded.text IS NOT NULL")
        theirs, ours = _tables(conn, "src"), _tables(conn)
        for name in carry:
            if name not in theirs:
                continue
            if name not in ours:
                conn.execute(theirs[name])
            conn.execute(f'INSERT OR IGNORE INTO main."{name}" SELECT * FROM src."{name}"')
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute("DETACH DATABASE src")
