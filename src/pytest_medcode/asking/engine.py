"""Asks the coders: a bounded, adaptive number of calls in flight, retries, a global rate limit.

One event loop runs in a background thread. Each call pairs a question with the model that answers it
(:class:`Call`): the question is all the coder sees, the model name routes it. A batch streams: a
fixed pool of workers pulls the next call as soon as one finishes, so a slow call never holds back the rest (no batch
barriers). Failed calls are retried with exponential backoff and jitter, honouring ``Retry-After``; repeated
429s halve the number of calls in flight, successes win it back.

What ends a call, by the kind of its failure (:func:`kind_of`):

- a **rate limit** (a 429 that is not an exhausted quota, or any answer that says when to come back with
  ``Retry-After``) is waited out: it uses no attempt, only the call's wait budget (``max_wait``, 10 min by
  default), so a storm that passes within it never ends a case;
- a **transient** failure (a 5xx, a timeout, a dropped connection, a coder's own exception) is retried up to
  ``attempts`` attempts in all, within the same wait budget;
- a **setup** failure (a refused key, an unknown model, an exhausted quota, an unreachable endpoint) and a
  **final** one (this question's own: a 400, a 200 with no answer in it) are not retried, except a refused
  connection, retried like a transient failure.

Only an answer and a final failure are the case's outcome to keep in the response cache; a rate limit, a
transient or a setup failure that outlasted its retries is this run's outcome only, so a rerun asks again.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from pytest_medcode.asking.budget import Budget
from pytest_medcode.asking.coders import CallFailed, Coder, Question, Reply
from pytest_medcode.asking.progress import Progress

_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 30.0
DEFAULT_MAX_WAIT_S = 600.0  # --medcode-max-wait: the waits between the attempts of one call add up to this

RATE_LIMIT, TRANSIENT, SETUP, FINAL = "rate limit", "transient", "setup", "final"
#: Keys of an outcome's ``usage`` that carry the coder's confidence (0–1) and abstention: they travel with the
#: usage through the response cache, the batch output and the xdist spill, and the record reads them. A reply
#: without them adds nothing, so the usage of a coder that gives no confidence is what it always was.
CONFIDENCE, ABSTAINED = "confidence", "abstained"
#: In ``usage``: the coder gave a confidence that is no probability (outside [0, 1], NaN); its text, for the
#: warning that names the coder. The case is recorded as no confidence.
CONFIDENCE_INVALID = "confidence_invalid"
#: In ``usage``: a document answer's confidence per code, ``{code as written: probability}`` (api.Reply's
#: ``code_confidences``; an LLM's from the log-probabilities of each code's tokens). Only values in [0, 1] are
#: kept; the first that is not is noted as :data:`CONFIDENCE_INVALID`.
CODE_CONFIDENCES = "code_confidences"
_SURROGATE = re.compile("[\ud800-\udfff]")
T = TypeVar("T")


class Call(NamedTuple):
    """One question for one model: the engine routes by ``model`` and hands the coder ``question`` alone."""

    model: str
    question: Question


@dataclass
class Outcome:
    """What became of one call: the answer text, or the error after the last attempt."""

    text: str | None
    error: str | None
    latency_s: float
    attempts: int
    usage: dict[str, Any] = field(default_factory=dict)
    cached: bool | None = None  # None: a coder whose answers are not cached (lookup)
    chars: int | None = None  # the answer's true length when ``text`` was cut (cache.ANSWER_LIMIT)
    #: False: not the question's answer to keep (a rate limit or a failure a retry may fix, a failed setup,
    #: a call never made): this run's outcome only, so a rerun asks the question again.
    keep: bool = True
    #: The failure is the setup's (key, model, quota, endpoint): the preflight stops the run on it.
    setup: bool = False


def kind_of(exc: CallFailed) -> str:
    """How a failed attempt is handled: RATE_LIMIT, TRANSIENT, SETUP or FINAL (see the module's docstring)."""
    if exc.setup:
        return SETUP
    if not exc.retryable:
        return FINAL
    if _rate_limited(str(exc)) or exc.retry_after is not None:
        return RATE_LIMIT
    return TRANSIENT


def _rate_limited(error: str) -> bool:
    return "429" in error or "RateLimit" in error  # both coders' wording of a 429


class _Limiter:
    """Calls in flight, with a ceiling that 429s lower and successes raise again (AIMD)."""

    def __init__(self, ceiling: int, progress: Progress) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self.in_flight = 0
        self._ok_streak = 0
        self.epoch = 0  # bumped by each cut: a burst of 429s cuts once, as TCP cuts once per window
        self._cond = asyncio.Condition()
        self._progress = progress
        progress.limit = ceiling

    async def __aenter__(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def throttle(self, since: int) -> None:
        """Halve the limit for a 429 to a call started at ``since``; the 429s of calls already in
        flight at the last cut are the same burst and cut nothing more (else 32 -> 1 at once)."""
        if since != self.epoch:
            return
        self.epoch += 1
        self._ok_streak = 0
        self.limit = max(1, self.limit // 2)
        self._progress.throttled += 1
        self._progress.limit = self.limit

    def success(self) -> None:
        """One more call in flight per window of successes (``limit`` of them since the last step), as
        TCP grows its window: a fixed run of N successes in a row never comes under a steady 429 rate."""
        if self.limit < self.ceiling:
            self._ok_streak += 1
            if self._ok_streak >= self.limit:
                self._ok_streak = 0
                self.limit += 1
                self._progress.limit = self.limit


class _RateLimit:
    """At most ``rpm`` call starts per minute for the whole process (the only one that calls)."""

    def __init__(self, rpm: float | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


class CircuitBreaker:
    """Stops asking a model that failed ``limit`` times in a row with the same setup failure (a refused key,
    an unknown model, an exhausted quota, an endpoint that refuses connections): the rest of its cases end at
    once with that reason instead of each paying a retry loop. Only setup failures count: a rate limit, a 5xx
    or a timeout that outlasted its retries is not one (the next call may well get through), nor is a
    question's own final failure (a 400); any outcome that does not count ends the streak."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tripped: dict[str, str] = {}  # model → the reason, shown on each case it stopped
        self._streak: dict[str, tuple[str, int]] = {}

    def record(self, model: str, outcome: Outcome, counts: bool) -> None:
        if not self.limit or model in self.tripped:
            return
        if outcome.error is None or not counts:
            self._streak.pop(model, None)
            return
        last, n = self._streak.get(model, ("", 0))
        n = n + 1 if outcome.error == last else 1
        self._streak[model] = (outcome.error, n)
        if n >= self.limit:
            self.tripped[model] = f"stopped asking {model} after {n} identical failures in a row: {outcome.error}"

    def refuse(self, model: str) -> Outcome | None:
        reason = self.tripped.get(model)
        return None if reason is None else Outcome(None, f"not asked: {reason}", 0.0, 0, keep=False)


class QueryEngine:
    def __init__(
        self,
        coders: dict[str, Coder],
        concurrency: int,
        attempts: int,
        timeout: float,
        rpm: float | None = None,
        breaker: int = 0,
        max_wait: float = DEFAULT_MAX_WAIT_S,
    ) -> None:
        self._coders = coders
        self._concurrency = concurrency
        self._attempts = attempts
        self._timeout = timeout
        self._max_wait = max_wait
        self._rpm = rpm
        self.breaker = CircuitBreaker(breaker)
        self.budget: Budget | None = None  # --medcode-max-cost: no call starts that could pass it
        self._rng = random.Random()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="medcode-queries", daemon=True)
        self._thread.start()
        self.progress = Progress()
        self._limiter: _Limiter | None = None
        self._rate: _RateLimit | None = None

    # -- public, called from the pytest thread -------------------------------------------------
    def run_batch(
        self,
        calls: Sequence[Call],
        on_result: Callable[[int, Outcome], None],
        progress: Progress | None = None,
    ) -> None:
        """Ask every call, streaming; ``on_result(index, outcome)`` runs (in the engine thread) as each
        one finishes, so answers can be stored the moment they arrive. Blocks until all are done."""
        if progress is not None:
            self.progress = progress
        fut = asyncio.run_coroutine_threadsafe(self._batch(calls, on_result), self._loop)
        try:
            fut.result()
        except BaseException:
            fut.cancel()
            raise

    def ask(self, model: str, question: Question) -> Outcome:
        """One question to one model, outside a batch (coders that are not cached, a late case, a preflight
        probe)."""
        return asyncio.run_coroutine_threadsafe(self._ask_one(Call(model, question)), self._loop).result()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """A coder's own coroutine on the engine's loop (where its clients live), e.g. a router's deployment check."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # -- engine thread ----------------------------------------------------------------------------
    def _controls(self) -> tuple[_Limiter, _RateLimit]:
        if self._limiter is None or self._rate is None:
            self._limiter = _Limiter(self._concurrency, self.progress)
            self._rate = _RateLimit(self._rpm)
        return self._limiter, self._rate

    async def _batch(self, calls: Sequence[Call], on_result: Callable[[int, Outcome], None]) -> None:
        self._limiter = None
        limiter, _ = self._controls()
        queue = deque(enumerate(calls))

        async def worker() -> None:
            while queue:
                index, call = queue.popleft()
                outcome = await self._ask_one(call)
                try:
                    on_result(index, outcome)
                except BaseException:
                    queue.clear()  # stop asking at once; calls already in flight finish and are handed over
                    raise
                self.progress.done += 1
                if outcome.error is not None:
                    self.progress.errors += 1

        workers = [asyncio.ensure_future(worker()) for _ in range(min(limiter.ceiling, len(calls)))]
        try:
            ended = await asyncio.gather(*workers, return_exceptions=True)
        finally:
            for w in workers:
                w.cancel()
        for end in ended:
            if isinstance(end, BaseException):
                raise end

    async def _ask_one(self, call: Call) -> Outcome:
        model = call.model
        refused = self.breaker.refuse(model)
        if refused is not None:
            return refused
        held = 0.0
        if self.budget is not None:
            held, why = await self.budget.reserve(model, call.question)
            if why is not None:  # never asked: not an answer to keep, a rerun with more budget asks it
                return Outcome(None, why, 0.0, 0, keep=False)
        outcome, counts = await self._attempt_all(call.question, self._coders[model])
        if self.budget is not None:
            await self.budget.settle(model, held, outcome.usage)
        self.breaker.record(model, outcome, counts)
        return outcome

    async def _attempt_all(self, question: Question, coder: Coder) -> tuple[Outcome, bool]:
        """The outcome after the last attempt, and whether it is a failure the circuit breaker counts.

        Attempts go on while the failure is one another attempt may fix: a rate limit for as long as the
        waits add up to no more than ``max_wait``; any other for ``attempts`` attempts, within the same waits."""
        limiter, rate = self._controls()
        start = time.perf_counter()
        waited = 0.0
        failed = 0  # attempts that failed for another reason than a rate limit
        attempt = 0
        while True:
            attempt += 1
            async with limiter:
                epoch = limiter.epoch
                await rate.wait()
                try:
                    reply = await asyncio.wait_for(coder.answer(question), timeout=self._timeout + 5.0)
                    limiter.success()
                    return Outcome(_valid_text(reply.text), None, time.perf_counter() - start, attempt,
                                   confidence_usage(reply)), False
                except CallFailed as exc:
                    failure = exc
                except TimeoutError:
                    failure = CallFailed(f"timed out after {self._timeout + 5.0:g} s with no answer")
                except Exception as exc:  # a coder's own bug: keep the run alive, report it on the case
                    failure = CallFailed(f"{exc.__class__.__name__}: {exc}")
            kind, error = kind_of(failure), str(failure)
            if kind == RATE_LIMIT and _rate_limited(error):
                limiter.throttle(epoch)
            if kind == FINAL:  # this question's own failure: the case's outcome, kept
                return Outcome(None, error, time.perf_counter() - start, attempt, failure.usage), False
            if kind == SETUP and not failure.retryable:
                return Outcome(None, error, time.perf_counter() - start, attempt, failure.usage, keep=False,
                               setup=True), True
            failed += kind != RATE_LIMIT
            backoff = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)) * (0.5 + self._rng.random() / 2)
            delay = min(max(failure.retry_after or 0.0, backoff), self._max_wait - waited)
            if failed >= self._attempts or delay <= 0:
                if kind == RATE_LIMIT:
                    error += f" (still rate limited after waiting {self._max_wait:g} s, --medcode-max-wait)"
                return Outcome(None, error, time.perf_counter() - start, attempt, failure.usage, keep=False,
                               setup=kind == SETUP), kind == SETUP
            self.progress.retries += 1
            if kind == RATE_LIMIT:  # shown on the progress line while it lasts
                self.progress.rate_limited_until = max(self.progress.rate_limited_until, time.monotonic() + delay)
            waited += delay
            await asyncio.sleep(delay)


def confidence_usage(reply: Reply) -> dict[str, Any]:
    """The reply's usage with its confidence, per-code confidences and abstention beside it (only when given); a
    confidence that is not a number in [0, 1] is dropped and noted (:data:`CONFIDENCE_INVALID`)."""
    value = getattr(reply, "confidence", None)
    abstained = getattr(reply, "abstained", False)
    per_code = getattr(reply, "code_confidences", None)
    if value is None and not abstained and per_code is None:
        return reply.usage
    usage = dict(reply.usage)
    if abstained:
        usage[ABSTAINED] = True
    if value is not None:
        if _probability(value):
            usage[CONFIDENCE] = float(value)
        else:
            usage[CONFIDENCE_INVALID] = repr(value)[:40]
    if per_code is not None:
        kept, bad = _code_confidences(per_code)
        usage[CODE_CONFIDENCES] = kept
        if bad is not None:
            usage.setdefault(CONFIDENCE_INVALID, bad)
    return usage


def _probability(value: object) -> bool:
    """A number in [0, 1] (not a bool, not NaN)."""
    return (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            and 0.0 <= value <= 1.0)


def _code_confidences(given: object) -> tuple[dict[str, float], str | None]:
    """The per-code confidences that are probabilities of a code named as text, and the first that is not."""
    if not isinstance(given, Mapping):
        return {}, repr(given)[:40]
    kept: dict[str, float] = {}
    bad: str | None = None
    for code, value in given.items():
        if isinstance(code, str) and _probability(value):
            kept[code] = float(value)
        elif bad is None:
            bad = repr(value)[:40] if isinstance(code, str) else f"{code!r}: {value!r}"[:40]
    return kept, bad


def _valid_text(text: str) -> str:
    """The answer as storable text: a lone surrogate (JSON allows ``"\\ud800"``) becomes U+FFFD, as no
    UTF-8 writer (SQLite, Parquet, JUnit XML) can take one and a model's answer must not stop the run."""
    if isinstance(text, str) and _SURROGATE.search(text):
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
