"""The query engine end to end: the real litellm client against a real local server, real runs.

What is checked is what a paying user cares about: no key asked twice, a re-run asks nothing,
faults are retried, exhausted calls become ``error`` cases (not wrong codes), a killed run
resumes with only the rest, deselected cases are never asked, and no API key is written anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BENCHMARK
from helpers import cases_of
from pytest_medcode.asking.coders import CallFailed, Question, Reply
from pytest_medcode.asking.coders.litellm_coder import LiteLLMCoder
from pytest_medcode.asking.coders.openai_compat import OpenAICompatibleCoder
from pytest_medcode.asking.engine import (
    Call,
    CircuitBreaker,
    Outcome,
    Progress,
    QueryEngine,
    _Limiter,
    _RateLimit,
    _valid_text,
)
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.faults import FaultPlan, RateLimitStorm, fixed_latency
from pytest_medcode.testing.responders import mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def pairs(n: int, offset: int = 0) -> list[tuple[str, str]]:
    return load_system("icd10cm").billable_codes()[offset : offset + n]


def setup_run(pytester: pytest.Pytester, codes: list[tuple[str, str]]) -> list[str]:
    pytester.makepyfile(test_code_query=BENCHMARK)
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
    return ["--medcode-system", "icd10cm", "--medcode-codes", str(path), "-p", "no:cacheprovider",
            "--medcode-cache", str(pytester.path / "cache" / "responses.sqlite3")]


def args_for(server: ScriptedServer) -> list[str]:
    return ["--model", "openai/m", "--medcode-api-base", server.base_url]


def test_xdist_asks_each_key_once_and_a_rerun_asks_nothing(pytester: pytest.Pytester) -> None:
    codes = pairs(40)
    base = setup_run(pytester, codes)
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), latency=fixed_latency(0.02)) as server:
        result = pytester.runpytest(*base, *args_for(server), "-n", "2")
        result.assert_outcomes(passed=40)
        assert server.stats.total_requests == 40
        assert server.duplicate_successes() == {}
        result.stdout.fnmatch_lines(["*medcode: 40/40 answered (0 cached)*", "model calls: 40 asked*"])
        assert [r["cache_hit"] for r in cases_of(pytester)] == [False] * 40

        again = pytester.runpytest(*base, *args_for(server))
        again.assert_outcomes(passed=40)
        assert server.stats.total_requests == 40  # zero new calls
        again.stdout.fnmatch_lines(["model calls: 0 asked, 40 from the cache, 0 retries, 0 failed"])
        assert all(r["cache_hit"] for r in cases_of(pytester))


def test_deselected_cases_are_never_asked(pytester: pytest.Pytester) -> None:
    codes = pairs(10)
    base = setup_run(pytester, codes)
    with ScriptedServer(mapping_responder({d: c for c, d in codes})) as server:
        result = pytester.runpytest(*base, *args_for(server), "-k", codes[3][0])
        result.assert_outcomes(passed=1, deselected=9)
        assert server.stats.total_requests == 1


def test_faults_are_retried_and_exhausted_calls_are_errors_not_wrong_codes(pytester: pytest.Pytester) -> None:
    codes = pairs(60, offset=100)
    base = setup_run(pytester, codes)
    doomed = {d for _, d in codes[:3]}
    faults = FaultPlan(rate_429=0.15, retry_after=0.05, rate_500=0.1, rate_malformed=0.05, rate_reset=0.05,
                       rate_timeout=0.03, timeout_s=3.0, seed=7, max_faults_per_key=2,
                       always_fail=lambda request: request.description in doomed)
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), faults=faults) as server:
        result = pytester.runpytest(*base, *args_for(server), "--medcode-timeout", "2",
                                               "--medcode-attempts", "3", "-n", "2")
        result.assert_outcomes(passed=57, failed=3)
        result.stdout.fnmatch_lines(["*model call failed after 3 attempt(s)*"])
        stats = server.stats
        assert sum(stats.faults.values()) > 10  # the faults really happened
        assert server.duplicate_successes() == {}
        records = cases_of(pytester)
        errors = [r for r in records if r["outcome"] == "error"]
        assert {r["description"] for r in errors} == doomed
        assert all(r["exact_match"] is None and r["predicted_code"] is None for r in errors)
        summary = json.loads((pytester.path / "reports" / "latest" / "summary.json").read_text())
        row = summary["results"][0]
        assert (row["n"], row["answered"], row["errors"], row["correct"]) == (60, 57, 3, 57)
        assert row["exact_match"]["value"] == 1.0  # errors are not in the denominator

        # 500s are not kept as the cases' outcomes: once the server is well, a plain re-run asks only those three.
        before = server.stats.total_requests
        server.faults = None
        pytester.runpytest(*base, *args_for(server)).assert_outcomes(passed=60)
        assert server.stats.total_requests == before + 3


def test_only_answers_and_final_failures_are_kept(pytester: pytest.Pytester) -> None:
    """A 500 on every attempt is not kept (a plain rerun asks it); a 200 with no answer in it is the question's
    final outcome, kept with its usage (a rerun does not pay for it again) until --medcode-retry-errors; a stored
    failure an earlier version kept without marking it final (a 429) is asked again with no flag."""
    codes = pairs(6, offset=700)
    base = setup_run(pytester, codes)
    db = pytester.path / "cache" / "responses.sqlite3"
    sick, empty = codes[0][1], codes[1][1]
    kinds = {sick: "500", empty: "no_choices"}

    class Plan(FaultPlan):
        def for_request(self, request):
            return kinds.get(request.description or "")

    args = [*base, "--medcode-attempts", "2", "--medcode-no-preflight", "--medcode-no-similarity"]
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), faults=Plan()) as server:
        first = pytester.runpytest(*args, *args_for(server))
        first.assert_outcomes(passed=4, failed=2)
        rows = {r["description"]: r for r in cases_of(pytester)}
        assert rows[sick]["error"].startswith("HTTP 500") and rows[sick]["attempts"] == 2
        assert rows[empty]["error"].startswith("malformed response: HTTP 200 with no answer")
        assert rows[empty]["attempts"] == 1 and rows[empty]["prompt_tokens"] > 0  # not retried; its usage counted
        with sqlite3.connect(db) as conn:
            stored = dict(conn.execute("SELECT error IS NULL, count(*) FROM responses GROUP BY 1").fetchall())
        assert stored == {1: 4, 0: 1}  # four answers and the final failure; not the 500

        kinds.pop(sick)
        before = server.stats.total_requests
        second = pytester.runpytest(*args, *args_for(server))
        second.assert_outcomes(passed=5, failed=1)
        assert server.stats.total_requests == before + 1  # the 500 asked again, the kept failure not

        kinds.clear()
        third = pytester.runpytest(*args, *args_for(server), "--medcode-retry-errors")
        third.assert_outcomes(passed=6)
        assert server.stats.total_requests == before + 2

        with sqlite3.connect(db) as conn:  # a row as an earlier version kept a 429: an error, not marked final
            conn.execute("UPDATE responses SET text = NULL, error = 'HTTP 429 RateLimitError: slow down', "
                         "usage = '{}' WHERE rowid = (SELECT min(rowid) FROM responses)")
        fourth = pytester.runpytest(*args, *args_for(server))
        fourth.assert_outcomes(passed=6)
        assert server.stats.total_requests == before + 3


def test_a_killed_run_resumes_asking_only_the_rest(pytester: pytest.Pytester) -> None:
    codes = pairs(80, offset=300)
    base = setup_run(pytester, codes)
    db = pytester.path / "cache" / "responses.sqlite3"
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), latency=fixed_latency(0.1)) as server:
        cmd = [sys.executable, "-m", "pytest", *base, *args_for(server), "--medcode-concurrency", "2"]
        proc = subprocess.Popen(cmd, cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        answered = 0
        while time.monotonic() < deadline and answered < 15:
            time.sleep(0.1)
            if db.exists():
                with contextlib.suppress(sqlite3.OperationalError):
                    answered = sqlite3.connect(db).execute("SELECT count(*) FROM responses").fetchone()[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stored = sqlite3.connect(db).execute("SELECT count(*) FROM responses").fetchone()[0]
        assert 15 <= stored < 80
        before = server.stats.total_requests
        result = pytester.runpytest(*base, *args_for(server))
        result.assert_outcomes(passed=80)
        assert server.stats.total_requests - before == 80 - stored


def test_no_api_key_is_written_anywhere(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-medcode-SECRET-4c1d"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    codes = pairs(5)
    base = setup_run(pytester, codes)
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), require_key=secret) as server:
        result = pytester.runpytest(*base, *args_for(server), "--junitxml", "junit.xml", "-rA")
        result.assert_outcomes(passed=5)
    written = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert any(p.name == "responses.sqlite3" for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in result.stdout.str() + result.stderr.str()


def test_progress_is_quiet_with_q(pytester: pytest.Pytester) -> None:
    codes = pairs(5)
    base = setup_run(pytester, codes)
    with ScriptedServer(mapping_responder({d: c for c, d in codes})) as server:
        result = pytester.runpytest(*base, *args_for(server), "-q")
    result.assert_outcomes(passed=5)
    assert "medcode: 5/5 answered" not in result.stdout.str()


def test_rate_limit_spaces_call_starts() -> None:
    async def starts() -> tuple[float, list[float]]:
        limit = _RateLimit(rpm=600)  # one start every 0.1 s
        begin = time.monotonic()
        out = []
        for _ in range(6):
            await limit.wait()
            out.append(time.monotonic())
        return begin, out

    begin, times = asyncio.run(starts())
    for k, t in enumerate(times):  # the k-th start never comes before k intervals have passed
        assert t - begin >= k * 0.1 - 0.005


def test_progress_line_reads_well() -> None:
    """Started 4 s ago, 4 of 10 done, 2 from the cache: 2 asked / 4 s = 0.5 call/s, 6 left -> ETA 12 s."""
    progress = Progress(total=10, done=4, cached=2, retries=1, errors=3, started=time.monotonic() - 4.0)
    assert progress.line() == "medcode: 4/10 answered (2 cached) · 0.5 calls/s · ETA 12s · 1 retries · 3 errors"
    # Just started: 2 calls in a few milliseconds is a high rate (not 2 calls over a floor of one second).
    fresh = Progress(total=10, done=2, started=time.monotonic()).line()
    assert float(fresh.split(" · ")[1].split()[0]) > 50
    progress.throttled, progress.limit = 1, 8
    assert progress.line().endswith("· 3 errors · throttled to 8 in flight")
    # Nothing asked yet (all cached), or nothing left: no ETA to give.
    assert "ETA -" in Progress(total=10, done=4, cached=4, started=time.monotonic() - 2.0).line()
    assert "ETA -" in Progress(total=4, done=4, cached=0, started=time.monotonic() - 2.0).line()
    progress.finished = progress.started + 1.23456
    assert progress.to_dict() == {"total": 10, "done": 4, "cached": 2, "retries": 1, "errors": 3, "throttled": 1,
                                  "elapsed_s": 1.235}


# -- retries: waits measured by the server's clock ------------------------------------------------

DIABETES = "Type 2 diabetes mellitus without complications"


class _FixedJitter(random.Random):
    """The engine's jitter draw fixed at ``value``: the wait is backoff x (0.5 + value / 2)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


class _NoJitter(random.Random):
    """The engine's jitter at its low end (factor 0.5), so each backoff is a known number of seconds."""

    def random(self) -> float:
        return 0.0


def ask_through_the_engine(server: ScriptedServer, attempts: int = 3, max_wait: float = 600.0,
                           coder: object | None = None) -> tuple[Outcome, list[float]]:
    """One case asked by the real engine and OpenAI client; the server's arrival times of its attempts."""
    coder = coder or OpenAICompatibleCoder("openai/m", server.base_url, timeout=5.0)
    engine = QueryEngine({"openai/m": coder}, concurrency=1, attempts=attempts, timeout=5.0,  # type: ignore[dict-item]
                         max_wait=max_wait)
    engine._rng = _NoJitter()
    question = Question("icd10cm", DIABETES, (("user", f"What is the ICD10CM code for <{DIABETES}>?"),), 0.2, 50)
    try:
        outcome = engine.ask("openai/m", question)
    finally:
        engine.close()
    (times,) = server.stats.attempt_times.values()
    return outcome, times


def test_retry_after_longer_than_the_backoff_is_honoured() -> None:
    """A 429 with Retry-After: 1 on the first attempt. The engine's own first backoff is 0.5 s x 0.5 = 0.25 s
    here, so only a client that honours the header waits a whole second before asking again."""
    plan = FaultPlan(rate_429=1.0, retry_after=1.0, max_faults_per_key=1)
    with ScriptedServer(mapping_responder({DIABETES: "E11.9"}), faults=plan) as server:
        outcome, times = ask_through_the_engine(server)
    assert (outcome.text, outcome.error, outcome.attempts) == ("Code: E11.9", None, 2)
    assert len(times) == 2
    assert times[1] - times[0] >= 1.0 - 0.002  # asyncio may wake up to a clock tick early


def test_retry_after_shorter_than_the_backoff_waits_the_exponential_backoff() -> None:
    """Two 429s with Retry-After: 0.01. The engine waits the longer of the two: its backoff, 0.5 s x 2**(k-1)
    times the jitter factor 0.5, i.e. 0.25 s then 0.5 s (not 0.01 s, and not the next step up)."""
    plan = FaultPlan(rate_429=1.0, retry_after=0.01, max_faults_per_key=2)
    with ScriptedServer(mapping_responder({DIABETES: "E11.9"}), faults=plan) as server:
        outcome, times = ask_through_the_engine(server)
    assert (outcome.text, outcome.attempts) == ("Code: E11.9", 3)
    first, second = times[1] - times[0], times[2] - times[1]
    assert 0.25 - 0.002 <= first < 0.45
    assert 0.5 - 0.002 <= second < 0.7  # the next step up would be 0.75 s


def test_exhausted_attempts_make_an_error_outcome_with_the_last_error() -> None:
    """Every attempt answered 500: after ``attempts`` tries the outcome is an error, never a text, and not one
    to keep (a rerun asks again)."""
    plan = FaultPlan(rate_500=1.0, max_faults_per_key=None)
    with ScriptedServer(mapping_responder({DIABETES: "E11.9"}), faults=plan) as server:
        outcome, times = ask_through_the_engine(server, attempts=2)
    assert outcome.text is None and outcome.attempts == 2 and len(times) == 2
    assert outcome.error is not None and "HTTP 500" in outcome.error
    assert (outcome.keep, outcome.setup) == (False, False)


def test_a_rate_limit_uses_no_attempt_and_is_waited_out() -> None:
    """A storm of 429s for 1.5 s with Retry-After: 1, at 2 attempts: more than 2 attempts are made (a rate limit
    is not an attempt that failed) and the call is answered once the storm has passed."""
    with ScriptedServer(mapping_responder({DIABETES: "E11.9"})) as server:
        server.storm = RateLimitStorm(1.5, retry_after=1.0)
        outcome, times = ask_through_the_engine(server, attempts=2)
    assert (outcome.text, outcome.error) == ("Code: E11.9", None)
    assert outcome.attempts == len(times) >= 3
    assert times[-1] - times[0] >= 1.5 - 0.002
    assert all(b - a >= 1.0 - 0.002 for a, b in itertools.pairwise(times))  # each wait honours Retry-After


def test_retry_after_as_an_http_date_is_honoured() -> None:
    """``Retry-After: <HTTP-date>`` two seconds ahead (whole seconds, so 1–2 s from now): the engine waits
    until then, far longer than its own first backoff of 0.25 s."""
    with ScriptedServer(mapping_responder({DIABETES: "E11.9"})) as server:
        server.storm = RateLimitStorm(0.2, retry_after=2.0, http_date=True)
        outcome, times = ask_through_the_engine(server)
    assert (outcome.text, outcome.attempts) == ("Code: E11.9", 2)
    assert 1.0 - 0.002 <= times[1] - times[0] < 3.5


def test_a_storm_longer_than_the_max_wait_ends_the_call_unkept_and_says_why() -> None:
    """Rate limited for longer than --medcode-max-wait (1 s here): the waits add up to exactly that, then the
    call ends as an error a rerun asks again, naming the option."""
    with ScriptedServer(mapping_responder({DIABETES: "E11.9"})) as server:
        server.storm = RateLimitStorm(60.0, retry_after=0.4)
        outcome, times = ask_through_the_engine(server, attempts=2, max_wait=1.0)
    assert outcome.text is None and not outcome.keep and not outcome.setup
    assert outcome.error.startswith("HTTP 429 RateLimitError")
    assert outcome.error.endswith("(still rate limited after waiting 1 s, --medcode-max-wait)")
    assert len(times) == outcome.attempts >= 3
    assert 1.0 - 0.01 <= times[-1] - times[0] < 3.0  # the waits, plus the attempts themselves


def test_the_progress_line_shows_a_rate_limit_wait() -> None:
    """While a call waits on a 429, the line says so and counts the retries; the wait disappears after."""
    with ScriptedServer(mapping_responder({DIABETES: "E11.9"})) as server:
        server.storm = RateLimitStorm(1.2, retry_after=1.0)
        coder = OpenAICompatibleCoder("openai/m", server.base_url, timeout=5.0)
        engine = QueryEngine({"openai/m": coder}, concurrency=1, attempts=3, timeout=5.0)
        engine._rng = _NoJitter()
        question = Question("icd10cm", DIABETES, (("user", f"What is the ICD10CM code for <{DIABETES}>?"),), 0.2, 50)
        lines: list[str] = []
        with ThreadPoolExecutor(1) as pool:
            asked = pool.submit(engine.ask, "openai/m", question)
            while not asked.done():
                lines.append(engine.progress.line())
                time.sleep(0.1)
        engine.close()
    assert asked.result().text == "Code: E11.9"
    assert any("· rate limited by the endpoint, waiting 1 s" in line for line in lines), lines
    assert "1 retries" in lines[-1] or "2 retries" in lines[-1]
    assert "rate limited" not in engine.progress.line()


@pytest.mark.parametrize("client", ["openai", "litellm"])
def test_a_200_with_no_choices_is_not_retried_and_keeps_its_usage(client: str) -> None:
    """A completion with usage but no ``choices``: one attempt (another would be billed again), a clear error that
    is the question's outcome to keep, and the usage the endpoint reported on the outcome (the litellm client
    raises before its usage can be read)."""
    plan = FaultPlan(rate_no_choices=1.0, max_faults_per_key=None)
    with ScriptedServer(mapping_responder({DIABETES: "E11.9"}), faults=plan) as server:
        coder = (OpenAICompatibleCoder("openai/m", server.base_url, timeout=5.0) if client == "openai"
                 else LiteLLMCoder("openai/m", server.base_url, timeout=5.0))
        outcome, times = ask_through_the_engine(server, coder=coder)
        billed = server.stats.usage_per_model
    assert len(times) == 1 and outcome.attempts == 1
    assert outcome.error == "malformed response: HTTP 200 with no answer in it (the chat completion has no choices)"
    assert outcome.keep and not outcome.setup
    assert list(billed) == ["m"] and billed["m"][0] == 1 and billed["m"][1] > 0  # billed once
    if client == "openai":
        assert outcome.usage == {"prompt_tokens": billed["m"][1], "completion_tokens": billed["m"][2]}


@pytest.mark.parametrize("client", ["openai", "litellm"])
def test_a_timeout_says_how_long_it_waited(client: str) -> None:
    plan = FaultPlan(rate_timeout=1.0, timeout_s=float("inf"), max_faults_per_key=None)
    with ScriptedServer(mapping_responder({DIABETES: "E11.9"}), faults=plan) as server:
        coder = (OpenAICompatibleCoder("openai/m", server.base_url, timeout=0.5) if client == "openai"
                 else LiteLLMCoder("openai/m", server.base_url, timeout=0.5))
        outcome, _ = ask_through_the_engine(server, attempts=1, coder=coder)
    assert outcome.error.endswith("timed out after 0.5 s"), outcome.error
    assert not outcome.keep


# -- the engine's own parts, in process ----------------------------------------------------------


def test_limiter_halves_once_per_burst_and_grows_back_one_per_window() -> None:
    """AIMD by hand: ceiling 5; a 429 cuts 5 -> 5 // 2 = 2 and bumps the epoch, so a 429 of a call started before
    that cut cuts nothing; then one more call in flight per `limit` successes in a row (2 -> 3 after 2, 3 -> 4 after
    3, 4 -> 5 after 4), never above the ceiling; later bursts cut to 1 and no lower."""
    progress = Progress()
    limiter = _Limiter(5, progress)
    assert (limiter.limit, limiter.epoch, progress.limit, limiter.in_flight) == (5, 0, 5, 0)
    limiter.success()  # at the ceiling: nothing to win back
    limiter.throttle(0)
    assert (limiter.limit, limiter.epoch, progress.throttled, progress.limit) == (2, 1, 1, 2)
    limiter.throttle(0)  # the same burst
    assert (limiter.limit, limiter.epoch, progress.throttled) == (2, 1, 1)
    grown = []
    for _ in range(2 + 3 + 4 + 3):
        limiter.success()
        grown.append(limiter.limit)
    assert grown == [2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5] and progress.limit == 5
    limiter.throttle(1)
    limiter.success()  # a success between cuts starts the count again
    limiter.throttle(2)
    assert (limiter.limit, limiter.epoch, progress.throttled) == (1, 3, 3)
    limiter.throttle(3)
    assert limiter.limit == 1
    limiter.success()
    assert limiter.limit == 2  # a window of one success


class _Counting:
    """A coder that notes how many of its calls are in flight; requests with repeat % 5 == 4 fail for good."""

    name = "m"
    cacheable = True

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0

    async def answer(self, question: Question) -> Reply:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if question.repeat % 5 == 4:
                raise CallFailed("HTTP 400 BadRequestError", False)
            return Reply(f"Code: A00.{question.repeat}")
        finally:
            self.in_flight -= 1


def test_a_batch_streams_every_request_once_within_the_concurrency() -> None:
    """12 requests, 3 in flight at most: each index reported once with its own answer; 2 of them (4 and 9) fail
    without retry, so progress counts 12 done, 2 errors, 0 retries."""
    coder = _Counting()
    engine = QueryEngine({"m": coder}, concurrency=3, attempts=3, timeout=5)
    calls = [Call("m", Question("icd10cm", "Cholera", (("user", "q"),), 0.2, 50, repeat=i)) for i in range(12)]
    seen: dict[int, Outcome] = {}
    try:
        engine.run_batch(calls, lambda index, outcome: seen.__setitem__(index, outcome))
    finally:
        engine.close()
    assert sorted(seen) == list(range(12)) and coder.most == 3
    assert [seen[i].text for i in (0, 5, 11)] == ["Code: A00.0", "Code: A00.5", "Code: A00.11"]
    assert [i for i, o in seen.items() if o.error] == [4, 9] and seen[4].attempts == 1
    assert (engine.progress.done, engine.progress.errors, engine.progress.retries) == (12, 2, 0)


class _Scripted:
    """A coder that fails its first attempts of each request with the given errors, then answers."""

    name = "m"
    cacheable = True

    def __init__(self, *errors: CallFailed) -> None:
        self.errors = list(errors)

    async def answer(self, question: Question) -> Reply:
        if self.errors:
            raise self.errors.pop(0)
        return Reply("Code: A00.0", {"prompt_tokens": 7})


def _ask(coder: object, attempts: int = 3, jitter: float = 0.0) -> tuple[Outcome, QueryEngine]:
    engine = QueryEngine({"m": coder}, concurrency=2, attempts=attempts, timeout=5)  # type: ignore[dict-item]
    engine._rng = _NoJitter() if jitter == 0.0 else _FixedJitter(jitter)
    try:
        return engine.ask("m", Question("icd10cm", "Cholera", (("user", "q"),), 0.2, 50)), engine
    finally:
        engine.close()


def test_only_rate_limit_errors_throttle_and_every_retry_is_counted() -> None:
    """Either wording of a 429 halves the calls in flight; a 500 does not. Two failed attempts: two retries, the
    answer on the third with its usage; waits of 0.25 s and 0.5 s (no Retry-After: the backoff alone)."""
    for first, throttled in (("HTTP 429 Too Many Requests", 1), ("RateLimitError: slow down", 1),
                             ("HTTP 500 InternalServerError", 0)):
        outcome, engine = _ask(_Scripted(CallFailed(first, True), CallFailed("HTTP 503 ServiceUnavailable", True)))
        assert (outcome.text, outcome.error, outcome.attempts, outcome.usage) == (
            "Code: A00.0", None, 3, {"prompt_tokens": 7})
        assert (engine.progress.throttled, engine.progress.retries) == (throttled, 2), first
        assert 0.75 - 0.004 <= outcome.latency_s < 5


def test_a_failure_that_is_not_retryable_ends_at_once_with_its_error() -> None:
    outcome, engine = _ask(_Scripted(CallFailed("HTTP 400 BadRequestError", False)))
    assert (outcome.text, outcome.error, outcome.attempts, engine.progress.retries) == (
        None, "HTTP 400 BadRequestError", 1, 0)
    assert 0 <= outcome.latency_s < 0.2
    outcome, engine = _ask(_Scripted(CallFailed("HTTP 503", True), CallFailed("HTTP 502", True)), attempts=2)
    assert (outcome.error, outcome.attempts, engine.progress.retries) == ("HTTP 502", 2, 1)
    assert 0.25 - 0.004 <= outcome.latency_s < 5  # one wait, and none after the last attempt


def test_the_jitter_lengthens_the_backoff_by_up_to_half() -> None:
    """A draw at the top of the range: waits of 0.5 s x (0.5 + 0.5) and 1 s x 1, 1.5 s in all (a third of the draw
    instead of half would make it 1.25 s)."""
    outcome, _ = _ask(_Scripted(CallFailed("HTTP 500", True), CallFailed("HTTP 500", True)), jitter=1.0)
    assert outcome.attempts == 3 and 1.5 - 0.004 <= outcome.latency_s < 2.5


def test_calls_outside_a_batch_share_the_limit_on_calls_in_flight() -> None:
    """Ten single asks from ten threads at once (late cases, uncached coders) still run at most 3 at a time."""
    coder = _Counting()
    engine = QueryEngine({"m": coder}, concurrency=3, attempts=1, timeout=5)
    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            futures = [pool.submit(engine.ask, "m", Question("icd10cm", "Cholera", (("user", "q"),), 0.2, 50, repeat=i))
                       for i in range(10)]
            outcomes = [f.result(timeout=10) for f in futures]
    finally:
        engine.close()
    assert coder.most == 3
    assert [o.text for o in outcomes[:4]] == ["Code: A00.0", "Code: A00.1", "Code: A00.2", "Code: A00.3"]


def test_a_coder_bug_is_an_error_outcome_not_a_crash() -> None:
    class Broken:
        name = "m"
        cacheable = True

        async def answer(self, question: Question) -> Reply:
            raise KeyError("choices")

    outcome, _ = _ask(Broken(), attempts=1)
    assert (outcome.text, outcome.error, outcome.attempts) == (None, "KeyError: 'choices'", 1)


def test_requests_per_minute_space_the_engine_s_calls() -> None:
    """600 per minute: one start every 0.1 s, so 4 calls take at least 0.3 s."""
    coder = _Scripted()
    engine = QueryEngine({"m": coder}, concurrency=4, attempts=1, timeout=5, rpm=600)
    started = time.monotonic()
    try:
        engine.run_batch([Call("m", Question("icd10cm", "Cholera", (("user", "q"),), 0.2, 50, repeat=i))
                          for i in range(4)],
                         lambda index, outcome: None, progress=(progress := Progress(total=4)))
    finally:
        engine.close()
    assert time.monotonic() - started >= 0.3 - 0.004
    assert engine.progress is progress and progress.done == 4


def test_an_answer_with_a_lone_surrogate_is_stored_as_a_replacement_character() -> None:
    assert _valid_text("Code: E11.9 \ud800") == "Code: E11.9 \ufffd"
    assert _valid_text("\udfff\ud800x") == "\ufffd\ufffdx"
    assert _valid_text("Code: E11.9 ✓") == "Code: E11.9 ✓"


# -- the circuit breaker: what it counts --------------------------------------------------------


def _outcome(error: str | None, setup: bool = False) -> Outcome:
    return Outcome(None if error else "Code: A00.0", error, 0.1, 1, keep=not setup, setup=setup)


def test_the_breaker_trips_on_exactly_k_identical_setup_failures_in_a_row() -> None:
    """K = 3: two identical setup failures do not trip it; a success, a different error or a failure that does
    not count (a 500, a final 400) between them starts the count again; the third in a row trips it, with the
    error in the reason, and every later call of that model is refused unasked and unkept; another model is not."""
    breaker = CircuitBreaker(3)
    key = "HTTP 401 AuthenticationError: Incorrect API key"
    for interruption, counts in ((_outcome(None), False), (_outcome("HTTP 500 InternalServerError"), False),
                                 (_outcome("HTTP 400 BadRequestError"), False), (_outcome("HTTP 403 x", True), True)):
        breaker.record("m", _outcome(key, True), True)
        breaker.record("m", _outcome(key, True), True)
        breaker.record("m", interruption, counts)
        assert breaker.refuse("m") is None and not breaker.tripped
    breaker.record("m", _outcome(key, True), True)
    breaker.record("m", _outcome(key, True), True)
    assert breaker.refuse("m") is None
    breaker.record("m", _outcome(key, True), True)
    refused = breaker.refuse("m")
    assert refused is not None and refused.attempts == 0 and refused.keep is False and refused.latency_s == 0.0
    assert refused.error == f"not asked: stopped asking m after 3 identical failures in a row: {key}"
    breaker.record("m", _outcome(key, True), True)  # once tripped, the reason stays as it was
    assert breaker.refuse("m").error == refused.error
    assert breaker.refuse("other") is None
    assert CircuitBreaker(0).refuse("m") is None  # 0: never


def test_the_engine_counts_only_setup_failures_for_the_breaker() -> None:
    """Through the engine with the real client: exhausted 500s, timeouts and rate limits never trip it (a retry
    could fix each); refused keys do."""
    question = Question("icd10cm", DIABETES, (("user", f"What is the ICD10CM code for <{DIABETES}>?"),), 0.2, 50)
    for faults, storm, outage, tripped, timeout in (
        (FaultPlan(rate_500=1.0, max_faults_per_key=None), None, None, False, 10.0),
        (FaultPlan(rate_timeout=1.0, timeout_s=float("inf"), max_faults_per_key=None), None, None, False, 0.2),
        (None, RateLimitStorm(60, retry_after=0.05), None, False, 10.0),
        (None, None, "401", True, 10.0),
    ):
        with ScriptedServer(mapping_responder({DIABETES: "E11.9"}), faults=faults, outage=outage) as server:
            server.storm = storm
            coder = OpenAICompatibleCoder("openai/m", server.base_url, timeout=timeout)
            engine = QueryEngine({"openai/m": coder}, concurrency=1, attempts=1, timeout=timeout, breaker=2,
                                 max_wait=0.1)
            calls = [Call("openai/m", dataclasses.replace(question, repeat=i)) for i in range(3)]
            seen: list[Outcome] = []
            try:
                engine.run_batch(calls, lambda index, outcome, seen=seen: seen.append(outcome))
            finally:
                engine.close()
            assert bool(engine.breaker.tripped) is tripped, (faults, storm, outage)
            assert server.stats.total_requests >= (2 if tripped else 3)
            assert [o.attempts == 0 for o in seen] == [False, False, tripped]
