"""The batch runner in this process, against the scripted server's batch API with the real ``openai`` client:
which coders have a batch route, the provider's words for a refusal, each way a batch ends (refused file,
failed validation, expiry, error lines), polls and downloads that fail and are tried again, who adopts an
open batch, ``medcode batch status`` and ``cancel``. The pytest sessions around it are in test_batch.py; these
run in milliseconds each, so the mutation run (perf/mutation.py) can use them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from openai import OpenAI

from pytest_medcode.api import CoderOptions
from pytest_medcode.asking import batch as batch_module
from pytest_medcode.asking.batch import (
    BatchLedger,
    BatchRejected,
    BatchRoute,
    BatchRunner,
    _summary,
    api_message,
    batch_route,
    cancel,
    read_result,
    request_line,
    status_lines,
)
from pytest_medcode.asking.cache import ResponseStore, owner_id
from pytest_medcode.asking.coders import Question, resolve_coder
from pytest_medcode.asking.coders.litellm_coder import LiteLLMCoder
from pytest_medcode.asking.engine import Call, Outcome
from pytest_medcode.asking.progress import Progress
from pytest_medcode.testing.responders import Request
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _answer(request: Request) -> str:
    return "Code: R69"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(_answer) as srv:
        srv.batch_api.plan.in_progress_s = 0.05
        yield srv


def question(i: int) -> Question:
    return Question("icd10cm", f"Description {i}", (("user", f"What is the code for <Description {i}>?"),), 0.2, 50)


def calls_of(n: int, model: str = "openai/m", first: int = 0) -> dict[str, Call]:
    return {f"k{i}": Call(model, question(i)) for i in range(first, first + n)}


def runner_for(server: ScriptedServer, store: ResponseStore, owner: str = "") -> BatchRunner:
    return BatchRunner(store, {"openai/m": BatchRoute(server.base_url, "m")}, owner or owner_id("in-process"),
                       poll_s=0.02, poll_max_s=0.05)


def run(runner: BatchRunner, calls: dict[str, Call], wanted: set[str] | None = None,
        notices: list[str] | None = None) -> tuple[list[str], dict[str, Outcome], list[str]]:
    """Run the batch path over ``calls``: the keys left to stream, the outcomes delivered (each key once), and
    the batches' part of the progress line at each report."""
    got: dict[str, Outcome] = {}
    shown: list[str] = []
    if notices is not None:
        runner.notice = notices.append

    def deliver(items: list[tuple[str, str, Outcome]]) -> None:
        for key, model, outcome in items:
            assert key not in got, f"{key} delivered twice"
            assert model == calls[key].model
            got[key] = outcome

    progress = Progress(total=len(calls))
    left = runner.run(list(calls), set(calls) if wanted is None else wanted, calls.__getitem__, deliver, progress,
                      lambda: shown.append(progress.batches))
    assert progress.batches == ""
    return left, got, shown


def failing(times: int, method: str, prefix: str, status: int = 503) -> Callable[[str, str], int | None]:
    """An outage plan: the first ``times`` calls of ``method`` on paths starting with ``prefix`` fail."""
    left = [times]

    def outage(m: str, path: str) -> int | None:
        if m == method and path.startswith(prefix) and left[0] > 0:
            left[0] -= 1
            return status
        return None

    return outage


# -- which coders have a batch API ------------------------------------------------------------------------------
def test_only_openai_and_anthropic_models_have_a_batch_route() -> None:
    at = CoderOptions(api_base="http://127.0.0.1:9/v1")
    assert batch_route(resolve_coder("openai/m", at)) == BatchRoute("http://127.0.0.1:9/v1", "m")
    assert batch_route(resolve_coder("openai/gpt-4o-mini", CoderOptions())) == BatchRoute(None, "gpt-4o-mini")
    assert batch_route(LiteLLMCoder("openai/o/x", "http://h/v1", 5.0)) == BatchRoute("http://h/v1", "o/x")
    assert batch_route(resolve_coder("anthropic/claude-haiku-4-5", at)) == BatchRoute(
        "http://127.0.0.1:9/v1", "claude-haiku-4-5", provider="anthropic")
    assert batch_route(resolve_coder("claude-haiku-4-5", CoderOptions())) == BatchRoute(
        None, "claude-haiku-4-5", provider="anthropic")
    assert batch_route(resolve_coder("claude-haiku-4-5", at)) is None  # litellm sends it to an OpenAI endpoint
    for name in ("lookup", "gemini/gemini-pro", "rag:openai/m", "verify:openai/m", "gpt-4o-mini",
                 "rag:anthropic/claude-haiku-4-5"):
        assert batch_route(resolve_coder(name, at if name.endswith("openai/m") else CoderOptions())) is None, name


# -- the provider's words ---------------------------------------------------------------------------------------
class _Refusal(Exception):
    def __init__(self, text: str, body: object = None, status_code: int | None = None, message: str = "") -> None:
        super().__init__(text)
        self.body, self.status_code, self.message = body, status_code, message


def test_a_refusal_is_the_providers_message_on_one_line_masked() -> None:
    nested = _Refusal("x", body={"error": {"message": "Invalid\n  key sk-abcdef0123456789abcdefXYZ  given"}})
    assert api_message(nested) == "Invalid key sk-*** given"
    flat = _Refusal("x", body={"message": "  file\ttoo large  "}, status_code=400)
    assert api_message(flat) == "file too large"
    no_words = _Refusal("raw text", body={"error": {"message": ""}}, status_code=502, message="Bad\n gateway")
    assert api_message(no_words) == "HTTP 502: Bad gateway"
    assert api_message(_Refusal("raw  text", body="not a dict", status_code=500)) == "HTTP 500: raw text"
    assert api_message(_Refusal("plain\nwords", body=None)) == "_Refusal: plain words"
    assert api_message(ValueError("token sk-abcdef0123456789abcdefXYZ")) == "ValueError: token sk-***"
    assert api_message(_Refusal("x", body={"error": "text"}, status_code=404, message="gone")) == "HTTP 404: gone"


# -- each way a batch ends ----------------------------------------------------------------------------------------
def test_a_completed_batch_shows_its_progress_and_leaves_nothing_open(server, store) -> None:
    server.batch_api.plan.in_progress_s = 0.3
    runner = runner_for(server, store)
    calls = calls_of(4)
    left, got, shown = run(runner, calls)
    assert left == [] and sorted(got) == sorted(calls)
    assert all(o.keep and o.attempts == 1 and o.usage["batch"] is True for o in got.values())
    assert any(s.startswith("batches: 1 ") and s.endswith(" run by the provider") for s in shown)
    assert shown[-1] == ""
    assert [(r["state"], r["done"], r["requests"], r["owner"]) for r in runner.ledger.rows()] == \
        [("completed", 1, 4, runner.owner)]
    assert runner.ledger.rows(open_only=True) == []
    assert [f["filename"] for f in server.batch_api.files()] == [f"medcode-{runner.ledger.rows()[0]['intent']}.jsonl"]


def test_a_file_too_large_is_refused_and_its_requests_stream(server, store) -> None:
    runner = runner_for(server, store)
    runner.max_requests = 2
    calls = calls_of(3)  # two batches: k0+k1 (too large for the provider), k2 alone
    one_line = 260
    server.batch_api.plan.max_file_bytes = one_line
    notices: list[str] = []
    left, got, _ = run(runner, calls, notices=notices)
    assert sorted(left) == ["k0", "k1"] and sorted(got) == ["k2"]
    refused = [r for r in runner.ledger.rows() if r["state"] == "rejected"]
    assert [(r["done"], r["requests"]) for r in refused] == [(1, 2)]
    assert refused[0]["message"].startswith("File is too large: ")
    assert notices == [f"medcode: 1 batch(es) refused ({refused[0]['message']}); their requests are asked by "
                       "streaming"]
    assert server.batch_api.submissions == 1


def test_refused_keys_the_run_does_not_want_are_not_streamed(server, store) -> None:
    runner = runner_for(server, store)
    runner.max_requests = 1
    calls = calls_of(3)
    server.batch_api.plan.outage = failing(4, "POST", "/batches")  # the first batch cannot be created
    left, got, _ = run(runner, calls, wanted={"k1", "k2"})
    assert left == [] and sorted(got) == ["k1", "k2"]
    (first,) = [r for r in runner.ledger.rows() if r["state"] == "rejected"]
    assert first["file_id"] is not None and first["batch_id"] is None and first["message"] == (
        "The server had an error while processing your request.")


def test_when_every_batch_is_refused_nothing_ran_and_the_run_says_so(server, store) -> None:
    runner = runner_for(server, store)
    server.batch_api.plan.reject = "Line 1: the file cannot be read."
    with pytest.raises(BatchRejected) as refused:
        run(runner, calls_of(2))
    assert str(refused.value) == ("medcode: the batch API refused every batch: Line 1: the file cannot be read.; "
                                  "nothing was run (those questions are unanswered; nothing received was lost)")
    (row,) = runner.ledger.rows()
    assert (row["state"], row["done"], row["message"]) == ("rejected", 1, "Line 1: the file cannot be read.")


def test_a_failed_batch_beside_a_completed_one_streams_only_its_own_requests(server, store) -> None:
    runner = runner_for(server, store)
    runner.max_requests = 2
    plan = server.batch_api.plan
    made = [0]
    real = server.batch_api._create

    def second_rejected(handler, raw):  # the provider fails validation of the second batch only
        made[0] += 1
        plan.reject = "invalid file" if made[0] == 2 else None
        real(handler, raw)

    server.batch_api._create = second_rejected
    notices: list[str] = []
    left, got, _ = run(runner, calls_of(4), notices=notices)
    assert sorted(left) == ["k2", "k3"] and sorted(got) == ["k0", "k1"]
    assert sorted((r["state"], r["message"]) for r in runner.ledger.rows()) == \
        [("completed", None), ("rejected", "invalid file")]
    assert notices == ["medcode: 1 batch(es) refused (invalid file); their requests are asked by streaming"]


def test_an_expired_batch_hands_back_what_it_never_ran(server, store) -> None:
    runner = runner_for(server, store)
    server.batch_api.plan.expire_after = 2
    left, got, _ = run(runner, calls_of(5))
    assert sorted(got) == ["k0", "k1"] and sorted(left) == ["k2", "k3", "k4"]
    (row,) = runner.ledger.rows()
    assert (row["state"], row["done"], row["completed"]) == ("expired", 1, 2)


def test_error_lines_end_as_the_case_error_or_are_streamed_again(server, store) -> None:
    def fail(request: Request) -> tuple[int, str] | None:
        return {"Description 1": (400, "flagged  by\nthe policy"), "Description 2": (500, "try later"),
                "Description 3": (401, "Incorrect API key provided: sk-abcdef0123456789abcdefXYZ")}.get(
                    request.description or "")

    server.batch_api.plan.fail = fail
    runner = runner_for(server, store)
    left, got, _ = run(runner, calls_of(4))
    assert sorted(got) == ["k0", "k1"] and sorted(left) == ["k2", "k3"]
    assert got["k0"].text == "Code: R69"
    assert (got["k1"].text, got["k1"].keep) == (None, True)
    assert got["k1"].error.startswith("HTTP 400 batch request: flagged by the policy")
    (row,) = runner.ledger.rows()
    assert (row["state"], row["done"], row["completed"], row["failed"]) == ("completed", 1, 1, 3)


def test_a_failed_poll_and_a_failed_download_are_tried_again(server, store) -> None:
    api = server.batch_api
    api.plan.outage = failing(4, "GET", "/batches/")  # the client's own 3 retries, then one more: one poll lost
    runner = runner_for(server, store)
    notices: list[str] = []
    left, got, _ = run(runner, calls_of(2), notices=notices)
    assert left == [] and sorted(got) == ["k0", "k1"]
    (row,) = runner.ledger.rows()
    assert notices == [f"medcode: polling batch {row['batch_id']}: The server had an error while processing your "
                       "request.; trying again"]

    api.plan.outage = failing(4, "GET", "/files/")
    runner = runner_for(server, store)
    notices = []
    left, got, _ = run(runner, calls_of(2, first=2), notices=notices)
    assert left == [] and sorted(got) == ["k2", "k3"]
    (row,) = [r for r in runner.ledger.rows() if r["batch_id"] != row["batch_id"]]
    assert notices == [f"medcode: collecting batch {row['batch_id']}: The server had an error while processing "
                       "your request.; trying again"]
    assert row["done"] == 1
    assert api.duplicate_submissions() == {}


def test_the_poll_backs_off_to_its_ceiling(server, store, monkeypatch) -> None:
    server.batch_api.plan.in_progress_s = 0.6
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the runner's waits only: its module's clock, not the process's
        slept.append(seconds)
        time.sleep(0.05)

    monkeypatch.setattr(batch_module, "time", SimpleNamespace(time=time.time, sleep=sleep))
    runner = runner_for(server, store)
    runner.poll_s, runner.poll_max_s = 0.01, 0.02
    run(runner, calls_of(1))
    assert slept[:3] == pytest.approx([0.01, 0.015, 0.02]) and slept.count(0.02) >= 3  # then at its ceiling


# -- re-attaching and adopting ---------------------------------------------------------------------------------
def test_open_batches_are_adopted_from_the_dead_and_the_ownerless_never_from_the_living(store) -> None:
    ledger = BatchLedger(store)
    route = BatchRoute("http://127.0.0.1:9/v1", "m")
    me = owner_id("me")
    dead = me.split("|")[0] + "|999999999|old"
    alive_elsewhere = me.split("|")[0] + f"|{1}|init"  # pid 1 is running
    for intent, owner in (("mine", me), ("dead", dead), ("none", ""), ("living", alive_elsewhere)):
        ledger.record(intent, "openai/m", route, [f"{intent}-key"], owner)
    ledger.record("closed", "openai/m", route, ["c"], dead)
    ledger.update("closed", done=1)
    taken = ledger.adopt(me)
    assert [r["intent"] for r in taken] == ["mine", "dead", "none"]
    assert all(r["owner"] == me for r in taken)
    owners = {r["intent"]: r["owner"] for r in ledger.rows()}
    assert owners == {"mine": me, "dead": me, "none": me, "living": alive_elsewhere, "closed": dead}
    assert ledger.keys("dead") == ["dead-key"] and ledger.keys("nothing") == []


def test_the_ledger_keeps_the_endpoint_without_its_password_and_reattaches_with_the_runs_own(
        server, store) -> None:
    host = server.base_url.split("//", 1)[1]
    secret_base = f"http://user:pw-0123456789@{host}"
    runner = BatchRunner(store, {"openai/m": BatchRoute(secret_base, "m")}, owner_id("a"), poll_s=0.02,
                         poll_max_s=0.05)
    ledger = BatchLedger(store)
    ledger.record("held", "openai/m", BatchRoute(secret_base, "m"), ["k0"], "")
    (row,) = ledger.rows()
    assert row["api_base"] == f"http://***@{host}"
    left, got, _ = run(runner, calls_of(1))
    assert left == [] and list(got) == ["k0"]
    assert [base for _, base in runner._providers] == [secret_base]  # the run's endpoint, never the masked one
    moved = BatchRunner(store, {"openai/m": BatchRoute(server.base_url, "m")}, owner_id("b"))
    assert moved._row_provider({"model": "openai/m", "api_base": f"http://***@{host}", "provider": None}) is \
        moved._providers["openai", f"http://***@{host}"]  # the model moved: the batch's own endpoint is asked
    assert moved._row_provider({"model": "openai/x", "api_base": server.base_url, "provider": "openai"}) is \
        moved._providers["openai", server.base_url]


def _upload(server: ScriptedServer, intent: str, calls: dict[str, Call], batch: bool = False) -> tuple[str, str | None]:
    """What a killed run may have left at the provider: its file (by name), and maybe the batch made of it."""
    client = OpenAI(base_url=server.base_url, api_key="sk-test")
    body = b"".join(request_line(k, "m", call) for k, call in calls.items())
    uploaded = client.files.create(file=(f"medcode-{intent}.jsonl", body), purpose="batch")
    if not batch:
        return uploaded.id, None
    made = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", metadata={"medcode_intent": intent})
    return uploaded.id, made.id


def test_a_file_uploaded_without_its_batch_gets_its_batch_once_and_a_batch_behind_newer_ones_is_found(
        server, store) -> None:
    """Two intents a killed run left: ``half`` reached the provider as a file only (its batch is made of that
    file, not uploaded again); ``whole`` has its batch too, listed behind a newer batch of someone else's."""
    ledger = BatchLedger(store)
    route = BatchRoute(server.base_url, "m")
    half, whole = calls_of(2), calls_of(2, first=2)
    ledger.record("half", "openai/m", route, list(half), "")
    ledger.record("whole", "openai/m", route, list(whole), "")
    half_file, _ = _upload(server, "half", half)
    whole_file, whole_batch = _upload(server, "whole", whole, batch=True)
    _upload(server, "someone-else", calls_of(1, first=9), batch=True)  # newer than whole's batch
    runner = runner_for(server, store)
    left, got, _ = run(runner, half | whole)
    assert left == [] and sorted(got) == ["k0", "k1", "k2", "k3"]
    rows = {r["intent"]: r for r in runner.ledger.rows()}
    made = {(b["metadata"] or {}).get("medcode_intent"): b for b in server.batch_api.batches()}
    assert (rows["half"]["file_id"], rows["half"]["batch_id"]) == (half_file, made["half"]["id"])
    assert made["half"]["input_file_id"] == half_file and made["half"]["endpoint"] == "/v1/chat/completions"
    assert (rows["whole"]["file_id"], rows["whole"]["batch_id"]) == (whole_file, whole_batch)
    assert all(rows[i]["state"] == "completed" and rows[i]["done"] == 1 for i in ("half", "whole"))
    assert (server.batch_api.uploads, server.batch_api.submissions) == (3, 3)
    assert server.batch_api.duplicate_submissions() == {}


def test_a_file_whose_batch_cannot_be_made_now_is_held_with_its_file_and_made_by_the_next_run(
        server, store) -> None:
    ledger = BatchLedger(store)
    calls = calls_of(2)
    ledger.record("half", "openai/m", BatchRoute(server.base_url, "m"), list(calls), "")
    file_id, _ = _upload(server, "half", calls)
    server.batch_api.plan.outage = failing(4, "POST", "/batches")
    notices: list[str] = []
    runner = runner_for(server, store)
    left, got, _ = run(runner, calls, notices=notices)
    assert (left, got, sorted(runner.unanswered)) == ([], {}, ["k0", "k1"])
    assert notices == ["medcode: could not re-attach to batch half: The server had an error while processing your "
                       "request.; its 2 request(s) are not sent again, a rerun re-attaches"]
    (row,) = runner.ledger.rows()
    assert (row["file_id"], row["batch_id"], row["state"], row["done"], row["owner"]) == \
        (file_id, None, "uploaded", 0, None)
    again = runner_for(server, store)
    left, got, _ = run(again, calls)
    assert left == [] and sorted(got) == ["k0", "k1"] and again.unanswered == {}
    assert (server.batch_api.uploads, server.batch_api.submissions) == (1, 1)


# -- medcode batch status / cancel ------------------------------------------------------------------------------
def _open_batch(server: ScriptedServer, ledger: BatchLedger, intent: str, keys: list[str]) -> str:
    """A batch at the provider that runs for a while, recorded as a run records it."""
    client = OpenAI(base_url=server.base_url, api_key="sk-test")
    body = b"".join(request_line(k, "m", Call("openai/m", question(i))) for i, k in enumerate(keys))
    uploaded = client.files.create(file=(f"medcode-{intent}.jsonl", body), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"medcode_intent": intent})
    ledger.record(intent, "openai/m", BatchRoute(server.base_url, "m"), keys, "")
    ledger.update(intent, file_id=uploaded.id, batch_id=batch.id, state=batch.status)
    return batch.id


def test_status_lists_every_batch_with_its_state_counts_and_endpoint(server, store) -> None:
    assert status_lines(store) == ["no batches recorded in this cache"]
    ledger = BatchLedger(store)
    ledger.record("aaaaaaaaaaaaXYZ", "openai/gpt-4o-mini", BatchRoute(None, "gpt-4o-mini"), ["a", "b"], "")
    ledger.record("bbbbbbbbbbbb", "openai/m", BatchRoute("http://u:secret-pw@h:1/v1?key=k", "m"), ["c"], "")
    ledger.update("bbbbbbbbbbbb", batch_id="batch-7", state="completed", completed=1, done=1)
    ledger.record("cccc", "openai/m", BatchRoute("http://h:1/v1", "m"), ["d"], "")
    ledger.update("cccc", batch_id="batch-8", state="failed", failed=1, message="bad file")
    ledger.update("cccc", done=1, state="rejected")
    lines = status_lines(store)
    assert lines == [
        "batch                        model                        state                  requests completed  "
        "failed  endpoint",
        "(aaaaaaaaaaaa)               openai/gpt-4o-mini           preparing                     2         0 "
        "      0  OpenAI",
        "batch-7                      openai/m                     completed, collected          1         1 "
        "      0  http://h:1/v1",
        "batch-8                      openai/m                     rejected                      1         0 "
        "      1  http://h:1/v1  bad file",
    ]


def test_cancel_stops_open_batches_one_or_all_and_names_what_it_could_not(server, store) -> None:
    server.batch_api.plan.validating_s = 30  # they stay open until cancelled
    ledger = BatchLedger(store)
    first = _open_batch(server, ledger, "one", ["a"])
    second = _open_batch(server, ledger, "two", ["b"])
    ledger.record("never-sent", "openai/m", BatchRoute(server.base_url, "m"), ["c"], "")
    with pytest.raises(BatchRejected, match=rf"^no batch nope is recorded in {store.path}$"):
        cancel(store, "nope")
    assert cancel(store, first) == [f"{first}: cancelling"]
    assert {r["intent"]: r["state"] for r in ledger.rows()}["one"] == "cancelling"
    ledger.update("one", state="cancelled")  # as the polling run records it
    assert cancel(store, None) == [f"{second}: cancelling"]
    ledger.update("two", done=1)
    assert cancel(store, None) == ["no open batch to cancel"]
    ledger.update("two", done=0)
    ledger.update("one", state="in_progress")
    server.batch_api.plan.outage = failing(4, "POST", f"/batches/{first}/")
    lines = cancel(store, None)  # the second was cancelled before: the provider says how far it got
    assert lines[0] == f"{first}: not cancelled: The server had an error while processing your request."
    assert lines[1:] in ([f"{second}: cancelling"], [f"{second}: cancelled"])
    assert {r["intent"]: r["state"] for r in ledger.rows()}["one"] == "in_progress"
    assert {r["intent"]: r["state"] for r in ledger.rows()}["two"] in ("cancelling", "cancelled")


# -- moved: the runner end to end in process, re-attaching, result lines ------------------------------------
def test_the_runner_submits_polls_and_delivers_each_answer_once(tmp_path, server) -> None:
    server.batch_api.plan.in_progress_s = 0.2
    calls = {f"k{i}": Call("openai/m", question(i)) for i in range(5)} | {"s": Call("lookup", question(9))}
    store = ResponseStore(tmp_path / "c.db")
    runner = runner_for(server, store)
    left, got, _ = run(runner, calls)
    assert left == ["s"]  # no batch API: streamed
    assert sorted(got) == [f"k{i}" for i in range(5)]
    assert all(o.text == "Code: R69" and o.usage["batch"] is True and o.usage["prompt_tokens"] > 0
               for o in got.values())
    (row,) = runner.ledger.rows()
    assert (row["state"], row["done"], row["requests"], row["completed"], row["failed"]) == ("completed", 1, 5, 5, 0)
    assert row["model"] == "openai/m" and row["sent_model"] == "m" and row["file_id"] and row["batch_id"]
    assert sorted(runner.ledger.keys(row["intent"])) == sorted(got)
    assert server.batch_api.submissions == 1 and runner.unanswered == {}
    assert status_lines(store)[1].startswith(f"{row['batch_id']:<28} openai/m")
    assert "completed, collected" in status_lines(store)[1]
    assert cancel(store, None) == ["no open batch to cancel"]
    store.close()


def test_the_runner_chunks_by_count_and_by_size(tmp_path, server) -> None:
    calls = {f"k{i}": Call("openai/m", question(i)) for i in range(7)}
    store = ResponseStore(tmp_path / "c.db")
    runner = runner_for(server, store)
    runner.max_requests = 3
    run(runner, calls)
    assert sorted(b["request_counts"]["total"] for b in server.batch_api.batches()) == [1, 3, 3]
    line = len(request_line("k0", "m", calls["k0"]))
    store2 = ResponseStore(tmp_path / "d.db")
    runner2 = runner_for(server, store2)
    runner2.max_bytes = 2 * line + 5  # two lines fit, not three
    more = {f"j{i}": Call("openai/m", question(10 + i)) for i in range(4)}
    run(runner2, more)
    assert sorted(b["request_counts"]["total"] for b in server.batch_api.batches()) == [1, 2, 2, 3, 3]
    assert server.batch_api.duplicate_submissions() == {}
    store.close()
    store2.close()


def test_re_attaching_finds_the_file_and_the_batch_or_sends_once_or_waits(tmp_path, server) -> None:
    """Three intents a killed run left: one that never reached the provider (sent again, once), one whose file
    and batch are at the provider (found and collected), one that cannot be looked up now (held, unkept, its
    owner let go so a later run looks again)."""
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key="sk-test")
    db = tmp_path / "c.db"
    calls = {f"k{i}": Call("openai/m", question(i)) for i in range(6)}
    dead = owner_id("old").split("|")[0] + "|999999999|old"
    store = ResponseStore(db)
    ledger = BatchLedger(store)
    route = BatchRoute(server.base_url, "m")
    ledger.record("never", "openai/m", route, ["k0", "k1"], dead)
    ledger.record("found", "openai/m", route, ["k2", "k3"], dead)
    body = b"".join(request_line(k, "m", calls[k]) for k in ("k2", "k3"))
    uploaded = client.files.create(file=("medcode-found.jsonl", body), purpose="batch")
    client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                          metadata={"medcode_intent": "found"})
    store.close()

    store = ResponseStore(db)
    runner = runner_for(server, store)
    notices: list[str] = []
    runner.notice = notices.append
    left, got, _ = run(runner, calls)
    assert left == [] and sorted(got) == [f"k{i}" for i in range(6)]
    states = {r["intent"]: (r["state"], r["done"], r["message"]) for r in runner.ledger.rows()}
    assert states["never"] == ("abandoned", 1, "never reached the provider")
    assert states["found"][:2] == ("completed", 1)
    assert server.batch_api.submissions == 2 and server.batch_api.duplicate_submissions() == {}
    assert notices[0] == "medcode: re-attached to 1 batch(es) an earlier run submitted (2 request(s)); nothing is " \
                         "submitted twice"
    store.close()

    store = ResponseStore(db)
    BatchLedger(store).record("lost", "openai/m", route, ["k6", "k7"], dead)
    store.close()
    server.batch_api.plan.outage = lambda method, path: 503 if path.startswith("/files") else None
    store = ResponseStore(db)
    runner = runner_for(server, store)
    runner.notice = notices.append
    more = {"k6": Call("openai/m", question(6)), "k7": Call("openai/m", question(7))}
    left, got, _ = run(runner, {"k6": more["k6"]})  # k7 is the intent's, not wanted by this run
    assert (left, got) == ([], {})
    (held,) = runner.unanswered.items()
    assert held[0] == "k6" and not held[1].keep and held[1].attempts == 0
    assert held[1].error.startswith("not asked: its batch (intent lost) may be at the provider")
    assert notices[-1] == ("medcode: could not re-attach to batch lost: The server had an error while processing "
                           "your request.; its 2 request(s) are not sent again, a rerun re-attaches")
    (row,) = [r for r in runner.ledger.rows() if r["intent"] == "lost"]
    assert (row["done"], row["owner"], row["state"]) == (0, None, "preparing")
    assert server.batch_api.submissions == 2
    store.close()


def test_read_result_reads_each_kind_of_line() -> None:
    def line(status: int | None, body: dict | None = None) -> dict:
        return {"custom_id": "k", "response": None if status is None else {"status_code": status, "body": body or {}}}

    answer = {"choices": [{"message": {"content": "Code: A00.0"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
    got = read_result(line(200, answer))
    assert (got.text, got.error, got.attempts, got.keep) == ("Code: A00.0", None, 1, True)
    assert got.usage == {"batch": True, "prompt_tokens": 7, "completion_tokens": 2}
    empty = read_result(line(200, {"choices": [{"message": {"content": None}, "finish_reason": "content_filter"}],
                                   "usage": {"prompt_tokens": 7, "completion_tokens": 0}}))
    assert empty.error == "no answer text (content: null, finish_reason: content_filter)" and empty.keep
    assert empty.usage == {"batch": True, "prompt_tokens": 7, "completion_tokens": 0}
    broken = read_result(line(200, {"usage": {"prompt_tokens": 7, "completion_tokens": 0}}))
    assert (broken.text, broken.error, broken.usage) == (None, "malformed response in the batch output",
                                                         {"batch": True})
    assert (broken.latency_s, broken.attempts, broken.keep) == (0.0, 1, True)
    assert read_result(line(200, {"choices": []})).error == "malformed response in the batch output"
    assert read_result(line(None)) is None  # never run: expired or cancelled
    assert read_result({"custom_id": "k"}) is None
    for status, message in ((500, "server error"), (429, "Rate limit reached"), (401, "Incorrect API key"),
                            (404, "no such model"), (429, "You exceeded your current quota"), (503, "")):
        assert read_result(line(status, {"error": {"message": message}})) is None, status
    bad = read_result(line(400, {"error": {"message": "flagged by the policy", "code": "content_filter"}}))
    assert (bad.text, bad.error, bad.usage, bad.keep) == (None, "HTTP 400 batch request: flagged by the policy",
                                                          {"batch": True}, True)
    assert read_result(line(422, {"error": "not a dict"})).error == "HTTP 422 batch request"


def test_request_lines_and_the_progress_summary() -> None:
    call = Call("openai/m", question(1))
    entry = json.loads(request_line("key1", "m", call))
    assert entry == {"custom_id": "key1", "method": "POST", "url": "/v1/chat/completions",
                     "body": {"model": "m", "messages": [{"role": "user", "content": "What is the code for "
                                                                                     "<Description 1>?"}],
                              "temperature": 0.2, "max_tokens": 50}}
    assert request_line("k", "m", Call("openai/m", Question("icd10cm", "é", (("user", "é"),), 0.2, 5))).endswith(
        '"content": "é"}], "temperature": 0.2, "max_tokens": 5}}\n'.encode())
    assert _summary({}) == ""
    assert _summary({"a": ("in_progress", 3, 1, 10), "b": ("validating", 0, 0, 5), "c": ("in_progress", 2, 0, 4)}) \
        == "batches: 2 in_progress, 1 validating · 6/19 run by the provider"
