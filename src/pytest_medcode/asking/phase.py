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
processes (``stopped.txt``) and raises one :class:`~pytest_medcode.asking.cache.CacheError`.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pytest_medcode.asking.batch import BatchRunner
from pytest_medcode.asking.cache import (
    DEFAULT_CLAIM_TTL_S,
    CacheError,
    ResponseStore,
    Stored,
    clip_answer,
    env_seconds,
    owner_id,
    owner_pid,
)
from pytest_medcode.asking.engine import Call, Outcome, QueryEngine
from pytest_medcode.asking.progress import Progress, write_progress
from pytest_medcode.atomic import read_json, write_json

_POLL_S = 0.2
_PROGRESS_EVERY_S = 0.5
_COLLECT_CHUNK = 5_000
#: In a stored error's ``usage``: the failure is final (the question's own, kept by :func:`stored`). A stored
#: error without it was kept by an earlier version (a 429, a 500) and is asked again.
FINAL = "final_error"


def stored(outcome: Outcome) -> Stored:
    """An outcome as the response cache keeps it (only an answer or a final failure is ever kept)."""
    usage = outcome.usage if outcome.error is None else {**outcome.usage, FINAL: True}
    return Stored(outcome.text, outcome.error, usage, outcome.latency_s, outcome.attempts, time.time(),
                  outcome.chars)


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
        #: --medcode-batch: asks the keys of batch-capable models through batch APIs (asking/batch.py)
        self.batch: BatchRunner | None = None
        #: Retries the preflight made before the phase began: the phase's progress counts them too.
        self.carried_retries = 0
        self._report_lock = threading.Lock()

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "query.lock"

    @property
    def progress_path(self) -> Path:
        return self.state_dir / "progress.json"

    @property
    def stop_paths(self) -> list[Path]:
        return stop_paths(self.state_dir)

    @property
    def breaker_path(self) -> Path:
        """Models the circuit breaker stopped, so a process that takes over asking does not start again."""
        return self.state_dir / "breaker.json"

    @property
    def budget_path(self) -> Path:
        """This run's spend under --medcode-max-cost, so a process that takes over asking goes on from it."""
        return self.state_dir / "budget.json"

    @property
    def unkept_path(self) -> Path:
        """This run's outcomes that the response cache must not keep (a failed setup, a call never made):
        shared with the run's other processes, so each case reads the outcome its question really had."""
        return self.state_dir / "unkept.json"

    def _usable(self, row: Stored) -> bool:
        """A stored answer, or a final failure (asked again with --medcode-retry-errors when it is an earlier
        run's). A stored failure that is not marked final (an earlier version kept 429s and 500s) is asked
        again: it was never the question's answer."""
        if row.text is not None:
            return True
        if not row.usage.get(FINAL):
            return False
        return not (self.retry_errors and row.created < self.run_started)

    def run(self, keys: Sequence[str], call_of: Callable[[str], Call]) -> dict[str, Outcome]:
        """Every key answered, asking only what the store does not hold (CacheError: the phase stopped);
        the outcomes the store does not keep (a failed setup, a call never made) are returned, the rest
        are read back with :meth:`outcome` when their case runs.

        Nothing is held per key but the key: at 75k cases every worker of an xdist run would otherwise hold
        every answer and, while asking, every prompt (``call_of`` builds only the calls asked)."""
        wanted = dict.fromkeys(keys)
        self.progress = Progress(total=len(wanted), retries=self.carried_retries)
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
            self._check_stopped()
            asked = False
            with try_lock(self.lock_path) as leader:
                if leader:
                    asked = self._ask(missing, call_of, done, unkept)
            if not asked:
                self._wait()
        self.progress.done = len(done)
        self.progress.finished = time.monotonic()
        self._report_file()
        if self._show is not None and self.progress.done > self.progress.cached:
            self._show(self.progress.line(), final=True)
        return unkept

    def claim_one(self, key: str) -> bool:
        """Claim one key before asking it outside the phase (the preflight probe), so that a run sharing
        the cache does not ask it at the same time; :meth:`release` ends the claim."""
        mine, _ = self.store.claim([key], self.owner, self.claim_ttl)
        return bool(mine)

    def release(self) -> None:
        self.store.release(self.owner)

    def outcome(self, key: str) -> Outcome | None:
        """A key's kept outcome, read from the store when its case runs (None if the store has none)."""
        return self.outcomes([key]).get(key)

    def outcomes(self, keys: list[str]) -> dict[str, Outcome]:
        """The kept outcomes of ``keys``, in one pass over the store."""
        out: dict[str, Outcome] = {}
        for start in range(0, len(keys), _COLLECT_CHUNK):
            for key, row in self.store.get_many(keys[start : start + _COLLECT_CHUNK]).items():
                if self._usable(row):
                    usage = {k: v for k, v in row.usage.items() if k != FINAL}
                    out[key] = Outcome(row.text, row.error, row.latency_s, row.attempts, usage,
                                       cached=row.created < self.run_started, chars=row.chars)
        return out

    def _collect(self, keys: list[str], done: set[str], unkept: dict[str, Outcome]) -> int:
        """Mark the keys that are answered (in the store, or unkept by this run's other processes); the
        number of them answered before this run (cache hits)."""
        cached = 0
        for start in range(0, len(keys), _COLLECT_CHUNK):  # a chunk at a time: stored rows are not kept
            for key, row in self.store.get_many(keys[start : start + _COLLECT_CHUNK]).items():
                if self._usable(row):
                    done.add(key)
                    cached += row.created < self.run_started
        shared = read_json(self.unkept_path) if self.unkept_path.exists() else None
        if shared:
            for key in keys:
                if key not in done and key in shared:
                    error, attempts, latency_s, usage = shared[key]
                    unkept[key] = Outcome(None, error, latency_s, attempts, usage, cached=False, keep=False)
                    done.add(key)
        return cached

    def _ask(self, missing: list[str], call_of: Callable[[str], Call], done: set[str],
             unkept: dict[str, Outcome]) -> bool:
        """Ask for the missing keys this process can claim; False when another process has claimed them all."""
        # Another process may have answered some keys between our read and taking the lock.
        self._collect(missing, done, unkept)
        todo = [k for k in missing if k not in done]
        if not todo:
            return True
        try:
            mine, self.held_elsewhere = self.store.claim(todo, self.owner, self.claim_ttl)
            if not mine:
                return False
            self._collect(mine, done, unkept)  # answered and released by another process just before our claim
            mine = [k for k in mine if k not in done]
            if mine:
                with self._heartbeat():
                    self._ask_claimed(mine, call_of, done, unkept)
        except CacheError as exc:
            self._stop(exc)
        finally:
            self.store.release(self.owner)
        return True

    def _ask_claimed(self, todo: list[str], call_of: Callable[[str], Call], done: set[str],
                     unkept: dict[str, Outcome]) -> None:
        with self.showing(self.progress):
            self._ask_claimed_shown(todo, call_of, done, unkept)

    def _ask_claimed_shown(self, todo: list[str], call_of: Callable[[str], Call], done: set[str],
                           unkept: dict[str, Outcome]) -> None:
        """Ask the claimed keys: as batches first when batching is on (cheaper), then the rest streamed, each
        answer stored as it arrives (what the cache cannot take is kept for the next run)."""
        if self.batch is not None:
            todo = self._ask_batched(self.batch, todo, call_of, done, unkept)
            if not todo:
                return
        calls = [call_of(k) for k in todo]
        engine = self._engine()
        engine.progress = self.progress
        engine.breaker.tripped.update(read_json(self.breaker_path) or {})
        if engine.budget is not None:
            engine.budget.load(self.budget_path)
        self.progress.done = len(done)
        last = [0.0]
        broken: list[CacheError] = []
        shared: dict[str, Outcome] = {}

        def on_result(index: int, outcome: Outcome) -> None:
            key = todo[index]
            outcome.cached = False
            done.add(key)
            if not outcome.keep:  # a failure a retry may fix, a failed setup, a call never made: this run's only
                unkept[key] = outcome
                shared[key] = outcome
                return
            outcome.text, outcome.chars = clip_answer(outcome.text, outcome.chars)  # as a re-run will read it
            row = stored(outcome)
            model = calls[index].model
            if broken:  # the cache already failed: keep it in memory, don't wait on the cache again
                self.pending[key] = (model, row)
                raise broken[0]
            try:
                self.store.put(key, model, row)
            except CacheError as exc:
                broken.append(exc)
                self.pending[key] = (model, row)
                raise
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_EVERY_S:
                last[0] = now
                self._report()

        try:
            engine.run_batch(calls, on_result, self.progress)
        finally:
            if engine.breaker.tripped:
                write_json(self.breaker_path, engine.breaker.tripped)
            if shared:
                self._share_unkept(shared)
        self._report()

    def _ask_batched(self, batch: BatchRunner, todo: list[str], call_of: Callable[[str], Call], done: set[str],
                     unkept: dict[str, Outcome]) -> list[str]:
        """Send what the batch runner takes as batches; returns the keys it leaves, to be streamed. The keys of
        a batch that could not be re-attached now are settled here as this run's unkept outcomes."""
        wanted = set(todo)
        todo = batch.run(todo, wanted, call_of, self._deliver_batch(wanted, done), self.progress,
                         self._report)
        held = {k: o for k, o in batch.unanswered.items() if k in wanted}
        if held:  # a batch that could not be re-attached now: this run's outcome, never sent again
            for key, outcome in held.items():
                unkept[key] = outcome
                done.add(key)
                self.progress.errors += 1
            self._share_unkept(held)
        return todo

    def _share_unkept(self, outcomes: dict[str, Outcome]) -> None:
        """This run's outcomes the cache does not keep, for the run's other processes to read (unkept.json)."""
        rows = {k: [o.error, o.attempts, o.latency_s, o.usage] for k, o in outcomes.items()}
        write_json(self.unkept_path, {**(read_json(self.unkept_path) or {}), **rows})

    @contextmanager
    def showing(self, progress: Progress, to_file: bool = True) -> Iterator[None]:
        """Show ``progress`` every half second while the block runs, so a long wait (a rate limit, a batch)
        is seen as a wait and not as a hang. The preflight shows its probe so too, on this process's terminal
        only (``to_file`` False: the progress file is the phase's, which an xdist controller follows)."""
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(_PROGRESS_EVERY_S):
                if to_file:
                    self._report(progress)
                elif self._show is not None:
                    with self._report_lock:
                        self._show(progress.line(), notable=bool(progress.waiting()))

        thread = threading.Thread(target=tick, name="medcode-progress-tick", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _deliver_batch(self, wanted: set[str], done: set[str]) -> Callable[[list[tuple[str, Any, Outcome]]], None]:
        """Store a slice of a batch's results in one transaction, as streamed answers are stored one by one
        (the same rows, so the tests read them alike); what the cache cannot take is kept for the next run."""

        def deliver(items: list[tuple[str, Any, Outcome]]) -> None:
            rows = []
            for key, model, outcome in items:
                outcome.text, outcome.chars = clip_answer(outcome.text, outcome.chars)
                rows.append((key, model, stored(outcome)))
            try:
                self.store.put_many(rows)
            except CacheError:
                self.pending.update({key: (model, row) for key, model, row in rows})
                raise
            for key, _, outcome in items:
                if key in wanted:
                    done.add(key)
                    self.progress.errors += outcome.error is not None
            self.progress.done = len(done)

        return deliver

    @contextmanager
    def _heartbeat(self) -> Iterator[None]:
        """Renew this process's claims while it asks, so other runs keep waiting for it (not asking)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.claim_ttl / 3):
                with suppress(CacheError):
                    self.store.renew(self.owner, self.claim_ttl)
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

    def _report_file(self, progress: Progress | None = None) -> None:
        with suppress(OSError):  # progress is a convenience; never let it stop the run
            write_progress(self.progress_path, progress or self.progress)

    def _report(self, progress: Progress | None = None) -> None:
        with self._report_lock:  # the ticker and the results both report
            self._report_file(progress)
            if self._show is not None:
                shown = progress or self.progress
                self._show(shown.line(), notable=bool(shown.waiting()))

    def _wait(self) -> None:
        time.sleep(_POLL_S)
        if self._show is None:
            return
        if self.held_elsewhere:
            owners = sorted({owner_pid(o) for o in self.held_elsewhere.values()})
            self._show(f"medcode: waiting for {len(self.held_elsewhere)} answer(s) another run is asking "
                       f"(pid {', '.join(owners) or '?'}) · {self.progress.line().removeprefix('medcode: ')}")
            return
        data = read_json(self.progress_path)
        if data:
            self._show(data["line"], notable=bool(data.get("waiting")))
