"""Similarity scores kept across runs, so a pair of descriptions is scored once, not on every run.

A paper-size run has tens of thousands of distinct (reference, predicted) description pairs, and a CI gate
re-runs the same selection on every change: without a store, METEOR and BERTScore are most of such a run.
The scores live in the response cache's own file (table ``similarity_scores``), so they get the cache's
promises for free — a lock is waited for, damage is salvaged, a full disk is one line — and
``medcode cache stats|prune|clear`` see them.

A score is keyed by the scorer's identity (metric, model and its revision, layer, numeric precision,
options, library versions: :attr:`identity` of each scorer) and the exact pair, hashed. A change of scorer
never reuses another configuration's score. The store is an optimisation: any trouble with it is one
warning line, and the pairs it could not give are scored again.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import warnings
from collections.abc import Iterable, Sequence

from pytest_medcode.asking.cache import CacheError, ResponseStore

__all__ = ["TABLE", "ScoreStore", "counts", "pair_key", "prune"]

TABLE = "similarity_scores"
_DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (key BLOB PRIMARY KEY, metric TEXT NOT NULL, value REAL NOT NULL, "
        "created REAL NOT NULL) WITHOUT ROWID")
_CHUNK = 900  # SQLite's default limit on bound parameters is 999

Pair = tuple[str, str]


def pair_key(identity: str, pair: Pair) -> bytes:
    """16 bytes naming (scorer identity, reference, candidate): unambiguous, as the parts are separated by NUL."""
    blob = "\0".join((identity, pair[0], pair[1])).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(blob, digest_size=16).digest()


def _has_table(conn: sqlite3.Connection) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone()
    return found is not None


class ScoreStore:
    """Scores by (scorer identity, pair) in the response cache's file; none of it is ever required."""

    def __init__(self, store: ResponseStore) -> None:
        self.store = store
        self._broken: str | None = None  # after the first trouble: no more tries this run

    def _warn(self, exc: Exception) -> None:
        if self._broken is None:
            self._broken = " ".join(str(exc).split())
            warnings.warn(f"pytest-medcode: similarity scores not kept ({self._broken}); the pairs are scored "
                          "again", stacklevel=3)

    def get(self, identity: str, pairs: Sequence[Pair]) -> dict[Pair, float]:
        """The stored scores of ``pairs`` under ``identity`` (only those found)."""
        if not pairs or self._broken is not None:
            return {}
        by_key = {pair_key(identity, p): p for p in pairs}
        keys = list(by_key)

        def read(conn: sqlite3.Connection) -> dict[Pair, float]:
            out: dict[Pair, float] = {}
            if not _has_table(conn):  # a new cache, or one salvaged (only answers are carried over)
                return out
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, value in conn.execute(f"SELECT key, value FROM {TABLE} WHERE key IN ({marks})", chunk):
                    out[by_key[bytes(key)]] = float(value)
            return out

        try:
            return self.store.run_sql(read)
        except CacheError as exc:
            self._warn(exc)
            return {}

    def put(self, identity: str, metric: str, scores: Iterable[tuple[Pair, float]]) -> None:
        """Keep ``scores`` under ``identity`` (one transaction); an existing score of the same key is kept."""
        now = time.time()
        rows = [(pair_key(identity, p), metric, float(v), now) for p, v in scores]
        if not rows or self._broken is not None:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            if not _has_table(conn):
                conn.execute(_DDL)
            conn.executemany(f"INSERT OR IGNORE INTO {TABLE} VALUES (?, ?, ?, ?)", rows)
            conn.execute("COMMIT")

        try:
            self.store.run_sql(write)
        except CacheError as exc:
            self._warn(exc)


def counts(store: ResponseStore) -> dict[str, int]:
    """Stored scores per metric (for ``medcode cache stats``); empty when none were ever kept."""

    def read(conn: sqlite3.Connection) -> dict[str, int]:
        if not _has_table(conn):
            return {}
        return dict(conn.execute(f"SELECT metric, count(*) FROM {TABLE} GROUP BY metric").fetchall())

    return store.run_sql(read)


def prune(store: ResponseStore, older_than_s: float | None = None) -> int:
    """Remove stored scores (all, or those older than ``older_than_s``); how many went."""

    def delete(conn: sqlite3.Connection) -> int:
        if not _has_table(conn):
            return 0
        if older_than_s is None:
            count = conn.execute(f"DELETE FROM {TABLE}").rowcount
        else:
            count = conn.execute(f"DELETE FROM {TABLE} WHERE created < ?", (time.time() - older_than_s,)).rowcount
        conn.execute("VACUUM")
        return count

    return store.run_sql(delete)
