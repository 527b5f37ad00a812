"""The query phase: every selected case answered once, before the tests read the answers.

Across the processes of one run (the xdist workers, or the one pytest process) exactly one holds
the run's lock and asks the model for every key not yet in the response store; the others wait
and read. If that process dies, the lock is released and another takes over where it stopped, so
no answered key is asked again and none is lost. Across runs that share a cache (two CI jobs on one
machine), the asking process first claims its keys in the cache file itself: a key another live
process has claimed is waited for, not asked, and the claims of a process that died end with it.
Progress is written to a small JSON file that the process with the terminal displays.

When the cache cannot take answers (disk full, locked too long) the phase stops asking at once,
keeps the answers it holds in a ``.pending`` file the next run imports, tells the run's other
processes (``stopped.txt``) and raises one :class:`~pytest_medcode.cache.CacheError`.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_medcode.cache import (
    DEFAULT_CLAIM_TTL_S,
    CacheError,
    ResponseStore,
    Stored,
    clip_answer,
    env_seconds,
    owner_id,
    owner_pid,
)
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


def stop_paths(state_dir: Path) -> list[Path]:
    """Where a stopped phase leaves its reason: the run's state folder, or the temp folder when that
    folder's disk is the full one."""
    return [state_dir / "stopped.txt",
            Path(tempfile.gettempdir()) / "pytest-medcode" / "stopped" / f"{state_dir.name}.txt"]


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
        self.owner = owner_id(state_dir.name)
        self.claim_ttl = env_seconds("MEDCODE_CLAIM_TTL_S", DEFAULT_CLAIM_TTL_S)
        self.pending: dict[str, tuple[str, Stored]] = {}  # received, not written (the cache failed)
        self.held_elsewhere: dict[str, str] = {}  # keys another process has claimed -> its owner id

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "query.lock"

    @property
    def progress_path(self) -> Path:
        return self.state_dir / "progress.json"

    @property
    def stop_paths(self) -> list[Path]:
        return stop_paths(self.state_dir)

    def _usable(self, stored: Stored) -> bool:
        """A stored error from an earlier run is asked again only with --medcode-retry-errors."""
        if stored.text is not None:
            return True
        return not (self.retry_errors and stored.created < self.run_started)

    def run(self, keys: Sequence[str], requests: Sequence[CodeRequest]) -> dict[str, Outcome]:
        """Outcomes for every key, asking only what the store does not hold (CacheError: the phase stopped)."""
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
            self._check_stopped()
            asked = False
            with try_lock(self.lock_path) as leader:
                if leader:
                    asked = self._ask(missing, wanted, results)
            if not asked:
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
                                       stored.usage, cached=stored.created < self.run_started, chars=stored.chars)

    def _ask(self, missing: list[str], wanted: dict[str, CodeRequest], results: dict[str, Outcome]) -> bool:
        """Ask for the missing keys this process can claim; False when another process has claimed them all."""
        # Another process may have answered some keys between our read and taking the lock.
        self._collect(missing, results)
        todo = [k for k in missing if k not in results]
        if not todo:
            return True
        try:
            mine, self.held_elsewhere = self.store.claim(todo, self.owner, self.claim_ttl)
            if not mine:
                return False
            self._collect(mine, results)  # answered and released by another process just before our claim
            mine = [k for k in mine if k not in results]
            if mine:
                with self._heartbeat():
                    self._ask_claimed(mine, wanted, results)
        except CacheError as exc:
            self._stop(exc)
        finally:
            self.store.release(self.owner)
        return True

    def _ask_claimed(self, todo: list[str], wanted: dict[str, CodeRequest], results: dict[str, Outcome]) -> None:
        engine = self._engine()
        engine.progress = self.progress
        self.progress.done = len(results)
        last = [0.0]
        broken: list[CacheError] = []

        def on_result(index: int, outcome: Outcome) -> None:
            key = todo[index]
            outcome.cached = False
            outcome.text, outcome.chars = clip_answer(outcome.text, outcome.chars)  # as a re-run will read it
            stored = Stored(outcome.text, outcome.error, outcome.usage, outcome.latency_s, outcome.attempts,
                            time.time(), outcome.chars)
            results[key] = outcome
            model = wanted[key].case.model
            if broken:  # the cache already failed: keep it in memory, don't wait on the cache again
                self.pending[key] = (model, stored)
                raise broken[0]
            try:
                self.store.put(key, model, stored)
            except CacheError as exc:
                broken.append(exc)
                self.pending[key] = (model, stored)
                raise
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_EVERY_S:
                last[0] = now
                self._report()

        engine.run_batch([wanted[k] for k in todo], on_result, self.progress)
        self._report()

    @contextmanager
    def _heartbeat(self) -> Iterator[None]:
        """Renew this process's claims while it asks, so other runs keep waiting for it (not asking)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.claim_ttl / 3):
                try:
                    self.store.renew(self.owner, self.claim_ttl)
                except CacheError:
                    pass
            self.store.close()

        thread = threading.Thread(target=beat, name="medcode-claims", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _stop(self, exc: CacheError) -> None:
        """Keep the answers the cache could not take, tell the run's other processes, raise one line."""
        message = str(exc) + "; stopped asking"
        if self.pending:
            where = self.store.spill(self.pending)
            n = len(self.pending)
            message += (f"; {n} answer(s) received but not written are kept in {where} and go into the cache "
                        "on the next run" if where else f"; {n} answer(s) received could not be kept anywhere")
        message += "; a re-run asks only what is missing"
        for path in self.stop_paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(message)
                break
            except OSError:
                path.unlink(missing_ok=True)
        raise type(exc)(message) from None

    def _check_stopped(self) -> None:
        """Another process of this run stopped the phase (the cache failed): stop here too, with its reason."""
        for path in self.stop_paths:
            try:
                message = path.read_text()
            except OSError:
                continue
            if message:
                raise CacheError(message)

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
        if self._show is None:
            return
        if self.held_elsewhere:
            owners = sorted({owner_pid(o) for o in self.held_elsewhere.values()})
            self._show(f"medcode: waiting for {len(self.held_elsewhere)} answer(s) another run is asking "
                       f"(pid {', '.join(owners) or '?'}) · {self.progress.line().removeprefix('medcode: ')}")
            return
        data = read_progress(self.progress_path)
        if data:
            self._show(data["line"])
