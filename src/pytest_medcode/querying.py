"""Asks the coders: one event loop in a background thread, a bounded number of calls in flight.

Tests do not call models themselves; they ask the engine for a case's answer and wait on a future.
Cases can be submitted ahead of time (prefetch) so calls stream at full concurrency while pytest
walks the items in order; a case is only ever submitted once per process.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pytest_medcode.coders import CallFailed, CodeRequest, Coder

_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 30.0


@dataclass
class Outcome:
    """What became of one request: the answer text, or the error after the last attempt."""

    text: str | None
    error: str | None
    latency_s: float
    attempts: int
    usage: dict[str, Any] = field(default_factory=dict)


class QueryEngine:
    def __init__(self, coders: dict[str, Coder], concurrency: int, attempts: int, timeout: float) -> None:
        self._coders = coders
        self._attempts = attempts
        self._timeout = timeout
        self._futures: dict[CodeRequest, Future[Outcome]] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="medcode-queries", daemon=True)
        self._thread.start()
        self._slots = asyncio.Semaphore(concurrency)
        self._rng = random.Random()

    def submit(self, request: CodeRequest) -> Future[Outcome]:
        """The future answer to a request; submitting the same request again returns the same future."""
        with self._lock:
            fut = self._futures.get(request)
            if fut is None:
                fut = asyncio.run_coroutine_threadsafe(self._run(request), self._loop)
                self._futures[request] = fut
            return fut

    def prefetch(self, requests: list[CodeRequest]) -> None:
        for request in requests:
            self.submit(request)

    async def _run(self, request: CodeRequest) -> Outcome:
        coder = self._coders[request.case.model]
        async with self._slots:
            start = time.perf_counter()
            error = "no attempt made"
            for attempt in range(1, self._attempts + 1):
                try:
                    reply = await asyncio.wait_for(coder.answer(request), timeout=self._timeout * 1.5)
                    return Outcome(reply.text, None, time.perf_counter() - start, attempt, reply.usage)
                except CallFailed as exc:
                    error = str(exc)
                    if not exc.retryable:
                        return Outcome(None, error, time.perf_counter() - start, attempt)
                    delay = exc.retry_after
                except asyncio.TimeoutError:
                    error = f"timed out after {self._timeout * 1.5:.1f} s"
                    delay = None
                except Exception as exc:  # a coder's own bug: keep the run alive, report it on the case
                    error = f"{exc.__class__.__name__}: {exc}"
                    delay = None
                if attempt < self._attempts:
                    backoff = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1))
                    await asyncio.sleep(max(delay or 0.0, self._rng.uniform(0, backoff)))
            return Outcome(None, error, time.perf_counter() - start, self._attempts)

    def close(self) -> None:
        with self._lock:
            pending = [f for f in self._futures.values() if not f.done()]
        for fut in pending:
            fut.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
