"""``--medcode-batch`` for the providers litellm's batch functions reach (``azure/``, ``hosted_vllm/``,
``litellm_proxy/``): the batch runner and a real pytest session sending their questions through litellm's
``create_file``/``create_batch``/``retrieve_batch``/``file_content``/``list_batches``/``cancel_batch`` to the
scripted server's OpenAI batch API, as Azure OpenAI (its ``/openai/...`` paths, ``api-version``) and as vLLM —
answers and errors as the streamed path gives them, cancel, a submission whose answer was lost and a run
killed before it recorded its batch that re-attach by the batch's metadata without submitting again, and the
batch price."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Iterator
from typing import get_args

import pyarrow.parquet as pq
import pytest

from helpers import batch_question, code_list_args, lost_submission_is_found_again, poll_outage, run_batch
from pytest_medcode.asking.batch import (
    BatchLedger,
    BatchRunner,
    batch_route,
    cancel,
    provider_for,
    status_lines,
)
from pytest_medcode.asking.batch_provider import THROUGH_LITELLM, BatchRoute
from pytest_medcode.asking.cache import ResponseStore, owner_id
from pytest_medcode.asking.coders.litellm_coder import LiteLLMCoder
from pytest_medcode.asking.engine import Call
from pytest_medcode.asking.litellm_batch import LiteLLMBatchClient
from pytest_medcode.asking.progress import Progress
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.responders import Request, mapping_responder
from pytest_medcode.testing.server import ScriptedServer, azure_path

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = "azure/gpt-4o-mini"  # in litellm's price map, with its batch prices


@pytest.fixture(autouse=True)
def azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What litellm's Azure client needs besides the endpoint: an api-version (and some key)."""
    monkeypatch.setenv("AZURE_API_VERSION", "2024-10-21")
    monkeypatch.setenv("AZURE_API_KEY", "sk-azure-test")
    monkeypatch.setenv("MEDCODE_BATCH_POLL_S", "0.1")
    monkeypatch.setenv("MEDCODE_BATCH_POLL_MAX_S", "0.3")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(lambda request: "Code: R69") as srv:
        srv.batch_api.plan.in_progress_s = 0.05
        yield srv


def root(server: ScriptedServer) -> str:
    """The server as an Azure endpoint: the Azure client adds ``/openai`` itself."""
    return server.base_url.removesuffix("/v1")


def calls_of(n: int, model: str = MODEL) -> dict[str, Call]:
    return {f"k{i}": Call(model, batch_question(i)) for i in range(n)}


def runner_for(server: ScriptedServer, store: ResponseStore, provider: str = "azure", model: str = MODEL,
               owner: str = "") -> BatchRunner:
    base = root(server) if provider == "azure" else server.base_url
    route = BatchRoute(base, "gpt-4o-mini", provider=provider)
    return BatchRunner(store, {model: route}, owner or owner_id("in-process"), poll_s=0.02, poll_max_s=0.05)


# -- which providers, and how a model is routed -----------------------------------------------------------------
def test_the_providers_are_those_litellms_batch_functions_serve_with_openais_files() -> None:
    from litellm.batches import main as batches
    from litellm.files.main import FileCreateProvider
    from litellm.types.utils import OPENAI_COMPATIBLE_BATCH_AND_FILES_PROVIDERS

    def accepted(function: object) -> set[str]:
        return set(get_args(inspect.signature(function).parameters["custom_llm_provider"].annotation))  # type: ignore[arg-type]

    assert set(THROUGH_LITELLM) == (OPENAI_COMPATIBLE_BATCH_AND_FILES_PROVIDERS - {"openai"}) | {"azure"}
    assert set(THROUGH_LITELLM) <= accepted(batches.create_batch) & accepted(batches.retrieve_batch) \
        & set(get_args(FileCreateProvider))


def test_a_model_goes_to_litellms_batches_by_its_provider_prefix() -> None:
    def route(name: str, api_base: str | None = None) -> BatchRoute | None:
        return batch_route(LiteLLMCoder(name, api_base, 10.0))

    assert route("azure/gpt-4o-mini") == BatchRoute(None, "gpt-4o-mini", provider="azure")
    assert route("hosted_vllm/llama", "http://h:8000/v1") == BatchRoute("http://h:8000/v1", "llama",
                                                                         provider="hosted_vllm")
    assert route("litellm_proxy/m", "http://p/v1").provider == "litellm_proxy"
    assert route("openai/m").provider == "openai" and route("anthropic/claude-haiku-4-5").provider == "anthropic"
    for streamed in ("vertex_ai/gemini-2.0-flash", "bedrock/anthropic.claude-3", "gemini/gemini-pro", "azure/"):
        assert route(streamed) is None, streamed  # named in the run's one line, and streamed
    assert azure_path("/openai/deployments/d/chat/completions") == "/v1/chat/completions"
    assert azure_path("/openai/files/f-1/content") == "/v1/files/f-1/content" and azure_path("/v1/x") == "/v1/x"


# -- the runner through litellm against the scripted batch API ---------------------------------------------------
def test_an_azure_batch_is_sent_once_through_litellm_and_every_answer_delivered(server, store) -> None:
    def fail(request: Request) -> tuple[int, str] | None:
        return {"Description 1": (400, "flagged by the policy"), "Description 2": (500, "busy")}.get(
            request.description or "")

    server.batch_api.plan.fail = fail
    runner = runner_for(server, store)
    left, got = run_batch(runner, calls_of(4))
    assert sorted(got) == ["k0", "k1", "k3"] and left == ["k2"]  # the 500 is asked again by streaming
    assert got["k1"].error == "HTTP 400 batch request: flagged by the policy" and got["k1"].keep
    assert all(got[k].text == "Code: R69" and got[k].usage["batch"] is True for k in ("k0", "k3"))
    (row,) = runner.ledger.rows()
    assert (row["provider"], row["state"], row["done"], row["requests"]) == ("azure", "completed", 1, 4)
    (file,) = server.batch_api.files()
    assert file["filename"] == f"medcode-{row['intent']}.jsonl"
    (batch,) = server.batch_api.batches()
    assert batch["metadata"] == {"medcode_intent": row["intent"]}
    assert server.batch_api.submissions == 1 and server.stats.total_requests == 4
    sent = (server.batch_api.folder / file["id"]).read_bytes().splitlines()
    assert {json.loads(line)["body"]["model"] for line in sent} == {"gpt-4o-mini"}  # the deployment, unprefixed
    assert "completed, collected" in status_lines(store)[1]


def test_a_submission_whose_answer_was_lost_is_found_by_its_metadata_not_sent_again(server, store) -> None:
    row = lost_submission_is_found_again(server, server.batch_api, lambda: runner_for(server, store), calls_of(3))
    assert row["file_id"] == "file-000001" and server.batch_api.uploads == 1  # the file, uploaded once


def test_a_run_killed_before_it_recorded_its_batch_reattaches_by_metadata(server, store) -> None:
    """What ``kill -9`` between making the batch and recording its id leaves: the intent and its file in the
    ledger, the batch at the provider. The next run (vLLM's endpoint here) finds it and submits nothing."""
    model = "hosted_vllm/gpt-4o-mini"
    dead = owner_id("old").split("|")[0] + "|999999999|old"
    first = runner_for(server, store, "hosted_vllm", model, owner=dead)
    ledger = BatchLedger(store)
    calls = calls_of(3, model)
    route = first.routes[model]
    ledger.record("killed", model, route, list(calls), dead)
    provider = provider_for("hosted_vllm", route.api_base)
    assert isinstance(getattr(provider, "client", None), LiteLLMBatchClient)  # OpenAI's files, through litellm
    provider.submit("killed", [provider.request_line(k, route, c) for k, c in calls.items()],
                    lambda file_id: ledger.update("killed", file_id=file_id, state="uploaded"))

    notices: list[str] = []
    left, got = run_batch(runner_for(server, store, "hosted_vllm", model), calls, notices)
    assert left == [] and sorted(got) == ["k0", "k1", "k2"]
    assert notices == ["medcode: re-attached to 1 batch(es) an earlier run submitted (3 request(s)); nothing is "
                       "submitted twice"]
    (row,) = BatchLedger(store).rows()
    assert (row["intent"], row["provider"], row["done"]) == ("killed", "hosted_vllm", 1)
    assert server.batch_api.submissions == 1 and server.batch_api.duplicate_submissions() == {}


def test_cancel_goes_through_litellm_and_the_run_streams_what_never_ran(server, store) -> None:
    server.batch_api.plan.validating_s = 30  # open until cancelled: none of its requests is run
    runner = runner_for(server, store)
    seen: list[str] = []

    def cancel_once() -> None:  # as `medcode batch cancel --all` in another terminal, once the batch is polled
        rows = runner.ledger.rows(open_only=True) if hasattr(runner, "ledger") else []
        if rows and rows[0]["batch_id"] and not seen:
            seen.extend(cancel(store, None))

    calls = calls_of(3)
    started = time.monotonic()
    left = runner.run(list(calls), set(calls), calls.__getitem__, lambda items: None, Progress(total=3), cancel_once)
    assert seen and seen[0].endswith((": cancelling", ": cancelled")) and time.monotonic() - started < 10
    assert sorted(left) == ["k0", "k1", "k2"] and server.stats.total_requests == 0


def test_a_5xx_on_a_poll_is_tried_again_without_a_line(server, store) -> None:
    server.batch_api.plan.outage = poll_outage(1, 503)
    notices: list[str] = []
    left, got = run_batch(runner_for(server, store), calls_of(2), notices)
    assert (left, sorted(got), notices) == ([], ["k0", "k1"], []) and server.batch_api.outages == 1
    assert server.batch_api.submissions == 1


# -- a pytest session ---------------------------------------------------------------------------------------------
@pytest.fixture
def codes() -> list[tuple[str, str]]:
    billable = load_system("icd10cm").billable_codes()
    return [billable[i] for i in range(0, 72_000, 6_000)]  # 12 codes from across the table


def test_a_session_asks_azure_through_one_litellm_batch_at_the_batch_price(pytester, codes) -> None:
    mapping = {d: c for c, d in codes[:-2]}  # right on all but the last two codes
    with ScriptedServer(mapping_responder(mapping, default="Code: R69")) as srv:
        srv.batch_api.plan.in_progress_s = 0.2
        argv = code_list_args(pytester, codes, MODEL, root(srv), "--medcode-cache",
                              str(pytester.path / "cache" / "r.db"), "--medcode-batch", "--medcode-no-preflight")
        result = pytester.runpytest(*argv)
        result.stdout.fnmatch_lines(["*2 failed, 10 passed*"])
        assert srv.batch_api.submissions == 1 and srv.stats.total_requests == len(codes)
        rows = pq.read_table(pytester.path / "reports" / "latest" / "cases.parquet").to_pylist()
        assert all(r["batch"] is True and not r["error"] for r in rows) and sum(r["exact_match"] for r in rows) == 10
        for r in rows:  # azure/gpt-4o-mini in batches: $0.075 / $0.30 per million tokens (litellm's map)
            assert r["cost_usd"] == pytest.approx((r["prompt_tokens"] * 0.075 + r["completion_tokens"] * 0.3) / 1e6)
        assert "no batch API" not in result.stdout.str()

        again = pytester.runpytest(*argv)
        again.stdout.fnmatch_lines(["*2 failed, 10 passed*"])
        assert srv.batch_api.submissions == 1  # all cached: nothing submitted
