"""The response store: every model answer, written the moment it arrives, shared by all processes.

SQLite in WAL mode: one file, safe for concurrent readers and writers across xdist workers and
separate runs, and an answer committed before a ``kill -9`` is still there on the next run. The
key covers only what changes the answer (model, endpoint, messages, generation parameters,
repeat index) — never an API key. A damaged store is moved aside with a warning, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
_CHUNK = 900  # SQLite's default limit on bound parameters is 999

_DDL = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT,
    error TEXT,
    usage TEXT,
    latency_s REAL,
    attempts INTEGER,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""


def request_key(identity: dict[str, Any]) -> str:
    """A stable hash of everything that changes the answer (the caller leaves secrets out)."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Stored:
    text: str | None
    error: str | None
    usage: dict[str, Any]
    latency_s: float
    attempts: int
    created: float = 0.0


class ResponseStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._init()
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            warnings.warn(f"pytest-medcode: response cache {path} is damaged ({exc}); moved to {aside}",
                          stacklevel=2)
            self._local = threading.local()
            path.replace(aside)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.unlink()
            self._init()

    def _init(self) -> None:
        conn = self._conn()
        conn.executescript(_DDL)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.commit()
        conn.execute("SELECT count(*) FROM responses").fetchone()  # fails fast on a damaged file

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    def put(self, key: str, model: str, stored: Stored) -> None:
        """Write one result; a later success replaces an earlier error, never the reverse."""
        conn = self._conn()
        row = (key, model, stored.text, stored.error, json.dumps(stored.usage), stored.latency_s,
               stored.attempts, stored.created or time.time())
        if stored.text is not None:
            conn.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?)", row)
        else:
            conn.execute(
                "INSERT INTO responses VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
                "error=excluded.error, attempts=excluded.attempts, created=excluded.created "
                "WHERE responses.text IS NULL",
                row,
            )

    def get_many(self, keys: Iterable[str]) -> dict[str, Stored]:
        out: dict[str, Stored] = {}
        conn = self._conn()
        for chunk in _chunks(list(keys), _CHUNK):
            marks = ",".join("?" * len(chunk))
            for key, text, error, usage, latency, attempts, created in conn.execute(
                "SELECT key, text, error, usage, latency_s, attempts, created FROM responses "
                f"WHERE key IN ({marks})",
                chunk,
            ):
                out[key] = Stored(text, error, json.loads(usage or "{}"), latency or 0.0, attempts or 0, created)
        return out

    def count(self, keys: list[str]) -> int:
        return len(self.get_many(keys))

    def stats(self) -> dict[str, Any]:
        conn = self._conn()
        rows = conn.execute(
            "SELECT model, count(*), sum(text IS NULL), min(created), max(created) FROM responses GROUP BY model"
        ).fetchall()
        return {
            "path": str(self.path),
            "bytes": self.path.stat().st_size if self.path.exists() else 0,
            "models": [
                {"model": m, "answers": n - e, "errors": e, "oldest": lo, "newest": hi} for m, n, e, lo, hi in rows
            ],
        }

    def prune(self, older_than_s: float | None = None, errors_only: bool = False, model: str | None = None) -> int:
        clauses, params = [], []
        if older_than_s is not None:
            clauses.append("created < ?")
            params.append(time.time() - older_than_s)
        if errors_only:
            clauses.append("text IS NULL")
        if model is not None:
            clauses.append("model = ?")
            params.append(model)
        where = " AND ".join(clauses) or "1"
        cur = self._conn().execute(f"DELETE FROM responses WHERE {where}", params)
        self._conn().execute("VACUUM")
        return cur.rowcount

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
