"""What the scripted server counts, kept apart so tests can read the counters' meaning in one place."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ServerStats", "token_hash"]


def token_hash(token: str) -> str:
    """SHA-256 hex of a bearer token: lets tests check which key was sent without storing secrets."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class ServerStats:
    """Counters a test asserts on; the server hands out copies so readers never race writers."""

    total_requests: int = 0
    requests_per_key: Counter[str] = field(default_factory=Counter)
    successes_per_key: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    faults_per_key: Counter[str] = field(default_factory=Counter)
    status_counts: Counter[int] = field(default_factory=Counter)
    unauthorized: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    saw_keys: set[str] = field(default_factory=set)
    #: ``time.monotonic()`` at the arrival of each chat request, per key, in order: the gaps between a
    #: key's attempts show how long the client waited (Retry-After, backoff) before asking again.
    attempt_times: dict[str, list[float]] = field(default_factory=dict)
    #: Per model name as requested: [answers, prompt tokens, completion tokens] of the answers delivered, as
    #: their ``usage`` said — the bill a cost-accounting test checks the plugin's figures against.
    usage_per_model: dict[str, list[int]] = field(default_factory=dict)
    #: The same for the answers of batches (``/v1/batches``): billed at the provider's batch price.
    batch_usage_per_model: dict[str, list[int]] = field(default_factory=dict)

    def bill(self, billed: tuple[str, int, int] | None, undo: bool = False, batch: bool = False) -> None:
        if billed is None:
            return
        model, prompt, completion = billed
        sign = -1 if undo else 1
        row = (self.batch_usage_per_model if batch else self.usage_per_model).setdefault(model, [0, 0, 0])
        row[0] += sign
        row[1] += sign * prompt
        row[2] += sign * completion

    @property
    def successes(self) -> int:
        """Total successful answers delivered."""
        return sum(self.successes_per_key.values())

    def duplicate_successes(self) -> dict[str, int]:
        """Keys answered successfully more than once: the plugin must never re-ask an answered key."""
        return {key: n for key, n in self.successes_per_key.items() if n > 1}

    def copy(self) -> ServerStats:
        """Independent snapshot."""
        return ServerStats(
            total_requests=self.total_requests,
            requests_per_key=Counter(self.requests_per_key),
            successes_per_key=Counter(self.successes_per_key),
            faults=Counter(self.faults),
            faults_per_key=Counter(self.faults_per_key),
            status_counts=Counter(self.status_counts),
            unauthorized=self.unauthorized,
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
            saw_keys=set(self.saw_keys),
            attempt_times={k: list(v) for k, v in self.attempt_times.items()},
            usage_per_model={k: list(v) for k, v in self.usage_per_model.items()},
            batch_usage_per_model={k: list(v) for k, v in self.batch_usage_per_model.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, used by ``GET /_stats`` and ``--stats-file``."""
        return {
            "total_requests": self.total_requests,
            "successes": self.successes,
            "requests_per_key": dict(self.requests_per_key),
            "successes_per_key": dict(self.successes_per_key),
            "faults": dict(self.faults),
            "faults_per_key": dict(self.faults_per_key),
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "unauthorized": self.unauthorized,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "saw_keys": sorted(self.saw_keys),
            "duplicate_successes": self.duplicate_successes(),
            "attempt_times": {k: list(v) for k, v in self.attempt_times.items()},
            "usage_per_model": {k: list(v) for k, v in self.usage_per_model.items()},
            "batch_usage_per_model": {k: list(v) for k, v in self.batch_usage_per_model.items()},
        }
