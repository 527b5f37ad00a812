"""A wrong model, key or endpoint costs one line and seconds, not thousands of failing cases.

Before the first case each API model answers one probe (its first case, kept and reused); mid-run, a
model that fails the same unfixable way K times in a row is no longer asked (the circuit breaker), its
remaining cases end as ``error`` with the reason, and a rerun after the fix asks only what is missing.
Everything runs against the project's scripted OpenAI-compatible server, with the real clients.
"""

from __future__ import annotations

import json

import pytest

from conftest import BENCHMARK
from helpers import cases_of
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.faults import FaultPlan
from pytest_medcode.testing.responders import mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def pairs(n: int) -> list[tuple[str, str]]:
    return load_system("icd10cm").billable_codes()[500 : 500 + n]


def setup_run(pytester: pytest.Pytester, codes: list[tuple[str, str]]) -> list[str]:
    pytester.makepyfile(test_code_query=BENCHMARK)
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
    return ["--medcode-system", "icd10cm", "--medcode-codes", str(path), "-p", "no:cacheprovider",
            "--medcode-no-similarity", "--medcode-cache", str(pytester.path / "cache" / "responses.sqlite3")]


def knows(codes: list[tuple[str, str]]) -> ScriptedServer:
    return ScriptedServer(mapping_responder({d: c for c, d in codes}))


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_refused_key_stops_the_run_before_any_case_with_one_line(pytester: pytest.Pytester, workers: str) -> None:
    codes = pairs(30)
    base = setup_run(pytester, codes)
    with ScriptedServer(outage="401") as server:
        result = pytester.runpytest(*base, "--model", "openai/m", "--medcode-api-base", server.base_url,
                                               "-n", workers)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert server.stats.total_requests == 1  # a 401 is not retried, and no case was asked
    errors = [line for line in result.errlines if line.strip()]
    assert len(errors) == 1, result.errlines
    assert errors[0].startswith("ERROR: --model openai/m: the check request at http://127.0.0.1:")
    assert "HTTP 401 AuthenticationError: Incorrect API key" in errors[0]
    assert not (pytester.path / "reports").exists()


def test_the_probe_is_the_first_case_and_its_answer_is_not_paid_twice(pytester: pytest.Pytester) -> None:
    codes = pairs(12)
    base = setup_run(pytester, codes)
    with knows(codes) as server:
        result = pytester.runpytest(*base, "--model", "openai/m", "--medcode-api-base", server.base_url)
        result.assert_outcomes(passed=12)
        assert server.stats.total_requests == 12  # the probe was case 1: 11 more calls, not 12
        assert server.duplicate_successes() == {}
    result.stdout.fnmatch_lines(["model calls: 12 asked*, 0 from the cache, 0 retries, 0 failed"])


def test_a_fully_cached_run_needs_no_probe_and_no_network(pytester: pytest.Pytester) -> None:
    codes = pairs(8)
    base = setup_run(pytester, codes)
    with knows(codes) as server:
        pytester.runpytest(*base, "--model", "openai/m", "--medcode-api-base", server.base_url)
        server.outage = "401"  # the key is revoked: a replay of recorded answers must still work
        again = pytester.runpytest(*base, "--model", "openai/m", "--medcode-api-base", server.base_url)
        again.assert_outcomes(passed=8)
        assert server.stats.total_requests == 8  # nothing asked the second time
    again.stdout.fnmatch_lines(["model calls: 0 asked, 8 from the cache*"])


def test_a_rate_limited_probe_is_the_first_cases_outcome_not_a_setup_error(pytester: pytest.Pytester) -> None:
    """Only setup failures stop the run: a 429 (or 500) on the probe is retried like any call."""
    codes = pairs(5)
    base = setup_run(pytester, codes)
    with knows(codes) as server:
        server.faults = FaultPlan(rate_429=1.0, retry_after=0.05, max_faults_per_key=1)  # each key: one 429
        result = pytester.runpytest(*base, "--model", "openai/m", "--medcode-api-base", server.base_url)
        result.assert_outcomes(passed=5)
        assert server.stats.status_counts[429] == 5 and server.stats.successes == 5  # each: one 429, then through


def test_a_wrapped_models_failure_names_the_wrapped_model(pytester: pytest.Pytester) -> None:
    base = setup_run(pytester, pairs(3))
    with ScriptedServer(outage="404") as server:
        result = pytester.runpytest(*base, "--model", "rag:openai/x", "--medcode-api-base",
                                               server.base_url)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --model rag:openai/x (the model openai/x it wraps): the check request*"
                                 "HTTP 404 NotFoundError: The model `x` does not exist*"])


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_key_revoked_mid_run_stops_that_model_and_a_rerun_asks_only_the_rest(
    pytester: pytest.Pytester, workers: str
) -> None:
    codes = pairs(60)
    base = setup_run(pytester, codes)
    args = [*base, "--model", "openai/m", "--medcode-concurrency", "1", "-n", workers]
    with knows(codes) as server:
        server.outage, server.outage_after = "401", 20  # the first 20 calls are answered, then every one is 401
        result = pytester.runpytest(*args, "--medcode-api-base", server.base_url)
        assert server.stats.total_requests == 25  # 20 answers, then 5 identical 401s trip the breaker
        result.assert_outcomes(passed=20, failed=40)
        rows = cases_of(pytester)
        errors = [r for r in rows if r["outcome"] == "error"]
        assert len(errors) == 40
        assert sum(r["attempts"] == 0 for r in errors) == 35  # never asked
        reason = "stopped asking openai/m after 5 identical failures in a row: HTTP 401 AuthenticationError"
        assert all(reason in r["error"] for r in errors if r["attempts"] == 0)
        summary = json.loads((pytester.path / "reports" / "latest" / "summary.json").read_text())
        failures = summary["queries"]["failures"]["openai/m"]
        assert [n for _, n in failures] == [35, 5]
        result.stdout.fnmatch_lines(["model calls: 25 asked*, 0 from the cache, 0 retries, 40 failed, 35 not asked",
                                     "failed calls of openai/m:", f"  35 × not asked: {reason}*",
                                     "  5 × HTTP 401 AuthenticationError*", "*a rerun asks only those"])

        server.outage = None  # the key is fixed
        again = pytester.runpytest(*args, "--medcode-api-base", server.base_url)
        again.assert_outcomes(passed=60)
        assert server.stats.total_requests == 25 + 40  # exactly the missing cases, once each
        assert server.duplicate_successes() == {}


def test_no_preflight_and_a_dead_key_end_every_case_as_one_named_error(pytester: pytest.Pytester) -> None:
    codes = pairs(40)
    base = setup_run(pytester, codes)
    with ScriptedServer(outage="quota") as server:
        result = pytester.runpytest(*base, "--model", "openai/m", "--medcode-api-base", server.base_url,
                                               "--medcode-no-preflight", "--medcode-concurrency", "1")
        assert server.stats.total_requests == 5  # quota errors are not retried; five trip the breaker
    result.assert_outcomes(failed=40)
    assert len(result.outlines) < 200  # not 40 tracebacks: ten cases in full, the rest tallied
    assert {r["outcome"] for r in cases_of(pytester)} == {"error"}
    result.stdout.fnmatch_lines(["failed calls of openai/m:", "  35 × not asked: stopped asking openai/m after 5 "
                                 "identical failures in a row: HTTP 429 RateLimitError: You exceeded your current "
                                 "quota*"])


def test_circuit_breaker_zero_asks_every_case(pytester: pytest.Pytester) -> None:
    base = setup_run(pytester, pairs(12))
    with ScriptedServer(outage="401") as server:
        result = pytester.runpytest(*base, "--model", "openai/m", "--medcode-api-base", server.base_url,
                                               "--medcode-no-preflight", "--medcode-circuit-breaker", "0")
        assert server.stats.total_requests == 12
    result.assert_outcomes(failed=12)


def test_a_probe_that_exhausts_its_retries_on_a_500_does_not_stop_the_run(pytester: pytest.Pytester) -> None:
    """A 500 on every attempt of the probe says nothing about the setup: no exit 4. The run goes on, the
    phase asks that case again (it is not kept), and a rerun once the server is well asks only it."""
    codes = pairs(6)
    base = setup_run(pytester, codes)
    sick = codes[0][1]  # the first case: the probe
    args = [*base, "--model", "openai/m", "--medcode-attempts", "2"]
    with knows(codes) as server:
        server.faults = FaultPlan(always_fail=lambda request: request.description == sick, always_fail_kind="500")
        result = pytester.runpytest(*args, "--medcode-api-base", server.base_url)
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.assert_outcomes(passed=5, failed=1)
        assert server.stats.status_counts[500] == 4  # two attempts by the probe, two by the phase
        (failed,) = [r for r in cases_of(pytester) if r["outcome"] == "error"]
        assert failed["description"] == sick and failed["error"].startswith("HTTP 500")

        server.faults = None
        before = server.stats.total_requests
        again = pytester.runpytest(*args, "--medcode-api-base", server.base_url)
        again.assert_outcomes(passed=6)
        assert server.stats.total_requests == before + 1  # the failed case, asked again with no flag
    again.stdout.fnmatch_lines(["model calls: 1 asked*, 5 from the cache, 0 retries, 0 failed"])


def test_the_breaker_does_not_trip_on_exhausted_500s(pytester: pytest.Pytester) -> None:
    """Eight cases in a row whose every attempt is a 500: a retry could fix each, so every case is asked (no
    "not asked"), where eight 401s would have stopped the model after five."""
    codes = pairs(8)
    base = setup_run(pytester, codes)
    with knows(codes) as server:
        server.faults = FaultPlan(rate_500=1.0, max_faults_per_key=None)
        result = pytester.runpytest(*base, "--model", "openai/m", "--medcode-api-base", server.base_url,
                                               "--medcode-no-preflight", "--medcode-concurrency", "1",
                                               "--medcode-attempts", "1")
        assert server.stats.total_requests == 8
    result.assert_outcomes(failed=8)
    assert all(r["attempts"] == 1 and r["error"].startswith("HTTP 500") for r in cases_of(pytester))
    result.stdout.fnmatch_lines(["model calls: 8 asked*, 0 from the cache, 0 retries, 8 failed"])


# -- in process: the probe and its line, with the real engine, client and store ----------------------------------

class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str, final: bool = False, notable: bool = False) -> None:
        self.lines.append(line)


def _probe_setup(tmp_path, server: ScriptedServer, attempts: int = 2):
    from pytest_medcode.asking.cache import ResponseStore
    from pytest_medcode.asking.coders.openai_compat import OpenAICompatibleCoder
    from pytest_medcode.asking.engine import QueryEngine
    from pytest_medcode.asking.phase import QueryPhase

    coder = OpenAICompatibleCoder("openai/m", server.base_url, timeout=2.0)
    engine = QueryEngine({"openai/m": coder}, concurrency=2, attempts=attempts, timeout=2.0, max_wait=5.0)
    shown = _Lines()
    (tmp_path / "state").mkdir()
    phase = QueryPhase(ResponseStore(tmp_path / "c.db"), lambda: engine, tmp_path / "state", 0.0, False, shown)
    return coder, engine, phase, shown


DESCRIPTION = "Cholera due to Vibrio cholerae 01, biovar cholerae"


def _q():
    from pytest_medcode.asking.coders import Question

    return Question("icd10cm", DESCRIPTION, (("user", f"Code for <{DESCRIPTION}>?"),), 0.2, 50)


@pytest.mark.parametrize(("fault", "returned", "kept"), [
    (None, False, "Code: A00.0"),  # an answer: kept, the phase does not ask again
    ("no_choices", False, "final"),  # the question's final failure: kept, marked final
    ("500", False, None),  # a 500 after every attempt: not a setup failure, not kept
    ("401", True, None),  # a refused key: the outcome that stops the run, not kept
])
def test_the_probe_keeps_an_answer_or_a_final_failure_and_returns_only_a_setup_failure(
        tmp_path, fault: str | None, returned: bool, kept: str | None) -> None:
    from pytest_medcode.asking.preflight import probe

    with ScriptedServer(mapping_responder({DESCRIPTION: "A00.0"}), outage="401" if fault == "401" else None) as srv:
        if fault in ("500", "no_choices"):
            srv.faults = FaultPlan(always_fail=lambda request: True, always_fail_kind=fault)
        _, engine, phase, _ = _probe_setup(tmp_path, srv)
        try:
            outcome = probe("openai/m", _q(), "key", phase, engine)
            rows = phase.store.get_many(["key"])
            assert (outcome is not None) is returned
            if returned:
                assert outcome.setup and not outcome.keep and outcome.error.startswith("HTTP 401")
                assert srv.stats.total_requests == 1  # not retried
            if kept is None:
                assert rows == {}
            elif kept == "final":
                assert rows["key"].error.startswith("malformed response") and rows["key"].usage["final_error"]
                assert rows["key"].usage["prompt_tokens"] > 0
            else:
                assert rows["key"].text == kept
            assert phase.store.claim(["key"], "someone-else", 60)[0] == ["key"]  # the claim was released
            if fault == "500":
                assert srv.stats.total_requests == 2 and phase.carried_retries == 1
        finally:
            engine.close()
            phase.store.close()


def test_a_probe_already_answered_or_claimed_elsewhere_asks_nothing(tmp_path) -> None:
    from pytest_medcode.asking.cache import Stored
    from pytest_medcode.asking.preflight import probe

    with ScriptedServer(mapping_responder({DESCRIPTION: "A00.0"})) as srv:
        _, engine, phase, _ = _probe_setup(tmp_path, srv)
        try:
            phase.store.put("done", "openai/m", Stored("Code: A00.0", None, {}, 0.1, 1, 1.0))
            assert probe("openai/m", _q(), "done", phase, engine) is None
            phase.store.claim(["busy"], "elsewhere|1|x", 60)  # another host's live claim
            assert probe("openai/m", _q(), "busy", phase, engine) is None
            assert srv.stats.total_requests == 0
            phase.store.put("old", "openai/m", Stored(None, "HTTP 429 RateLimitError", {}, 0.1, 3, 1.0))
            assert probe("openai/m", _q(), "old", phase, engine) is None  # a 429 an old version kept: asked
            assert srv.stats.total_requests == 1 and phase.store.get_many(["old"])["old"].text == "Code: A00.0"
        finally:
            engine.close()
            phase.store.close()


def test_the_probe_shows_its_rate_limit_wait_and_the_phase_counts_its_retries(tmp_path) -> None:
    from pytest_medcode.asking.preflight import probe
    from pytest_medcode.testing.faults import RateLimitStorm

    with ScriptedServer(mapping_responder({DESCRIPTION: "A00.0"})) as srv:
        srv.storm = RateLimitStorm(1.2, retry_after=1.0)
        _, engine, phase, shown = _probe_setup(tmp_path, srv)
        try:
            phase.carried_retries = 5  # an earlier model's probe
            assert probe("openai/m", _q(), "key", phase, engine) is None
            assert phase.store.get_many(["key"])["key"].text == "Code: A00.0"
            assert engine.progress.retries >= 1 and phase.carried_retries == 5 + engine.progress.retries
            assert not (tmp_path / "state" / "progress.json").exists()  # the phase's file, which xdist follows
            phase.run(["key"], lambda key: pytest.fail("answered by the probe: not asked again"))
            assert phase.progress.retries == phase.carried_retries  # the phase's line counts them
        finally:
            engine.close()
            phase.store.close()
    waits = [line for line in shown.lines if "rate limited by the endpoint, waiting" in line]
    assert waits and waits[0].startswith("medcode: checking openai/m before the first case · rate limited by the "
                                         "endpoint, waiting 1 s; ")
    assert waits[0].endswith(" retries so far")


def test_the_failure_line_names_the_model_where_and_what_to_do() -> None:
    from types import SimpleNamespace

    from pytest_medcode.asking.engine import Outcome
    from pytest_medcode.asking.preflight import failure_line, remote_coders

    api = SimpleNamespace(name="openai/x", remote=True, api_base="https://user:sk-secret@host.example/v1", inner=None)
    wrapper = SimpleNamespace(name="rag:openai/x", inner=api)
    assert remote_coders(wrapper) == [api] and remote_coders(SimpleNamespace(inner=None)) == []
    hints = {"HTTP 401 AuthenticationError: bad": "check the API key in the environment",
             "HTTP 403 PermissionDeniedError: no": "check the API key's access to this model",
             "HTTP 404 NotFoundError: none": "check the model name and that --medcode-api-base ends with the API's /v1",
             "HTTP 429 RateLimitError: You exceeded your current QUOTA": "the account's quota is exhausted",
             "APIConnectionError: Connection refused": "is the server running and --medcode-api-base right?"}
    for error, hint in hints.items():
        line = failure_line("rag:openai/x", wrapper, Outcome(None, error, 0.1, 3))
        assert line == (f"--model rag:openai/x (the model openai/x it wraps): the check request at "
                        f"https://host.example/v1 failed after 3 attempt(s): {error}; {hint} "
                        "(--medcode-no-preflight skips this check)")
        assert "sk-secret" not in line
    assert remote_coders(SimpleNamespace(remote=True)) != []  # no inner at all: the end of the chain
    local = SimpleNamespace(api_base="http://127.0.0.1:8000/v1")  # no remote coder, no name: the coder itself
    assert failure_line("local:x", local, Outcome(None, "refused", 0.1, 1)).startswith(
        "--model local:x: the check request at http://127.0.0.1:8000/v1 failed")
    assert failure_line("m", SimpleNamespace(), Outcome(None, None, 0.1, 1)).startswith(
        "--model m: the check request failed after 1 attempt(s): None (--medcode")
    plain = SimpleNamespace(name="gpt-4", remote=True, api_base=None, inner=None)
    assert failure_line("gpt-4", plain, Outcome(None, "the endpoint said no", 0.1, 1)) == (
        "--model gpt-4: the check request failed after 1 attempt(s): the endpoint said no "
        "(--medcode-no-preflight skips this check)")
