"""Fault injection at scale: 2,000 cases against a real local server that misbehaves at seeded rates.

The server answers 10 % of calls with 429 and ``Retry-After``, 5 % with 500, holds 5 % until the
client gives up, sends 2 % malformed (truncated) bodies and drops 1 % of connections with a reset,
while answering the rest correctly, wrongly or with no code. What a paying user needs to hold:
every case ends scored or ``error``; every answer the client received is in the cache; no key that
was answered is asked again; the summary's counts add up; failed calls are never wrong codes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import BENCHMARK
from pytest_medcode.asking.coders import CallFailed, Question, Reply
from pytest_medcode.asking.engine import Call, QueryEngine
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.faults import FaultPlan, RateLimitStorm
from pytest_medcode.testing.responders import Request, degrade, mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OUTCOMES = {"correct", "incorrect", "no_code", "error"}


def spread_codes(n: int, stride: int = 37) -> list[tuple[str, str]]:
    """``n`` ICD-10-CM billable codes spread over the whole table (descriptions are unique)."""
    return load_system("icd10cm").billable_codes()[::stride][:n]


def setup_run(pytester: pytest.Pytester, codes: list[tuple[str, str]], server: ScriptedServer) -> list[str]:
    pytester.makepyfile(test_code_query=BENCHMARK)
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
    return ["--medcode-system", "icd10cm", "--medcode-codes", str(path), "--medcode-sample", "all",
            "--medcode-no-similarity", "-p", "no:cacheprovider", "--medcode-cache", str(cache_file(pytester)),
            "--model", "openai/m", "--medcode-api-base", server.base_url]


def cache_file(pytester: pytest.Pytester) -> Path:
    return pytester.path / "cache" / "responses.sqlite3"


def stored_rows(pytester: pytest.Pytester) -> tuple[int, int]:
    """(answers, errors) in the response cache."""
    with sqlite3.connect(cache_file(pytester)) as db:
        answers, errors = db.execute("SELECT sum(text IS NOT NULL), sum(text IS NULL) FROM responses").fetchone()
    return answers or 0, errors or 0


def run_folder(pytester: pytest.Pytester) -> tuple[list[dict], dict]:
    latest = pytester.path / "reports" / "latest"
    records = pq.read_table(latest / "cases.parquet").to_pylist()
    return records, json.loads((latest / "summary.json").read_text())


def assert_counts_add_up(records: list[dict], summary: dict) -> None:
    """The summary's numbers against the per-case rows, exactly."""
    outcomes = Counter(r["outcome"] for r in records)
    assert set(outcomes) <= OUTCOMES, outcomes
    (row,) = summary["results"]
    assert row["n"] == len(records) == summary["n_cases"]
    assert row["n"] == row["answered"] + row["errors"]
    assert row["errors"] == outcomes["error"]
    assert (row["correct"], row["no_code"]) == (outcomes["correct"], outcomes["no_code"])
    assert row["correct"] + outcomes["incorrect"] + row["no_code"] == row["answered"]
    # Rates are over answered cases only: an outage is not a wrong code.
    assert row["exact_match"]["value"] == pytest.approx(row["correct"] / row["answered"])
    queries = summary["queries"]
    assert queries["asked"] + queries["cache_hits"] == row["n"]
    assert queries["errors"] == row["errors"]
    for r in records:
        if r["outcome"] == "error":
            assert r["error"] and r["raw_answer"] is None
            assert r["exact_match"] is None and r["valid"] is None and r["fabricated"] is None
            assert r["predicted_code"] is None and r["digit_match"] is None
        else:
            assert r["error"] is None and r["raw_answer"] is not None
            assert r["exact_match"] is (r["outcome"] == "correct")


#: Enough cases for every seeded fault kind to happen many times (the lower bounds below are ~60 % of the
#: expected counts), few enough that the timeouts' waits stay short.
N_FAULTED = 600


def test_600_cases_under_seeded_faults_lose_nothing_and_ask_nothing_twice(pytester: pytest.Pytester) -> None:
    codes = spread_codes(N_FAULTED)
    unknown = {d for _, d in codes[:20]}  # the model answers these with no code at all
    doomed = {d for _, d in codes[20:40]}  # these fail on every attempt: exhausted retries -> error
    mapping = {d: c for c, d in codes if d not in unknown}
    responder = degrade(mapping_responder(mapping, default="I cannot tell."), 0.05, seed=3)  # 5 % wrong codes
    faults = FaultPlan(rate_429=0.10, retry_after=0.05, rate_500=0.05, rate_timeout=0.05, timeout_s=float("inf"),
                       rate_malformed=0.02, rate_reset=0.01, seed=2024, max_faults_per_key=2,
                       always_fail=lambda request: request.description in doomed)
    with ScriptedServer(responder, faults=faults) as server:
        result = pytester.runpytest(
            *setup_run(pytester, codes, server), "-n", "2", "--medcode-timeout", "2.5", "--medcode-attempts", "3",
            "--medcode-concurrency", "32")
        stats = server.stats

    records, summary = run_folder(pytester)
    assert len(records) == N_FAULTED
    outcomes = Counter(r["outcome"] for r in records)
    assert outcomes["error"] == len(doomed)
    assert {r["description"] for r in records if r["outcome"] == "error"} == doomed
    assert outcomes["no_code"] == len(unknown)
    assert outcomes["incorrect"] > 25  # the degraded share really is scored as wrong codes
    result.assert_outcomes(passed=outcomes["correct"], failed=N_FAULTED - outcomes["correct"])

    # The faults really happened, at about the seeded rates (floors as shares of the cases: 10 % 429s are at
    # least 7.5 % of them, and so on).
    for kind, share in (("429", 0.075), ("500", 0.035), ("timeout", 0.035), ("malformed", 0.01), ("reset", 0.004)):
        assert stats.faults[kind] >= int(share * N_FAULTED), stats.faults
    # No successful answer lost (every key the server answered is in the cache) and none asked twice.
    assert stats.duplicate_successes() == {}
    answers, errors = stored_rows(pytester)
    assert len(stats.successes_per_key) == answers == N_FAULTED - len(doomed)
    assert errors == 0  # exhausted 500s are this run's outcome, never kept: the next run asks them again
    assert_counts_add_up(records, summary)
    queries = summary["queries"]
    assert queries["asked"] == N_FAULTED and queries["cache_hits"] == 0
    # Every request the server saw is a first attempt or a retry the records account for.
    assert stats.total_requests == sum(r["attempts"] for r in records)
    assert queries["retries"] == stats.total_requests - N_FAULTED
    assert queries["phase_s"] is not None  # the asking worker's timing reaches the controller's summary


@dataclass(frozen=True)
class DoomedByKind(FaultPlan):
    """The seeded plan, plus descriptions that fail on every attempt with a fault of their own kind."""

    doomed: Mapping[str, str] = field(default_factory=dict)  # description -> FAULT_KINDS member

    def for_request(self, request: Request) -> str | None:
        kind = self.doomed.get(request.description or "")
        return kind if kind is not None else super().for_request(request)


def test_exhausted_retries_of_every_fault_kind_end_as_errors_not_wrong_codes(pytester: pytest.Pytester) -> None:
    codes = spread_codes(100, stride=601)
    kinds = ("429", "500", "timeout", "malformed", "reset")
    doomed = {d: kinds[i % len(kinds)] for i, (_, d) in enumerate(codes[:25])}
    faults = DoomedByKind(rate_429=0.05, retry_after=0.05, rate_500=0.05, seed=5, max_faults_per_key=1,
                          timeout_s=float("inf"), doomed=doomed)
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), faults=faults) as server:
        result = pytester.runpytest(
            *setup_run(pytester, codes, server), "--medcode-timeout", "0.5", "--medcode-attempts", "2",
            "--medcode-max-wait", "1")
        stats = server.stats
    result.assert_outcomes(passed=75, failed=25)
    result.stdout.fnmatch_lines(["*model call failed after 2 attempt(s)*"])
    records, summary = run_folder(pytester)
    errors = {r["description"]: r for r in records if r["outcome"] == "error"}
    assert set(errors) == set(doomed)
    for description, kind in doomed.items():  # a 429 uses no attempt: it ends when the waits reach 1 s
        assert errors[description]["attempts"] == 2 if kind != "429" else errors[description]["attempts"] > 2
    wording = {"429": "429", "500": "500", "timeout": "Timeout", "malformed": "malformed", "reset": "Connection"}
    for description, kind in doomed.items():
        assert wording[kind] in errors[description]["error"], (kind, errors[description]["error"])
    assert stats.duplicate_successes() == {}
    assert_counts_add_up(records, summary)
    (row,) = summary["results"]
    assert (row["answered"], row["errors"], row["correct"]) == (75, 25, 75)
    assert row["exact_match"]["value"] == 1.0  # 25 failed calls, and still no wrong code


def test_a_burst_of_429s_halves_the_calls_in_flight_once_and_successes_win_them_back() -> None:
    """32 calls in flight all get a 429: one cut (32 -> 16), not five (32 -> 1); then it recovers."""

    class Coder:
        name = "m"
        cacheable = True

        def __init__(self) -> None:
            self.seen: Counter[int] = Counter()

        async def answer(self, question: Question) -> Reply:
            self.seen[question.repeat] += 1
            await asyncio.sleep(0.01)
            if self.seen[question.repeat] == 1 and question.repeat < 32:  # the first wave, all in flight together
                raise CallFailed("HTTP 429 RateLimitError", True, 0.01)
            return Reply("Code: A00.0")

    engine = QueryEngine({"m": Coder()}, concurrency=32, attempts=3, timeout=5)
    calls = [Call("m", Question("icd10cm", "Cholera", (("user", "q"),), 0.2, 50, repeat=i)) for i in range(800)]
    limits: list[int] = []
    try:
        engine.run_batch(calls, lambda index, outcome: limits.append(engine.progress.limit))
    finally:
        engine.close()
    assert engine.progress.throttled == 1
    assert min(limits) == 16
    assert limits[-1] == 32  # recovered


def test_a_rate_limit_storm_is_waited_out_and_shown(pytester: pytest.Pytester) -> None:
    """Every call answered 429 (Retry-After: 1) for 2 s, at the default 3 attempts: no case ends on it. The
    preflight's wait is on the progress line; every case is answered and kept, so a rerun asks nothing."""
    codes = spread_codes(20, stride=997)
    with ScriptedServer(mapping_responder({d: c for c, d in codes})) as server:
        server.storm = RateLimitStorm(2.0, retry_after=1.0)
        args = setup_run(pytester, codes, server)
        result = pytester.runpytest(*args)
        result.assert_outcomes(passed=20)
        assert server.stats.faults["storm_429"] >= 2
        result.stdout.fnmatch_lines(["medcode: checking openai/m before the first case · rate limited by the "
                                     "endpoint, waiting 1 s; * retries so far",
                                     "model calls: 20 asked*, 0 from the cache, * retries, 0 failed"])
        before = server.stats.total_requests
        again = pytester.runpytest(*args)
        again.assert_outcomes(passed=20)
        assert server.stats.total_requests == before
    again.stdout.fnmatch_lines(["model calls: 0 asked, 20 from the cache, 0 retries, 0 failed"])


def test_a_storm_longer_than_the_max_wait_ends_this_run_only(pytester: pytest.Pytester) -> None:
    """Rate limited for longer than --medcode-max-wait: the cases end as errors that name the option, none is
    kept, and once the storm is over a plain rerun asks every one of them and they pass."""
    codes = spread_codes(12, stride=1499)
    with ScriptedServer(mapping_responder({d: c for c, d in codes})) as server:
        server.storm = RateLimitStorm(600.0, retry_after=0.3)
        args = [*setup_run(pytester, codes, server), "--medcode-no-preflight"]
        result = pytester.runpytest(*args, "--medcode-max-wait", "1")
        result.assert_outcomes(failed=12)
        result.stdout.fnmatch_lines(["medcode: 0/12 answered*rate limited by the endpoint, waiting * s",
                                     "*still rate limited after waiting 1 s, --medcode-max-wait*"])
        assert stored_rows(pytester) == (0, 0)
        server.storm = None
        again = pytester.runpytest(*args)
        again.assert_outcomes(passed=12)
    again.stdout.fnmatch_lines(["model calls: 12 asked*, 0 from the cache, 0 retries, 0 failed"])
