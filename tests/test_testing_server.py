"""The scripted OpenAI-compatible server, driven by the real openai and litellm clients over TCP.

These tests pin both our server's behaviour and the few client behaviours the plugin relies on
(what each fault turns into on the client side), so a client upgrade that changes them shows here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_medcode.testing.faults import FAULT_KINDS, FaultPlan, fixed_latency, lognormal_latency
from pytest_medcode.testing.responders import (
    Request,
    corrupt_answer,
    degrade,
    echo_responder,
    extract_description,
    is_corrupted,
    mapping_responder,
    request_key,
    wrong_code,
)
from pytest_medcode.testing.server import ScriptedServer
from pytest_medcode.testing.stats import token_hash

DIABETES = "Type 2 diabetes mellitus without complications"
ANSWERS = {DIABETES: "E11.9", "Essential (primary) hypertension": "I10"}
SRC = Path(__file__).resolve().parents[1] / "src"


def prompt(description: str) -> str:
    """The shape of the plugin's prompt: the description sits between angle brackets."""
    return (
        f"What is the most correct ICD10CM billing code for this description: <{description}>.\n"
        "Only generate a single, VALID ICD10CM billing code. Do not explain. "
        "ALWAYS respond in the following format:\nCode: A00.0"
    )


def messages(description: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt(description)}]


def key_for(description: str, model: str = "m") -> str:
    """The key the server will give the body the openai client sends for this description."""
    return request_key({"messages": messages(description), "model": model})


def client(srv: ScriptedServer, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("api_key", "sk-test")
    kwargs.setdefault("timeout", 5.0)
    return openai.OpenAI(base_url=srv.base_url, **kwargs)


def ask(c: openai.OpenAI, description: str, model: str = "m") -> str:
    response = c.chat.completions.create(model=model, messages=messages(description))  # type: ignore[arg-type]
    return response.choices[0].message.content or ""


def always(kind: str, description: str = DIABETES, **kwargs: Any) -> FaultPlan:
    return FaultPlan(always_fail_keys=frozenset({key_for(description)}), always_fail_kind=kind, **kwargs)


# -- answers ------------------------------------------------------------------------------------


def test_openai_client_gets_the_mapped_code_and_a_full_completion() -> None:
    with ScriptedServer(mapping_responder(ANSWERS)) as srv:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1" and srv.url.endswith(str(srv.port))
        response = client(srv).chat.completions.create(model="gpt-x", messages=messages(DIABETES))  # type: ignore[arg-type]
        assert response.choices[0].message.content == "Code: E11.9"
        assert response.choices[0].finish_reason == "stop"
        assert response.object == "chat.completion" and response.model == "gpt-x" and response.id
        assert response.usage is not None
        assert response.usage.completion_tokens == 2
        assert response.usage.prompt_tokens == len(prompt(DIABETES).split())
        assert response.usage.total_tokens == response.usage.prompt_tokens + 2
        assert ask(client(srv), "Something nobody knows") == "Code: 000.0"
        stats = srv.stats
        assert stats.saw_keys == {token_hash("sk-test")}
        assert "sk-test" not in json.dumps(stats.to_dict())


def test_models_endpoint_and_streaming() -> None:
    with ScriptedServer(echo_responder("Code: I10"), models=("a", "b")) as srv:
        c = client(srv)
        assert [m.id for m in c.models.list()] == ["a", "b"]
        stream = c.chat.completions.create(
            model="m", messages=messages("x"), stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Code: I10"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


def test_description_extraction_tolerates_formatting() -> None:
    assert extract_description(prompt(DIABETES)) == DIABETES
    assert extract_description("no brackets") is None
    responder = mapping_responder(ANSWERS)
    loose = Request.from_body(
        {"model": "m", "messages": messages("  type 2 DIABETES mellitus  without complications")}
    )
    assert responder(loose) == "Code: E11.9"
    assert echo_responder()(loose) == prompt("  type 2 DIABETES mellitus  without complications")


def test_async_client_64_concurrent_requests_all_succeed() -> None:
    descriptions = [f"condition number {i}" for i in range(64)]
    mapping = {d: f"Z{i:02d}.0" for i, d in enumerate(descriptions)}

    async def run(srv: ScriptedServer) -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=srv.base_url, api_key="sk-test", max_retries=0, timeout=10
        ) as c:
            responses = await asyncio.gather(
                *(c.chat.completions.create(model="m", messages=messages(d)) for d in descriptions)  # type: ignore[arg-type]
            )
        return [r.choices[0].message.content or "" for r in responses]

    with ScriptedServer(mapping_responder(mapping), latency=fixed_latency(0.1)) as srv:
        started = time.perf_counter()
        answers = asyncio.run(run(srv))
        elapsed = time.perf_counter() - started
        stats = srv.stats
    assert answers == [f"Code: {mapping[d]}" for d in descriptions]
    assert stats.total_requests == 64 and stats.successes == 64 and not stats.faults
    assert stats.max_in_flight > 1
    assert elapsed < 64 * 0.1 / 4, "requests were not served concurrently"
    assert not stats.duplicate_successes()


def test_capacity_queues_what_a_server_cannot_work_on_at_once() -> None:
    """``capacity``: a model server's batch size; 12 calls at once on capacity 3 take four rounds of latency."""
    descriptions = [f"condition number {i}" for i in range(12)]

    async def run(srv: ScriptedServer) -> float:
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0, timeout=10) as c:
            started = time.perf_counter()
            await asyncio.gather(*(c.chat.completions.create(model="m", messages=messages(d))  # type: ignore[arg-type]
                                   for d in descriptions))
            return time.perf_counter() - started

    with ScriptedServer(mapping_responder({}), latency=fixed_latency(0.1), capacity=3) as srv:
        elapsed = asyncio.run(run(srv))
        assert srv.stats.successes == 12 and srv.stats.max_in_flight > 3  # they arrived together, and waited
    assert 0.4 <= elapsed < 1.5


_LITELLM_CLIENT = """
import json, os, sys
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import litellm
base, ok_prompt, failing_prompt = sys.argv[1:4]
out = {}
r = litellm.completion(model="openai/any", api_base=base, api_key="sk-test",
                       messages=[{"role": "user", "content": ok_prompt}])
out["answer"] = r.choices[0].message.content
try:
    litellm.completion(model="openai/any", api_base=base, api_key="sk-test",
                       messages=[{"role": "user", "content": failing_prompt}], max_retries=0)
    out["error"] = None
except litellm.RateLimitError as exc:
    out["error"] = type(exc).__name__
print(json.dumps(out))
"""


def test_litellm_completion_against_the_server() -> None:
    # litellm runs in its own process: imported into a process that already loaded torch (the
    # similarity tests), it can crash the interpreter, which would take a whole xdist worker down.
    plan = FaultPlan(always_fail=lambda r: r.description == DIABETES, always_fail_kind="429")
    with ScriptedServer(mapping_responder(ANSWERS), faults=plan) as srv:
        ok = messages("Essential (primary) hypertension")[-1]["content"]
        failing = messages(DIABETES)[-1]["content"]
        proc = subprocess.run([sys.executable, "-c", _LITELLM_CLIENT, srv.base_url, ok, failing],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        stats = srv.stats
    assert out["answer"] == "Code: I10"
    # litellm hands max_retries to the openai client: 0 means exactly one request.
    assert out["error"] == "RateLimitError"
    assert stats.total_requests == 2
    assert stats.saw_keys == {token_hash("sk-test")}


# -- degrade / wrong answers --------------------------------------------------------------------


def test_degrade_is_deterministic_and_hits_the_fraction() -> None:
    descriptions = [f"description {i}" for i in range(3000)]
    mapping = {d: f"A{i % 100:02d}.{i % 10}" for i, d in enumerate(descriptions)}
    requests = [Request.from_body({"model": "m", "messages": messages(d)}) for d in descriptions]

    def wrong_set(seed: int) -> set[str]:
        responder = degrade(mapping_responder(mapping), 0.10, seed=seed)
        return {
            r.description or "" for r in requests if responder(r) != f"Code: {mapping[r.description or '']}"
        }

    first, again, other = wrong_set(1), wrong_set(1), wrong_set(2)
    assert first == again
    assert first != other
    assert 0.08 < len(first) / len(descriptions) < 0.12
    assert first == {d for d in descriptions if is_corrupted(d, 0.10, seed=1)}
    # The shortcut parameter is the same model.
    shortcut = mapping_responder(mapping, wrong_fraction=0.10, seed=1)
    assert {
        r.description for r in requests if shortcut(r) != f"Code: {mapping[r.description or '']}"
    } == first
    # Wrong answers keep the answer format.
    bad = next(r for r in requests if r.description in first)
    assert shortcut(bad).startswith("Code: A") and shortcut(bad) != f"Code: {mapping[bad.description or '']}"


@given(st.text(alphabet="ABCEVZ0123456789.", min_size=1, max_size=8), st.integers(0, 50))
@settings(max_examples=200, deadline=None)
def test_wrong_code_always_differs_and_keeps_length(code: str, seed: int) -> None:
    assert wrong_code(code, seed) != code
    assert len(wrong_code(code, seed)) == len(code) + (0 if any(c.isalnum() for c in code) else 1)


def test_corrupt_answer_only_touches_the_code() -> None:
    assert corrupt_answer("Code: E11.9").startswith("Code: E11.")
    assert corrupt_answer("Code: E11.9") != "Code: E11.9"
    assert corrupt_answer("Code: 99213.").endswith(".") and corrupt_answer("Code: 99213.").startswith(
        "Code: 9921"
    )


# -- latency ------------------------------------------------------------------------------------


def test_lognormal_latency_is_repeatable_and_heavy_tailed() -> None:
    requests = [Request.from_body({"model": "m", "messages": messages(f"d{i}")}) for i in range(4000)]
    latency = lognormal_latency(median=0.3, p95=2.0, seed=0)
    values = sorted(latency(r) for r in requests)
    assert [latency(r) for r in requests[:50]] == [lognormal_latency(0.3, 2.0, 0)(r) for r in requests[:50]]
    assert [latency(r) for r in requests[:50]] != [lognormal_latency(0.3, 2.0, 1)(r) for r in requests[:50]]
    assert 0.25 < values[len(values) // 2] < 0.35
    assert 1.6 < values[int(len(values) * 0.95)] < 2.5
    assert max(lognormal_latency(0.3, 2.0, 0, cap=1.0)(r) for r in requests) == 1.0


def test_latency_is_applied_in_the_handler() -> None:
    with ScriptedServer(latency=fixed_latency(0.2)) as srv:
        c = client(srv)
        ask(c, "warm up the connection")
        started = time.perf_counter()
        ask(c, DIABETES)
        assert 0.19 < time.perf_counter() - started < 1.0


# -- faults -------------------------------------------------------------------------------------


def test_429_is_a_rate_limit_error_with_retry_after() -> None:
    with ScriptedServer(faults=always("429", retry_after=2.0)) as srv:
        with pytest.raises(openai.RateLimitError) as info:
            ask(client(srv, max_retries=0), DIABETES)
        assert info.value.response.headers["retry-after"] == "2"
        assert info.value.code == "rate_limit_exceeded"
        assert srv.stats.total_requests == 1 and srv.stats.faults == {"429": 1}


def test_openai_client_honours_retry_after_and_capped_faults_let_retries_through() -> None:
    # Every draw is a 429, but max_faults_per_key=2 lets the third attempt through.
    plan = FaultPlan(rate_429=1.0, retry_after=0.1, max_faults_per_key=2)
    with ScriptedServer(mapping_responder(ANSWERS), faults=plan) as srv:
        started = time.perf_counter()
        assert ask(client(srv), DIABETES) == "Code: E11.9"  # default max_retries=2
        elapsed = time.perf_counter() - started
        stats = srv.stats
    key = key_for(DIABETES)
    assert stats.requests_per_key[key] == 3 and stats.successes_per_key[key] == 1
    assert stats.faults == {"429": 2}
    # Two waits of exactly Retry-After; openai's own backoff would take >= 0.375 + 0.75 s.
    assert 0.2 <= elapsed < 0.9
    # The server times each arrival: three attempts of one key, each at least Retry-After after the last.
    times = stats.attempt_times[key]
    assert len(times) == 3 and list(stats.attempt_times) == [key]
    assert all(later - earlier >= 0.1 - 0.002 for earlier, later in itertools.pairwise(times))
    assert stats.to_dict()["attempt_times"] == {key: times}
    srv.reset_stats()
    assert srv.stats.attempt_times == {}


def test_500_is_an_internal_server_error() -> None:
    with ScriptedServer(faults=always("500")) as srv, pytest.raises(openai.InternalServerError):
        ask(client(srv, max_retries=0), DIABETES)


def test_malformed_body_raises_on_the_client_and_is_not_retried() -> None:
    with ScriptedServer(faults=always("malformed")) as srv:
        # The installed openai client lets the JSON decoding error escape (not an openai.APIError),
        # and does not retry it: the plugin has to treat it as a failed call itself.
        with pytest.raises((ValueError, openai.APIResponseValidationError)):
            ask(client(srv, max_retries=2), DIABETES)
        assert srv.stats.total_requests == 1 and srv.stats.faults == {"malformed": 1}
        assert not srv.stats.successes_per_key


def test_reset_is_a_connection_error() -> None:
    with ScriptedServer(faults=always("reset")) as srv:
        with pytest.raises(openai.APIConnectionError) as info:
            ask(client(srv, max_retries=0), DIABETES)
        assert not isinstance(info.value, openai.APITimeoutError)
        # The server survives a reset and keeps answering.
        assert ask(client(srv, max_retries=0), "another one") == "Code: 000.0"
        assert srv.stats.faults == {"reset": 1}


def test_timeout_fault_outlasts_the_client_and_the_handler_notices_the_hang_up() -> None:
    with ScriptedServer(faults=always("timeout", timeout_s=10.0)) as srv:
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            ask(client(srv, max_retries=0, timeout=0.3), DIABETES)
        assert time.perf_counter() - started < 2.0
        deadline = time.monotonic() + 2.0
        while srv.stats.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = srv.stats
        assert stats.in_flight == 0, "handler kept sleeping after the client hung up"
        assert stats.faults == {"timeout": 1} and not stats.successes_per_key


def test_timeout_fault_answers_late_to_a_patient_client() -> None:
    with ScriptedServer(mapping_responder(ANSWERS), faults=always("timeout", timeout_s=0.2)) as srv:
        assert ask(client(srv, max_retries=0, timeout=3.0), DIABETES) == "Code: E11.9"


def _outcomes(srv: ScriptedServer, descriptions: list[str], rounds: int) -> list[str]:
    c = client(srv, max_retries=0)
    seen = []
    for _ in range(rounds):
        for d in descriptions:
            try:
                ask(c, d)
                seen.append("ok")
            except Exception as exc:  # the outcome class is what we compare
                seen.append(type(exc).__name__)
    return seen


def test_fault_decisions_are_deterministic_across_servers() -> None:
    plan = FaultPlan(rate_429=0.2, rate_500=0.15, rate_malformed=0.1, rate_reset=0.1, retry_after=5, seed=7)
    descriptions = [f"case {i}" for i in range(25)]
    with ScriptedServer(faults=plan) as one:
        first = _outcomes(one, descriptions, rounds=2)
        first_faults = one.stats.faults
    with ScriptedServer(faults=plan) as two:
        second = _outcomes(two, descriptions, rounds=2)
    assert first == second
    assert len(set(first)) == 5, f"expected every outcome to appear: {set(first)}"
    expected = [plan.decide(key_for(d), attempt) or "ok" for attempt in range(2) for d in descriptions]
    names = {"429": "RateLimitError", "500": "InternalServerError", "reset": "APIConnectionError", "ok": "ok"}
    assert [names.get(e, "malformed") for e in expected] == [
        o if o in names.values() else "malformed" for o in first
    ]
    assert sum(first_faults.values()) == sum(o != "ok" for o in first)
    with ScriptedServer(
        faults=FaultPlan(rate_429=0.2, rate_500=0.15, rate_malformed=0.1, rate_reset=0.1, seed=8)
    ) as three:
        assert _outcomes(three, descriptions, rounds=2) != first


@given(
    key=st.text(min_size=1, max_size=12),
    seed=st.integers(0, 1000),
    cap=st.integers(0, 4),
    rates=st.lists(st.floats(0, 0.2), min_size=len(FAULT_KINDS), max_size=len(FAULT_KINDS)),
)
@settings(max_examples=200, deadline=None)
def test_fault_cap_guarantees_success_within_cap_plus_one_attempts(
    key: str, seed: int, cap: int, rates: list[float]
) -> None:
    plan = FaultPlan(
        rate_429=rates[0],
        rate_500=rates[1],
        rate_timeout=rates[2],
        rate_malformed=rates[3],
        rate_reset=rates[4],
        seed=seed,
        max_faults_per_key=cap,
    )
    decisions = [plan.decide(key, a) for a in range(cap + 6)]
    assert decisions == [plan.decide(key, a) for a in range(cap + 6)]
    assert sum(d is not None for d in decisions) <= cap
    assert any(d is None for d in decisions[: cap + 1])


def test_always_fail_predicate_exhausts_the_default_retry_budget() -> None:
    plan = FaultPlan(
        always_fail=lambda r: r.description == DIABETES, always_fail_kind="429", retry_after=0.05
    )
    with ScriptedServer(mapping_responder(ANSWERS), faults=plan) as srv:
        c = client(srv)
        with pytest.raises(openai.RateLimitError):
            ask(c, DIABETES)
        assert ask(c, "Essential (primary) hypertension") == "Code: I10"
        stats = srv.stats
    assert stats.requests_per_key[key_for(DIABETES)] == 3  # 1 + openai's default max_retries=2
    assert stats.faults == {"429": 3}


def test_fault_plan_validation_and_cli_spec() -> None:
    with pytest.raises(ValueError, match="fault rates sum to more than 1"):
        FaultPlan(rate_429=0.7, rate_500=0.5)
    with pytest.raises(ValueError, match="always_fail_kind must be one of"):
        FaultPlan(always_fail_kind="teapot")
    plan = FaultPlan.parse(
        "rate_429=0.1, retry_after=1.5,rate_reset=0.01,seed=3,max_faults_per_key=none,always_fail_keys=a|b"
    )
    assert plan == FaultPlan(
        rate_429=0.1,
        retry_after=1.5,
        rate_reset=0.01,
        seed=3,
        max_faults_per_key=None,
        always_fail_keys=frozenset("ab"),
    )
    with pytest.raises(ValueError, match="bad fault spec item"):
        FaultPlan.parse("rate_999=1")


# -- accounting and auth ------------------------------------------------------------------------


def test_accounting_flags_a_key_answered_twice() -> None:
    with ScriptedServer(mapping_responder(ANSWERS)) as srv:
        c = client(srv)
        ask(c, DIABETES)
        ask(c, "Essential (primary) hypertension")
        assert srv.duplicate_successes() == {}
        ask(c, DIABETES)
        key = key_for(DIABETES)
        assert srv.duplicate_successes() == {key: 2}
        stats = srv.stats
        assert stats.requests_per_key[key] == 2 and stats.total_requests == 3
        assert stats.status_counts == {200: 3}
        srv.reset_stats()
        assert srv.stats.total_requests == 0 and srv.attempts(key) == 0 and not srv.duplicate_successes()


def test_request_key_ignores_irrelevant_fields() -> None:
    body = {"model": "m", "messages": messages(DIABETES), "temperature": 0}
    assert request_key(body) == request_key({**body, "stream": True, "user": "u", "metadata": {"a": 1}})
    assert request_key(body) != request_key({**body, "temperature": 1})
    assert request_key(body) != request_key({**body, "model": "n"})


def test_require_key_rejects_wrong_and_missing_keys() -> None:
    with ScriptedServer(mapping_responder(ANSWERS), require_key="sk-right") as srv:
        with pytest.raises(openai.AuthenticationError) as info:
            ask(client(srv, api_key="sk-wrong", max_retries=0), DIABETES)
        assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
        assert ask(client(srv, api_key="sk-right"), DIABETES) == "Code: E11.9"
        raw = urllib.request.Request(
            srv.base_url + "/chat/completions",
            data=json.dumps({"model": "m", "messages": messages(DIABETES)}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(raw, timeout=5)
        assert missing.value.code == 401
        assert json.loads(missing.value.read())["error"]["code"] == "invalid_api_key"
        stats = srv.stats
    assert stats.unauthorized == 2 and stats.successes == 1
    assert stats.saw_keys == {token_hash("sk-wrong"), token_hash("sk-right")}


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_serves_reports_stats_and_writes_them_on_sigterm(tmp_path: Path) -> None:
    answers = tmp_path / "mapping.json"
    answers.write_text(json.dumps(ANSWERS))
    stats_file = tmp_path / "stats.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_medcode.testing",
            "--port",
            "0",
            "--answers",
            str(answers),
            "--latency",
            "lognormal",
            "--median",
            "0.01",
            "--p95",
            "0.05",
            "--latency-cap",
            "0.1",
            "--faults",
            "rate_429=0.0,retry_after=1",
            "--stats-file",
            str(stats_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        c = openai.OpenAI(base_url=base_url, api_key="sk-test", timeout=5)
        assert ask(c, DIABETES) == "Code: E11.9"
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats", timeout=5) as response:
            live = json.loads(response.read())
        assert live["total_requests"] == 1 and live["successes_per_key"] == {key_for(DIABETES): 1}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    written = json.loads(stats_file.read_text())
    assert written["total_requests"] == 1 and written["saw_keys"] == [token_hash("sk-test")]
    assert written["duplicate_successes"] == {}
