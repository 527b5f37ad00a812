"""How slow the scripted server is and when it fails: latency functions and ``FaultPlan``.

Both are pure functions of the request key, the attempt number and a seed, so a retry or timeout
test that fails can be replayed exactly.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from statistics import NormalDist
from typing import Any

from pytest_medcode.testing.responders import Request, _unit

__all__ = ["FAULT_KINDS", "FaultPlan", "LatencyFn", "RateLimitStorm", "fixed_latency", "lognormal_latency"]

#: Every fault a ``FaultPlan`` can inject, in the order their rates are stacked on [0, 1). "no_choices" is a
#: 200 whose completion has usage but no ``choices`` (billed, yet no answer).
FAULT_KINDS: tuple[str, ...] = ("429", "500", "timeout", "malformed", "reset", "no_choices")

LatencyFn = Callable[[Request], float]


def fixed_latency(seconds: float) -> LatencyFn:
    """Every answer takes ``seconds``."""
    if seconds < 0:
        raise ValueError("latency must be >= 0")
    return lambda request: seconds


def lognormal_latency(
    median: float = 0.3, p95: float = 2.0, seed: int = 0, *, cap: float | None = None
) -> LatencyFn:
    """Heavy-tailed latency like a real LLM API, deterministic per (request key, seed).

    Parametrised by the median and 95th percentile because those are what API dashboards show.
    """
    if not 0 < median <= p95:
        raise ValueError("need 0 < median <= p95")
    sigma = math.log(p95 / median) / NormalDist().inv_cdf(0.95)
    mu = math.log(median)
    eps = 1e-12

    def latency(request: Request) -> float:
        u = min(max(_unit("latency", seed, request.key), eps), 1 - eps)
        value = math.exp(mu + sigma * NormalDist().inv_cdf(u))
        return value if cap is None else min(value, cap)

    return latency


@dataclass(frozen=True)
class FaultPlan:
    """Seeded fault injection; the decision is a pure function of (key, attempt, seed).

    Rates are stacked on [0, 1) in ``FAULT_KINDS`` order, so they must sum to <= 1. A key gets at
    most ``max_faults_per_key`` faults (None: unlimited), so a client with that many retries always
    gets through; keys in ``always_fail_keys`` or matching ``always_fail`` fail on every attempt
    with ``always_fail_kind``, to test exhausted retries. A "timeout" holds the answer for
    ``timeout_s`` (``math.inf``: until the client hangs up) and answers late if the client waited.
    """

    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    timeout_s: float = 30.0
    rate_malformed: float = 0.0
    rate_reset: float = 0.0
    rate_no_choices: float = 0.0
    seed: int = 0
    max_faults_per_key: int | None = 2
    always_fail_keys: frozenset[str] = frozenset()
    always_fail: Callable[[Request], bool] | None = None
    always_fail_kind: str = "500"

    def __post_init__(self) -> None:
        object.__setattr__(self, "always_fail_keys", frozenset(self.always_fail_keys))
        rates = self.rates()
        if any(not 0.0 <= r <= 1.0 for r in rates.values()):
            raise ValueError(f"fault rates must be in [0, 1]: {rates}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to more than 1: {rates}")
        if self.always_fail_kind not in FAULT_KINDS:
            raise ValueError(f"always_fail_kind must be one of {FAULT_KINDS}")
        if self.max_faults_per_key is not None and self.max_faults_per_key < 0:
            raise ValueError("max_faults_per_key must be >= 0 or None")

    def rates(self) -> dict[str, float]:
        """Rate of each kind, keyed like ``FAULT_KINDS``."""
        return {
            "429": self.rate_429,
            "500": self.rate_500,
            "timeout": self.rate_timeout,
            "malformed": self.rate_malformed,
            "reset": self.rate_reset,
            "no_choices": self.rate_no_choices,
        }

    def raw_fault(self, key: str, attempt: int) -> str | None:
        """The fault drawn for (key, attempt) before the per-key cap is applied."""
        u = _unit("fault", self.seed, key, attempt)
        acc = 0.0
        for kind, rate in self.rates().items():
            acc += rate
            if u < acc:
                return kind
        return None

    def decide(self, key: str, attempt: int) -> str | None:
        """The fault (a ``FAULT_KINDS`` member) for this attempt at ``key``, or None to answer."""
        if key in self.always_fail_keys:
            return self.always_fail_kind
        fault = self.raw_fault(key, attempt)
        if fault is None or self.max_faults_per_key is None:
            return fault
        earlier = sum(1 for a in range(attempt) if self.raw_fault(key, a) is not None)
        return fault if earlier < self.max_faults_per_key else None

    def for_request(self, request: Request) -> str | None:
        """``decide`` plus the ``always_fail`` predicate, which needs the whole request."""
        if self.always_fail is not None and self.always_fail(request):
            return self.always_fail_kind
        return self.decide(request.key, request.attempt)

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse the CLI form ``rate_429=0.1,retry_after=1,seed=3,always_fail_keys=k1|k2``."""
        kwargs: dict[str, Any] = {}
        known = {f.name for f in fields(cls)} - {"always_fail"}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in known:
                raise ValueError(f"bad fault spec item {item!r}; known names: {sorted(known)}")
            value = value.strip()
            if name == "always_fail_keys":
                kwargs[name] = frozenset(filter(None, value.split("|")))
            elif name == "always_fail_kind":
                kwargs[name] = value
            elif name == "max_faults_per_key":
                kwargs[name] = None if value.lower() in ("none", "") else int(value)
            elif name == "seed":
                kwargs[name] = int(value)
            else:
                kwargs[name] = float(value)
        return cls(**kwargs)


@dataclass
class RateLimitStorm:
    """Every chat request answers 429 for ``seconds`` from the first one it sees, then the storm is over.

    What a provider does under load, and what no fixed number of attempts survives: the only way through is
    to wait, as ``Retry-After`` says. The header is ``retry_after`` seconds, or the HTTP-date that many
    seconds ahead when ``http_date`` is set (both forms are in RFC 9110). Time-based, unlike ``FaultPlan``:
    a storm is a period, not a property of a request.
    """

    seconds: float
    retry_after: float = 1.0
    http_date: bool = False
    started: float | None = None  # monotonic; set by the first request
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def active(self) -> bool:
        """True while the storm lasts (the first call starts it)."""
        now = time.monotonic()
        with self._lock:
            if self.started is None:
                self.started = now
            return now - self.started < self.seconds

    def header(self) -> str:
        if self.http_date:
            return email.utils.formatdate(time.time() + self.retry_after, usegmt=True)
        return str(int(self.retry_after)) if float(self.retry_after).is_integer() else f"{self.retry_after:g}"
