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


def write_progress(path: Path, progress: Progress) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({**progress.to_dict(), "line": progress.line()}))
    os.replace(tmp, path)


def read_progress(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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

    def _usable(self, stored: Stored) -> bool:
        """A stored error from an earlier run is asked again only with --medcode-retry-errors."""
        if stored.text is not None:
            return True
        return not (self.retry_errors and stored.created < self.run_started)

    def run(self, keys: Sequence[str], requests: Sequence[CodeRequest]) -> dict[str, Outcome]:
        """Outcomes for every key, asking only what the store does not hold."""
        wanted = dict(zip(keys, requests))
        self.progress = Progress(total=len(wanted))
        results: dict[str, Outcome] = {}
        first = True
        while True:
            self._collect([k for k in wanted if k not in results], results)
            if first:
                self.progress.cached = self.progress.done = len(results)
                first = False
            missing = [k for k in wanted if k not in results]
            if not missing:
                break
            with try_lock(self.lock_path) as leader:
                if leader:
                    self._ask(missing, wanted, results)
                    continue
            self._wait()
        self.progress.done = len(results)
        self.progress.finished = time.monotonic()
        self._report_file()
        if self._show is not None and self.progress.done > self.progress.cached:
            self._show(self.progress.line(), final=True)
        return results

    def _collect(self, keys: list[str], results: dict[str, Outcome]) -> None:
        """Usable stored outcomes into ``results``; ``cached`` marks answers from earlier runs."""
        for key, stored in self.store.get_many(keys).items():
            if self._usable(stored):
                results[key] = Outcome(stored.text, stored.error, stored.latency_s, stored.attempts,
                                       stored.usage, cached=stored.created < self.run_started)

    def _ask(self, missing: list[str], wanted: dict[str, CodeRequest], results: dict[str, Outcome]) -> None:
        # Another process may have answered some keys between our read and taking the lock.
        self._collect(missing, results)
        todo = [k for k in missing if k not in results]
        if not todo:
            return
        engine = self._engine()
        engine.progress = self.progress
        self.progress.done = len(results)
        last = [0.0]

        def on_result(index: int, outcome: Outcome) -> None:
            key = todo[index]
            outcome.cached = False
            self.store.put(key, wanted[key].case.model, Stored(
                outcome.text, outcome.error, outcome.usage, outcome.latency_s, outcome.attempts, time.time()))
            results[key] = outcome
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_EVERY_S:
                last[0] = now
                self._report()

        engine.run_batch([wanted[k] for k in todo], on_result, self.progress)
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
            data = read_progress(self.progress_path)
            if data:
                self._show(data["line"])
