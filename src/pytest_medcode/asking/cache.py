"""The response store: every model answer, written the moment it arrives, shared by all processes.

SQLite in WAL mode: one file, safe for concurrent readers and writers across xdist workers and
separate runs, and an answer committed before a ``kill -9`` is still there on the next run. The
key covers only what changes the answer (model, endpoint, messages, generation parameters,
repeat index) — never an API key.

What the store promises, and how:

- **Busy is not damaged.** A file another process holds locked is waited for (with a message every
  few seconds) and, past ``MEDCODE_CACHE_WAIT_S`` seconds, is a one-line :class:`CacheBusy` that names
  the holder where /proc/locks tells. A file in use is never moved.
- **Damage is salvaged.** A file found damaged at any point (opening, reading, writing) has its
  readable rows copied to a fresh file that takes its place; the damaged file is kept beside it as
  ``NAME.damaged-*`` and one warning gives the rows kept and lost (:mod:`pytest_medcode.asking.salvage`,
  which reads the file's pages itself, in time linear in its size). A file that is not SQLite at all is
  someone's file given by mistake: it is refused (:func:`check_file`), never moved.
- **A full disk stops, not loses.** :class:`CacheFull` is raised at the first write that fails; answers
  the caller could not write are spilled to a ``.pending`` file (beside the cache, or in the temp
  folder when the cache's disk is full) that the next open imports, so no received answer is paid again.
- **Claims.** A process about to ask for keys claims them (owner, expiry) in the file itself; other
  processes — other runs sharing the cache — wait for those answers instead of asking too. A claim
  ends when its answers are stored, when its owner's heartbeat stops (expiry), or at once when its
  owner is a dead process on this machine.
- **Bounded rows.** An answer longer than :data:`ANSWER_LIMIT` characters is stored cut to that
  length, with its true length in the row's ``usage`` (``answer_chars``): no new column, so versions
  of the plugin that predate it can still write to a shared file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import socket
import sqlite3
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pytest_medcode.asking import lockholder
from pytest_medcode.asking.salvage import MAGIC, salvage

SCHEMA_VERSION = 1
ANSWER_LIMIT = 20_000  # characters of one answer kept in the cache (and in the record); the length is kept too
_CHUNK = 900  # SQLite's default limit on bound parameters is 999
_COLUMNS = ("key", "model", "text", "error", "usage", "latency_s", "attempts", "created")
_LENGTH = "answer_chars"  # in ``usage``: the true length of an answer stored cut
DEFAULT_WAIT_S = 120.0  # how long a locked cache is waited for (MEDCODE_CACHE_WAIT_S)
DEFAULT_CLAIM_TTL_S = 60.0  # a claim not renewed for this long is void (MEDCODE_CLAIM_TTL_S)
#: Every MEDCODE_*_S variable the asking layer reads (cache.py, phase.py, batch.py), checked before a run starts.
SECONDS_VARIABLES = ("MEDCODE_CACHE_WAIT_S", "MEDCODE_CLAIM_TTL_S", "MEDCODE_BATCH_POLL_S", "MEDCODE_BATCH_POLL_MAX_S")
_NOTIFY_EVERY_S = 5.0

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
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claimants (owner TEXT PRIMARY KEY, expires REAL NOT NULL);
"""

T = TypeVar("T")


class CacheError(Exception):
    """The response cache cannot be used right now; the message is one line for the user."""


class CacheBusy(CacheError):
    """Another process has held the cache locked for longer than the wait allows."""


class CacheFull(CacheError):
    """The disk under the cache is full (or the file reached its size limit)."""


def request_key(identity: dict[str, Any]) -> str:
    """A stable hash of everything that changes the answer (the caller leaves secrets out)."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def clip_answer(text: str | None, chars: int | None = None) -> tuple[str | None, int | None]:
    """An answer as the cache keeps it: at most :data:`ANSWER_LIMIT` characters, and its true length."""
    if text is None:
        return None, chars
    return text[:ANSWER_LIMIT], chars if chars is not None else len(text)


def env_seconds(name: str, default: float) -> float:
    """A number of seconds above 0 from the environment (tests shorten waits), ``default`` when unset or
    empty; any other value is a :class:`CacheError`, not silently the default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise CacheError(f"{name}={raw!r} is not a number of seconds above 0 "
                         f"(unset it for the default, {default:g})")
    return value


def check_environment() -> None:
    """Every variable of :data:`SECONDS_VARIABLES` that is set reads as seconds (else CacheError)."""
    for name in SECONDS_VARIABLES:
        env_seconds(name, 1.0)


def check_file(path: Path) -> None:
    """A file at ``path`` that is not an SQLite database is refused (CacheError), never moved aside: it is
    someone's file given by mistake. A file that starts like one, or whose pages still hold rows of the
    cache (its header is what was damaged), is a cache: damage inside it is salvaged."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(MAGIC))
    except (FileNotFoundError, IsADirectoryError):
        return  # created (or refused by SQLite itself) as usual
    except OSError as exc:
        raise CacheError(f"response cache {path}: {exc.strerror or exc}") from None
    if not head or head == MAGIC or salvage(path, _COLUMNS).rows:
        return
    raise CacheError(f"response cache {path} is not an SQLite file (it starts with {head!r}); nothing "
                     "was changed: give --medcode-cache a path of its own, or move that file away")


def owner_id(run_id: str) -> str:
    """Who holds a claim: machine (host and pid namespace, so a pid means one process), pid, run."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}|{os.getpid()}|{run_id}"


def owner_pid(owner: str) -> str:
    """The pid part of an owner id (for messages)."""
    parts = owner.split("|")
    return parts[1] if len(parts) == 3 else "?"


def owner_alive(owner: str) -> bool:
    """Whether the process behind an owner id may still be running (another machine: assumed so)."""
    return _owner_alive(owner)


def _owner_alive(owner: str) -> bool:
    parts = owner.split("|")
    if len(parts) != 3 or parts[0] != owner_id("").split("|")[0] or not parts[1].isdigit():
        return True  # another machine (or pid namespace): only the expiry can tell
    return lockholder.alive(int(parts[1]))


@dataclass(frozen=True)
class Stored:
    text: str | None
    error: str | None
    usage: dict[str, Any]
    latency_s: float
    attempts: int
    created: float = 0.0
    chars: int | None = None  # the answer's true length, when ``text`` was cut to ANSWER_LIMIT


def _kind(exc: sqlite3.Error) -> str:
    """busy / full / corrupt / other, from SQLite's result code (or its message, where none is given)."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    message = str(exc).lower()
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "database is locked" in message:
        return "busy"
    if code == sqlite3.SQLITE_FULL or "database or disk is full" in message:
        return "full"
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in message \
            or "not a database" in message:
        return "corrupt"
    return "other"


class ResponseStore:
    def __init__(self, path: Path, wait_s: float | None = None, notify: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.wait_s = wait_s if wait_s is not None else env_seconds("MEDCODE_CACHE_WAIT_S", DEFAULT_WAIT_S)
        self.notify = notify
        self.recovered: tuple[int, int | None, Path] | None = None  # (rows kept, lost, damaged file) after a salvage
        self._local = threading.local()
        self._generation = 0
        self._recover_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        check_file(path)
        self._run(self._init)
        self.import_pending()

    # -- connections and error handling ------------------------------------------------------------
    @property
    def _busy_ms(self) -> int:
        return int(min(2.0, self.wait_s / 4) * 1000)  # SQLite's own wait per try; ours counts the total

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened again when the file was replaced (a salvage, here or elsewhere)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and (local.generation != self._generation or self._replaced(local.ino)):
            conn.close()
            conn = local.conn = None
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000, isolation_level=None)
            local.ino = os.stat(self.path).st_ino
            try:
                conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                conn.close()
                raise
            local.conn, local.generation = conn, self._generation
        return conn

    def _replaced(self, ino: int) -> bool:
        try:
            return os.stat(self.path).st_ino != ino
        except FileNotFoundError:
            return True

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on this thread's connection: a lock is waited for, damage salvaged (once), a full disk raised."""
        waited_since: float | None = None
        told = 0.0
        recovered = False
        while True:
            conn: sqlite3.Connection | None = None
            try:
                conn = self._conn()
                return work(conn)
            except sqlite3.Error as exc:
                if conn is not None and conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                kind = _kind(exc)
                if kind == "busy":
                    now = time.monotonic()
                    if waited_since is None:
                        waited_since = now - self._busy_ms / 1000
                    waited = now - waited_since
                    holder = lockholder.held_by(self.path, self.path.with_name(self.path.name + "-shm"))
                    if waited >= self.wait_s:
                        raise CacheBusy(f"response cache {self.path} is locked, {holder}, and stayed locked "
                                        f"for {waited:.0f} s (MEDCODE_CACHE_WAIT_S={self.wait_s:g}); "
                                        "nothing was moved or lost, run again once it is free") from None
                    if self.notify is not None and now - told >= _NOTIFY_EVERY_S:
                        told = now
                        self.notify(f"medcode: waiting for the response cache {self.path}: locked, {holder} "
                                    f"({waited:.0f} s of {self.wait_s:g} s)")
                    continue
                if kind == "full":
                    raise CacheFull(f"response cache {self.path}: disk full ({exc})") from None
                if kind == "corrupt" and not recovered:
                    recovered = True
                    self._recover(exc)
                    continue
                if kind == "corrupt":
                    raise CacheError(f"response cache {self.path} is damaged and could not be salvaged ({exc})") \
                        from None
                raise CacheError(f"response cache {self.path}: {exc.__class__.__name__}: {exc}") from None
            except OSError as exc:
                raise CacheError(f"response cache {self.path}: {exc.strerror or exc}") from None

    def _init(self, conn: sqlite3.Connection) -> None:
        """Create what is missing (no write at all when nothing is: a locked file still opens for reading)."""
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"responses", "meta", "claims", "claimants"} <= tables:
            conn.executescript(_DDL)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("SELECT count(*) FROM responses").fetchone()  # reads the key index: fails fast on damage
        problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if problem != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {problem}")

    # -- damage ---------------------------------------------------------------------------------------
    def _recover(self, exc: sqlite3.Error) -> None:
        """Salvage the readable rows into a fresh file that replaces the damaged one, which is kept aside."""
        failed_on = getattr(self._local, "ino", None)
        lock_path = self.path.with_name(self.path.name + ".recover.lock")
        with self._recover_lock, open(lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one salvage at a time across processes; released on close
            self._generation += 1
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None
            if failed_on is not None and self._replaced(failed_on):
                return  # another thread or process salvaged the file already
            check_file(self.path)  # replaced since it was opened by something that is not a cache: not ours to move
            found = salvage(self.path, _COLUMNS)
            stamp = f"{int(time.time())}-{os.getpid()}"
            aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
            fresh = self.path.with_name(f".{self.path.name}.salvage-{stamp}")
            try:
                _write_fresh(fresh, found.rows.values())
            except sqlite3.Error as write_exc:
                fresh.unlink(missing_ok=True)
                if _kind(write_exc) == "full":
                    raise CacheFull(f"response cache {self.path} is damaged and the disk is too full to salvage "
                                    "it; free space and run again (the file was not touched)") from None
                raise
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):  # moved with it (never deleted): a process still using them keeps them
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
            os.replace(fresh, self.path)
        self.recovered = (len(found.rows), found.lost, aside)
        reason = " ".join(str(exc).split())
        if found.lost is None:
            lost = "every row (no table could be read)"
        else:
            lost = str(found.lost) if found.exact else \
                f"at least {found.lost} (the key index that counts them could not be read whole)"
        warnings.warn(
            f"pytest-medcode: response cache {self.path} was damaged ({reason}); salvaged {len(found.rows)} row(s), "
            f"lost {lost}; the damaged file is kept as {aside.name}",
            stacklevel=4,
        )

    # -- answers ----------------------------------------------------------------------------------------
    def put(self, key: str, model: str, stored: Stored) -> None:
        """Write one result; a later success replaces an earlier error, never the reverse."""
        text, chars = clip_answer(stored.text, stored.chars)
        usage = stored.usage if text is None or chars == len(text) else {**stored.usage, _LENGTH: chars}
        row = (key, model, text, stored.error, json.dumps(usage), stored.latency_s, stored.attempts,
               stored.created or time.time())
        columns = ",".join(_COLUMNS)
        if text is not None:
            sql = f"INSERT OR REPLACE INTO responses ({columns}) VALUES (?,?,?,?,?,?,?,?)"
        else:
            sql = (f"INSERT INTO responses ({columns}) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
                   "error=excluded.error, usage=excluded.usage, attempts=excluded.attempts, "
                   "created=excluded.created WHERE responses.text IS NULL")

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(sql, row)

        self._run(write)
        if self._replaced(self._local.ino):  # the file was salvaged by another process as we wrote: again
            self._run(write)

    def put_many(self, rows: list[tuple[str, str, Stored]]) -> None:
        """Write many results (key, model, stored) in one transaction, by the rules of :meth:`put`: a batch's
        output file holds tens of thousands, and one commit each would cost more than the download."""
        successes: list[tuple[Any, ...]] = []
        errors: list[tuple[Any, ...]] = []
        for key, model, stored in rows:
            text, chars = clip_answer(stored.text, stored.chars)
            usage = stored.usage if text is None or chars == len(text) else {**stored.usage, _LENGTH: chars}
            (successes if text is not None else errors).append(
                (key, model, text, stored.error, json.dumps(usage), stored.latency_s, stored.attempts,
                 stored.created or time.time()))
        columns = ",".join(_COLUMNS)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT OR REPLACE INTO responses ({columns}) VALUES (?,?,?,?,?,?,?,?)", successes)
            conn.executemany(f"INSERT INTO responses ({columns}) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(key) DO "
                             "UPDATE SET error=excluded.error, usage=excluded.usage, attempts=excluded.attempts, "
                             "created=excluded.created WHERE responses.text IS NULL", errors)
            conn.execute("COMMIT")

        self._run(write)
        if self._replaced(self._local.ino):
            self._run(write)

    def run_sql(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on this thread's connection with the store's handling of locks, damage and a full disk
        (for the tables other modules keep in the same file: the batch ledger)."""
        return self._run(work)

    def get_many(self, keys: Iterable[str]) -> dict[str, Stored]:
        wanted = list(keys)

        def read(conn: sqlite3.Connection) -> dict[str, Stored]:
            out: dict[str, Stored] = {}
            for chunk in _chunks(wanted, _CHUNK):
                marks = ",".join("?" * len(chunk))
                for key, text, error, usage, latency, attempts, created in conn.execute(
                    "SELECT key, text, error, usage, latency_s, attempts, created FROM responses "
                    f"WHERE key IN ({marks})",
                    chunk,
                ):
                    used = json.loads(usage or "{}")
                    chars = used.pop(_LENGTH, None)
                    out[key] = Stored(text, error, used, latency or 0.0, attempts or 0, created, chars)
            return out

        return self._run(read)

    def count(self, keys: list[str]) -> int:
        return len(self.get_many(keys))

    # -- claims: who is asking for which key, across processes and runs --------------------------------
    def claim(self, keys: list[str], owner: str, ttl_s: float) -> tuple[list[str], dict[str, str]]:
        """Claim ``keys`` for ``owner`` (one transaction): the keys now ours, and the others' owners."""

        def take(conn: sqlite3.Connection) -> tuple[list[str], dict[str, str]]:
            conn.execute("BEGIN IMMEDIATE")
            now = time.time()
            live = {who for who, expires in conn.execute("SELECT owner, expires FROM claimants")
                    if who != owner and expires > now and _owner_alive(who)}
            held: dict[str, str] = {}
            for chunk in _chunks(keys, _CHUNK):
                marks = ",".join("?" * len(chunk))
                for key, who in conn.execute(f"SELECT key, owner FROM claims WHERE key IN ({marks})", chunk):
                    if who in live:
                        held[key] = who
            mine = [k for k in keys if k not in held]
            conn.execute("INSERT OR REPLACE INTO claimants VALUES (?, ?)", (owner, now + ttl_s))
            conn.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?)", [(k, owner) for k in mine])
            conn.execute("COMMIT")
            return mine, held

        return self._run(take)

    def renew(self, owner: str, ttl_s: float) -> None:
        """The heartbeat: push back the expiry of every claim of ``owner`` (one row, however many claims)."""
        self._run(lambda conn: conn.execute("UPDATE claimants SET expires = ? WHERE owner = ?",
                                            (time.time() + ttl_s, owner)))

    def release(self, owner: str) -> None:
        """End ``owner``'s claims (after its answers are stored); best effort, as expiry ends them anyway."""
        def end(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))
            conn.execute("DELETE FROM claimants WHERE owner = ?", (owner,))
            conn.execute("COMMIT")

        with contextlib.suppress(CacheError):
            self._run(end)

    # -- answers that could not be written ------------------------------------------------------------
    def _pending_dirs(self) -> list[Path]:
        """Beside the cache, and a folder in the temp directory for when the cache's disk is the full one."""
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        return [self.path.parent, Path(tempfile.gettempdir()) / "pytest-medcode" / "pending" / digest]

    def spill(self, pending: dict[str, tuple[str, Stored]]) -> Path | None:
        """Keep answers the cache could not take in a file the next open imports; where it went, or None."""
        if not pending:
            return None
        lines = "".join(json.dumps({"key": key, "model": model, **stored.__dict__}) + "\n"
                        for key, (model, stored) in pending.items())
        name = f"{self.path.name}.pending-{os.getpid()}-{time.time_ns()}.jsonl"
        for folder in self._pending_dirs():
            target = folder / name
            tmp = folder / f".{name}.tmp"
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                # only this user may read it: the temp folder is shared, and answers may be private
                with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
                    fh.write(lines)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
                return target
            except OSError:
                tmp.unlink(missing_ok=True)
        return None

    def import_pending(self) -> int:
        """Answers spilled by an earlier run, written into the cache now; their files are removed once in."""
        done = 0
        for folder in self._pending_dirs():
            for spilled in sorted(folder.glob(f"{self.path.name}.pending-*.jsonl")):
                try:
                    entries = [json.loads(line) for line in spilled.read_text(encoding="utf-8").splitlines() if line]
                except (OSError, ValueError):
                    continue
                try:
                    for entry in entries:
                        key, model = entry.pop("key"), entry.pop("model")
                        self.put(key, model, Stored(**entry))
                except CacheFull:
                    return done  # still full: the file stays for the next run
                spilled.unlink(missing_ok=True)
                done += len(entries)
            if folder != self.path.parent:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # the temp-folder fallback, once empty
        return done

    # -- housekeeping ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        rows = self._run(lambda conn: conn.execute(
            "SELECT model, count(*), sum(text IS NULL), min(created), max(created) FROM responses GROUP BY model"
        ).fetchall())
        return {
            "path": str(self.path),
            "bytes": self.path.stat().st_size if self.path.exists() else 0,
            "models": [
                {"model": m, "answers": n - e, "errors": e, "oldest": lo, "newest": hi} for m, n, e, lo, hi in rows
            ],
        }

    def prune(self, older_than_s: float | None = None, errors_only: bool = False, model: str | None = None) -> int:
        clauses: list[str] = []
        params: list[float | str] = []
        if older_than_s is not None:
            clauses.append("created < ?")
            params.append(time.time() - older_than_s)
        if errors_only:
            clauses.append("text IS NULL")
        if model is not None:
            clauses.append("model = ?")
            params.append(model)
        where = " AND ".join(clauses) or "1"

        def delete(conn: sqlite3.Connection) -> int:
            count = conn.execute(f"DELETE FROM responses WHERE {where}", params).rowcount
            conn.execute("VACUUM")
            return count

        return self._run(delete)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _write_fresh(path: Path, rows: Iterable[tuple[Any, ...]]) -> None:
    """A new store at ``path`` holding ``rows`` (in :data:`_COLUMNS` order), in WAL mode, fully written."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(_DDL)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("BEGIN")
        conn.executemany(f"INSERT OR REPLACE INTO responses ({','.join(_COLUMNS)}) VALUES (?,?,?,?,?,?,?,?)",
                         [r for r in rows if r[1] is not None and r[7] is not None])
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
