"""What a run's model calls were (pytest_medcode.results.queries): cache hits, calls asked, retries, failed
calls and their reasons, counted from the records by hand."""

from __future__ import annotations

from typing import Any

from pytest_medcode.results.queries import failure_reasons, query_stats


def record(model: str = "openai/m", cache_hit: bool | None = False, attempts: int | None = 1,
           outcome: str = "correct", error: str | None = None) -> dict[str, Any]:
    return {"model": model, "cache_hit": cache_hit, "attempts": attempts, "outcome": outcome, "error": error}


def test_calls_are_counted_from_the_cached_coders_records() -> None:
    records = [
        record(cache_hit=True, attempts=None),  # answered from the cache: no call
        record(cache_hit=True, attempts=None),
        record(attempts=1),
        record(attempts=3, outcome="incorrect"),  # two retries, then an answer
        record(attempts=4, outcome="error", error="HTTP 500"),  # three retries, then a failed call
        record(attempts=0, outcome="error", error="circuit breaker open"),  # never asked
        record(attempts=None, outcome="error", error="circuit breaker open"),
        record(model="lookup", cache_hit=None, attempts=None),  # not a cached coder: not counted
        record(model="lookup", cache_hit=None, attempts=None, outcome="error", error="bad table"),
    ]
    stats = query_stats(records, "/tmp/cache.sqlite", 1.5)
    assert {k: v for k, v in stats.items() if k != "failures"} == {
        "cache": "/tmp/cache.sqlite", "cache_hits": 2, "asked": 3, "not_asked": 2, "retries": 2 + 3, "errors": 3,
        "phase_s": 1.5,
    }
    assert stats["failures"] == {"openai/m": [["circuit breaker open", 2], ["HTTP 500", 1]],
                                 "lookup": [["bad table", 1]]}


def test_no_cached_coder_counts_nothing() -> None:
    stats = query_stats([record(model="lookup", cache_hit=None)], None, None)
    counts = ("cache_hits", "asked", "not_asked", "retries", "errors")
    assert [stats[k] for k in counts] == [0, 0, 0, 0, 0]
    assert stats["cache"] is None and stats["failures"] == {}


def test_failure_reasons_are_the_most_frequent_per_model_an_unnamed_one_said_so() -> None:
    errors = ["timeout"] * 3 + ["HTTP 429"] * 2 + ["HTTP 500", "refused", None, None, None, None]
    records = [record(outcome="error", error=e) for e in errors]
    records += [record(model="b", outcome="error", error="timeout"), record(model="b", outcome="incorrect")]
    reasons = failure_reasons(records)
    assert reasons == {"openai/m": [["unknown error", 4], ["timeout", 3], ["HTTP 429", 2]], "b": [["timeout", 1]]}
    assert failure_reasons(records, top=1)["openai/m"] == [["unknown error", 4]]
    assert failure_reasons([record(outcome="incorrect", error="ignored: not a failed call")]) == {}
