"""The query phase: every selected case answered once, before the tests read the answers.

Across the processes of one run (the xdist workers, or the one pytest process) exactly one holds
the run's lock and asks the model for every key not yet in the response store; the others wait
and read. If that process dies, the lock is released and another takes over where it stopped, so
no answered key is asked again and none is lost. Progress is written to a small JSON file that
the process with the terminal displays.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_medcode.cache import ResponseStore, Stored
from pytest_medcode.coders import CodeRequest
from pytest_medcode.querying import Outcome, Progress, QueryEngine

_POLL_S = 0.2
_PROGRESS_EVERY_S = 0.5
_COLLECT_CHUNK = 5_000


@contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """Non-blocking exclusive lock; released by the OS if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader in another process sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_progress(path: Path, progress: Progress) -> None:
    write_json(path, {**progress.to_dict(), "line": progress.line()})



class QueryPhase:
    def __init__(
        self,
        store: ResponseStore,
        engine: Callable[[], QueryEngine],
        state_dir: Path,
        run_started: float,
        retry_errors: bool,
        show: Callable[..., None] | None = None,
    ) -> None:
        self.store = store
        self._engine = engine
        self.state_dir = state_dir
        self.run_started = run_started
        self.retry_errors = retry_errors
        self._show = show
        self.progress = Progress()

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "query.lock"

    @property
    def progress_path(self) -> Path:
        return self.state_dir / "progress.json"

    @property
    def breaker_path(self) -> Path:
        """Models the circuit breaker stopped, so a process that takes over asking does not start again."""
        return self.state_dir / "breaker.json"

    @property
    def unkept_path(self) -> Path:
        """This run's outcomes that the response cache must not keep (a failed setup, a call never made):
        shared with the run's other processes, so each case reads the outcome its question really had."""
        return self.state_dir / "unkept.json"

    def _usable(self, stored: Stored) -> bool:
        """A stored error from an earlier run is asked again only with --medcode-retry-errors."""
        if stored.text is not None:
            return True
        return not (self.retry_errors and stored.created < self.run_started)

    def run(self, keys: Sequence[str], request_of: Callable[[str], CodeRequest]) -> dict[str, Outcome]:
        """Every key answered, asking only what the store does not hold; the outcomes the store does not
        keep (a failed setup, a call never made) are returned, the rest are read back with :meth:`outcome`.

        Nothing is held per key but the key: at 75k cases every worker of an xdist run would otherwise hold
        every answer and, while asking, every prompt (``request_of`` builds only the requests asked)."""
        wanted = dict.fromkeys(keys)
        self.progress = Progress(total=len(wanted))
        done: set[str] = set()
        unkept: dict[str, Outcome] = {}
        first = True
        while True:
            cached = self._collect([k for k in wanted if k not in done], done, unkept)
            if first:  # answered before the run (a preflight probe's answer is this run's)
                self.progress.done, self.progress.cached = len(done), cached
                first = False
            missing = [k for k in wanted if k not in done]
            if not missing:
                break
            with try_lock(self.lock_path) as leader:
                if leader:
                    self._ask(missing, request_of, done, unkept)
                    continue
            self._wait()
        self.progress.done = len(done)
        self.progress.finished = time.monotonic()
        self._report_file()
        if self._show is not None and self.progress.done > self.progress.cached:
            self._show(self.progress.line(), final=True)
        return unkept

    def outcome(self, key: str) -> Outcome | None:
        """A key's kept outcome, read from the store when its case runs (None if the store has none)."""
        stored = self.store.get_many([key]).get(key)
        if stored is None or not self._usable(stored):
            return None
        return Outcome(stored.text, stored.error, stored.latency_s, stored.attempts, stored.usage,
                       cached=stored.created < self.run_started)

    def _collect(self, keys: list[str], done: set[str], unkept: dict[str, Outcome]) -> int:
        """Mark the keys that are answered (in the store, or unkept by this run's other processes); the
        number of them answered before this run (cache hits)."""
        cached = 0
        for start in range(0, len(keys), _COLLECT_CHUNK):  # a chunk at a time: stored rows are not kept
            for key, stored in self.store.get_many(keys[start : start + _COLLECT_CHUNK]).items():
                if self._usable(stored):
                    done.add(key)
                    cached += stored.created < self.run_started
        shared = read_json(self.unkept_path) if self.unkept_path.exists() else None
        if shared:
            for key in keys:
                if key not in done and key in shared:
                    error, attempts, latency_s = shared[key]
                    unkept[key] = Outcome(None, error, latency_s, attempts, cached=False, keep=False)
                    done.add(key)
        return cached

    def _ask(self, missing: list[str], request_of: Callable[[str], CodeRequest], done: set[str],
             unkept: dict[str, Outcome]) -> None:
        # Another process may have answered some keys between our read and taking the lock.
        self._collect(missing, done, unkept)
        todo = [k for k in missing if k not in done]
        if not todo:
            return
        requests = [request_of(k) for k in todo]
        engine = self._engine()
        engine.progress = self.progress
        engine.breaker.tripped.update(read_json(self.breaker_path) or {})
        self.progress.done = len(done)
        last = [0.0]
        shared: dict[str, list[Any]] = {}

        def on_result(index: int, outcome: Outcome) -> None:
            key = todo[index]
            outcome.cached = False
            if outcome.keep:  # an answer, or a failure of this question: never asked again (but on request)
                self.store.put(key, requests[index].case.model, Stored(
                    outcome.text, outcome.error, outcome.usage, outcome.latency_s, outcome.attempts, time.time()))
            else:
                unkept[key] = outcome
                shared[key] = [outcome.error, outcome.attempts, outcome.latency_s]
            done.add(key)
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_EVERY_S:
                last[0] = now
                self._report()

        try:
            engine.run_batch(requests, on_result, self.progress)
        finally:
            if engine.breaker.tripped:
                write_json(self.breaker_path, engine.breaker.tripped)
            if shared:
                write_json(self.unkept_path, {**(read_json(self.unkept_path) or {}), **shared})
        self._report()

    def _report_file(self) -> None:
        try:
            write_progress(self.progress_path, self.progress)
        except OSError:  # progress is a convenience; never let it stop the run
            pass

    def _report(self) -> None:
        self._report_file()
        if self._show is not None:
            self._show(self.progress.line())

    def _wait(self) -> None:
        time.sleep(_POLL_S)
        if self._show is not None:
            data = read_json(self.progress_path)
            if data:
                self._show(data["line"])
