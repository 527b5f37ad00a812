"""``--medcode-batch`` for Anthropic models: the batch runner and real pytest sessions sending their questions
through the scripted server's Message Batches API (``/v1/messages/batches``) with the real ``anthropic`` client —
answers and errors as the streamed path gives them, expiry and cancel, a refused batch, a submission whose
answer was lost and a ``kill -9`` mid-poll that re-attach without submitting again, batch prices, and the one
line a run without the ``anthropic`` package gets."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest

from conftest import missing
from helpers import (
    batch_question,
    code_list_args,
    lost_submission_is_found_again,
    poll_outage,
    run_batch,
    wait_for_batch,
)
from pytest_medcode.asking.anthropic_batch import read_result, request_line
from pytest_medcode.asking.batch import BatchLedger, BatchRejected, BatchRunner, cancel, status_lines
from pytest_medcode.asking.batch_provider import BatchRoute
from pytest_medcode.asking.cache import ResponseStore, owner_id
from pytest_medcode.asking.coders import Question
from pytest_medcode.asking.engine import Call, Outcome
from pytest_medcode.asking.progress import Progress
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.responders import Request, mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = "anthropic/claude-haiku-4-5"  # in litellm's price map, with its batch prices


@pytest.fixture(autouse=True)
def anthropic_client() -> None:
    """The batches go through the real ``anthropic`` client (the anthropic extra; CI installs it)."""
    if importlib.util.find_spec("anthropic") is None:
        missing("the anthropic package (pip install 'pytest-medcode[anthropic]')")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(lambda request: "Code: R69") as srv:
        srv.anthropic_batch_api.plan.in_progress_s = 0.05
        yield srv


def calls_of(n: int, first: int = 0) -> dict[str, Call]:
    return {f"k{i}": Call(MODEL, batch_question(i)) for i in range(first, first + n)}


def runner_for(server: ScriptedServer, store: ResponseStore, owner: str = "") -> BatchRunner:
    route = BatchRoute(server.base_url, "claude-haiku-4-5", provider="anthropic")
    return BatchRunner(store, {MODEL: route}, owner or owner_id("in-process"), poll_s=0.02, poll_max_s=0.05)


def dead_owner() -> str:
    return owner_id("old").split("|")[0] + "|999999999|old"


# -- the runner against the scripted Message Batches API ----------------------------------------------------------
def test_a_batch_is_sent_once_polled_and_every_answer_delivered(server, store) -> None:
    server.anthropic_batch_api.plan.in_progress_s = 0.3
    runner = runner_for(server, store)
    left, got = run_batch(runner, calls_of(4))
    assert left == [] and sorted(got) == ["k0", "k1", "k2", "k3"]
    assert all(o.text == "Code: R69" and o.keep and o.usage["batch"] is True and o.usage["prompt_tokens"] > 0
               for o in got.values())
    (row,) = runner.ledger.rows()
    assert (row["provider"], row["state"], row["done"], row["requests"], row["completed"]) == \
        ("anthropic", "ended", 1, 4, 4)
    assert row["sent_model"] == "claude-haiku-4-5" and row["batch_id"].startswith("msgbatch")
    assert server.anthropic_batch_api.submissions == 1 and server.batch_api.submissions == 0
    assert server.stats.total_requests == 4
    assert "ended, collected" in status_lines(store)[1]
    assert cancel(store, None) == ["no open batch to cancel"]


def test_request_lines_are_the_messages_api_body() -> None:
    entry = json.loads(request_line("key1", "claude-haiku-4-5", Call(MODEL, batch_question(1))))
    assert entry == {"custom_id": "key1", "params": {
        "model": "claude-haiku-4-5", "max_tokens": 50, "temperature": 0.2, "system": "Answer with the code.",
        "messages": [{"role": "user", "content": "What is the code for <Description 1>?"}]}}
    plain = Question("icd10cm", "é", (("user", "é"),), 0.0, 5)
    assert "system" not in json.loads(request_line("k", "m", Call(MODEL, plain)))["params"]


def test_each_kind_of_result_line() -> None:
    def succeeded(content: object, usage: object = None) -> dict:
        return {"custom_id": "k", "result": {"type": "succeeded", "message": {
            "content": content, "stop_reason": "end_turn", "usage": usage or {"input_tokens": 7, "output_tokens": 2}}}}

    def errored(kind: str, message: str = "words") -> dict:
        return {"custom_id": "k", "result": {"type": "errored", "error": {"type": "error", "error": {
            "type": kind, "message": message}}}}

    got = read_result(succeeded([{"type": "text", "text": "Code: "}, {"type": "text", "text": "A00.0"}]))
    assert (got.text, got.error, got.attempts, got.keep) == ("Code: A00.0", None, 1, True)
    assert got.usage == {"batch": True, "prompt_tokens": 7, "completion_tokens": 2}
    assert read_result(succeeded([])).error == "no answer text (stop_reason: end_turn)"
    assert read_result(succeeded(None)).error == "malformed response in the batch results"
    flagged = read_result(errored("invalid_request_error", "prompt  too\nlong"))
    assert (flagged.text, flagged.error, flagged.keep) == (None, "HTTP 400 batch request: prompt too long", True)
    for kind in ("rate_limit_error", "api_error", "overloaded_error", "authentication_error", "not_found_error"):
        assert read_result(errored(kind)) is None, kind  # asked again by streaming
    for kind in ("canceled", "expired"):
        assert read_result({"custom_id": "k", "result": {"type": kind}}) is None
    assert read_result({"custom_id": "k"}) is None


def test_error_lines_end_as_the_case_error_or_are_streamed_again(server, store) -> None:
    def fail(request: Request) -> tuple[int, str] | None:
        return {"Description 1": (400, "flagged by the policy"), "Description 2": (529, "Overloaded"),
                "Description 3": (401, "invalid x-api-key")}.get(request.description or "")

    server.anthropic_batch_api.plan.fail = fail
    left, got = run_batch(runner_for(server, store), calls_of(4))
    assert sorted(got) == ["k0", "k1"] and sorted(left) == ["k2", "k3"]
    assert got["k1"].error == "HTTP 400 batch request: flagged by the policy" and got["k1"].keep


def test_an_expired_batch_hands_back_what_it_never_ran(server, store) -> None:
    server.anthropic_batch_api.plan.expire_after = 2
    left, got = run_batch(runner_for(server, store), calls_of(5))
    assert sorted(got) == ["k0", "k1"] and sorted(left) == ["k2", "k3", "k4"]


def test_a_refused_batch_is_the_providers_line_and_its_requests_stream(server, store) -> None:
    server.anthropic_batch_api.plan.reject = "requests.0.params.model: unknown model"
    with pytest.raises(BatchRejected, match=r"refused every batch: requests.0.params.model: unknown model; nothing"):
        run_batch(runner_for(server, store), calls_of(2))
    server.anthropic_batch_api.plan.reject = None
    runner = runner_for(server, store)
    runner.max_requests = 2  # two batches: k0+k1 (too large for the provider), k2 alone
    one = len(request_line("k2", "claude-haiku-4-5", Call(MODEL, batch_question(2))))
    server.anthropic_batch_api.plan.max_file_bytes = one + 40
    notices: list[str] = []
    left, got = run_batch(runner, calls_of(3), notices)
    assert (sorted(left), sorted(got)) == (["k0", "k1"], ["k2"])
    assert notices == [f"medcode: 1 batch(es) refused (Request too large: {2 * one + 16} bytes, the maximum for a "
                       f"message batch is {one + 40} bytes.); their requests are asked by streaming"]
    assert server.anthropic_batch_api.submissions == 1


def test_a_submission_whose_answer_was_lost_is_found_by_the_next_run_not_sent_again(server, store) -> None:
    lost_submission_is_found_again(server, server.anthropic_batch_api, lambda: runner_for(server, store),
                                   calls_of(3))


def test_an_intent_is_told_from_someone_elses_batch_of_its_size_by_its_results(server, store) -> None:
    """A killed run's intent without a batch id: an ended batch of the same size whose results are not its keys
    is someone else's, so the intent never reached Anthropic and is sent (once)."""
    from pytest_medcode.asking.anthropic_batch import AnthropicBatches

    other = AnthropicBatches(server.base_url)
    lines = [request_line(f"x{i}", "claude-haiku-4-5", Call(MODEL, batch_question(i))) for i in range(2)]
    made = other.submit("other", lines, lambda file_id: None)
    while not other.retrieve(made.id).ended:
        time.sleep(0.02)
    BatchLedger(store).record("lost", MODEL, runner_for(server, store).routes[MODEL], ["k0", "k1"], dead_owner())
    left, got = run_batch(runner_for(server, store), calls_of(2))
    assert left == [] and sorted(got) == ["k0", "k1"]
    states = {r["intent"]: (r["state"], r["message"]) for r in BatchLedger(store).rows()}
    assert states["lost"] == ("abandoned", "never reached the provider")
    assert server.anthropic_batch_api.submissions == 2 and server.anthropic_batch_api.duplicate_submissions() == {}


def test_two_running_batches_of_its_size_hold_the_intent_for_a_later_run(server, store) -> None:
    from pytest_medcode.asking.anthropic_batch import AnthropicBatches

    server.anthropic_batch_api.plan.in_progress_s = 30
    other = AnthropicBatches(server.base_url)
    for n in range(2):
        other.submit(f"o{n}", [request_line(f"x{n}{i}", "m", Call(MODEL, batch_question(i))) for i in range(2)],
                     lambda file_id: None)
    BatchLedger(store).record("lost", MODEL, runner_for(server, store).routes[MODEL], ["k0", "k1"], dead_owner())
    notices: list[str] = []
    runner = runner_for(server, store)
    left, got = run_batch(runner, calls_of(2), notices)
    assert (left, got, sorted(runner.unanswered)) == ([], {}, ["k0", "k1"])
    assert notices == ["medcode: could not re-attach to batch lost: LookupError: 2 running batches of its size were "
                       "made since it, and none can be told its own until they end; its 2 request(s) are not sent "
                       "again, a rerun re-attaches"]
    assert server.anthropic_batch_api.submissions == 2


def test_cancel_stops_the_batch_and_the_run_hands_back_what_it_never_ran(server, store) -> None:
    server.anthropic_batch_api.plan.in_progress_s = 30
    runner = runner_for(server, store)
    seen: list[str] = []

    def cancel_once() -> None:  # as `medcode batch cancel --all` in another terminal, once the batch is polled
        rows = runner.ledger.rows(open_only=True) if hasattr(runner, "ledger") else []
        if rows and rows[0]["batch_id"] and not seen:
            seen.extend(cancel(store, None))

    got: dict[str, Outcome] = {}
    calls = calls_of(3)
    left = runner.run(list(calls), set(calls), calls.__getitem__, lambda items: got.update(
        {k: o for k, _, o in items}), Progress(total=3), cancel_once)
    assert seen and seen[0].endswith(": canceling")
    assert got == {} and sorted(left) == ["k0", "k1", "k2"]  # none was run: all are streamed
    assert runner.ledger.rows()[0]["state"] == "ended"
    assert server.stats.total_requests == 0


def test_a_failed_poll_is_tried_again(server, store) -> None:
    server.anthropic_batch_api.plan.outage = poll_outage(4, 529)  # the client's own 3 retries, then one poll lost
    notices: list[str] = []
    left, got = run_batch(runner_for(server, store), calls_of(2), notices)
    assert left == [] and sorted(got) == ["k0", "k1"]
    assert len(notices) == 1 and notices[0].startswith("medcode: polling batch msgbatch") and \
        notices[0].endswith("; trying again")


def test_a_cache_from_before_anthropic_batches_gets_its_provider_column(tmp_path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE batches (intent TEXT PRIMARY KEY, model TEXT NOT NULL, sent_model TEXT NOT NULL, "
                     "api_base TEXT, owner TEXT, file_id TEXT, batch_id TEXT, state TEXT NOT NULL, "
                     "requests INTEGER NOT NULL, completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL "
                     "DEFAULT 0, message TEXT, done INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, "
                     "updated REAL NOT NULL)")
        conn.execute("INSERT INTO batches VALUES ('i', 'openai/m', 'm', NULL, NULL, 'f', 'batch-1', 'completed', 1, "
                     "1, 0, NULL, 1, 0, 0)")
    store = ResponseStore(db)
    (row,) = BatchLedger(store).rows()
    assert row["provider"] is None and status_lines(store)[1].endswith("OpenAI")
    store.close()


# -- pytest sessions ------------------------------------------------------------------------------------------
@pytest.fixture
def codes() -> list[tuple[str, str]]:
    billable = load_system("icd10cm").billable_codes()
    return [billable[i] for i in range(0, 72_000, 6_000)]  # 12 codes from across the table


@pytest.fixture
def session_server(codes: list[tuple[str, str]]) -> Iterator[ScriptedServer]:
    mapping = {d: c for c, d in codes[:-2]}  # right on all but the last two codes
    with ScriptedServer(mapping_responder(mapping, default="Code: R69")) as srv:
        srv.anthropic_batch_api.plan.in_progress_s = 0.3
        yield srv


def args(pytester: pytest.Pytester, codes: list[tuple[str, str]], server: ScriptedServer, *extra: str) -> list[str]:
    return code_list_args(pytester, codes, MODEL, server.base_url, "--medcode-cache",
                          str(pytester.path / "cache" / "r.db"), "--medcode-batch", "--medcode-no-preflight", *extra)


def records(pytester: pytest.Pytester) -> list[dict]:
    rows = pq.read_table(pytester.path / "reports" / "latest" / "cases.parquet").to_pylist()
    return sorted(rows, key=lambda r: r["case_id"])


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDCODE_BATCH_POLL_S", "0.1")
    monkeypatch.setenv("MEDCODE_BATCH_POLL_MAX_S", "0.3")


def test_a_session_asks_anthropic_through_one_batch_at_the_batch_price(pytester, codes, session_server) -> None:
    bad = codes[0][1]
    session_server.anthropic_batch_api.plan.fail = lambda r: (400, "flagged") if bad in r.last_user_message else None
    result = pytester.runpytest(*args(pytester, codes, session_server))
    result.stdout.fnmatch_lines(["*3 failed, 9 passed*"])
    rows = records(pytester)
    assert session_server.anthropic_batch_api.submissions == 1 and session_server.stats.total_requests == len(codes)
    flagged = [r for r in rows if r["error"]]
    assert [r["error"] for r in flagged] == ["HTTP 400 batch request: flagged"]
    answered = [r for r in rows if not r["error"]]
    assert all(r["batch"] is True for r in answered) and sum(r["exact_match"] for r in answered) == 9
    for r in answered:  # claude-haiku-4-5 in batches: $0.50 / $2.50 per million tokens (litellm's map)
        assert r["cost_usd"] == pytest.approx((r["prompt_tokens"] * 0.5 + r["completion_tokens"] * 2.5) / 1e6)

    again = pytester.runpytest(*args(pytester, codes, session_server))
    again.stdout.fnmatch_lines(["*3 failed, 9 passed*"])
    assert session_server.anthropic_batch_api.submissions == 1  # all cached: nothing submitted


def test_without_the_anthropic_package_the_run_says_how_to_install_it(pytester, codes, session_server,
                                                                      monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # `import anthropic` fails as when it is not installed
    result = pytester.runpytest(*args(pytester, codes, session_server))
    assert result.ret == 4
    assert result.stderr.str().strip() == (
        f"ERROR: --medcode-batch: {MODEL} goes through Anthropic's Message Batches API, which needs the anthropic "
        "package: pip install 'pytest-medcode[anthropic]' (or drop --medcode-batch to stream)")
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert session_server.stats.total_requests == 0


def test_kill_9_while_polling_reattaches_without_submitting_again(pytester, codes, session_server) -> None:
    session_server.anthropic_batch_api.plan.in_progress_s = 1.5
    argv = args(pytester, codes, session_server)
    env = {**os.environ, "MEDCODE_BATCH_POLL_S": "0.1", "MEDCODE_BATCH_POLL_MAX_S": "0.3"}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *argv], cwd=pytester.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    batch_id = wait_for_batch(pytester.path / "cache" / "r.db", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert session_server.anthropic_batch_api.batches()[0]["processing_status"] == "in_progress"  # killed mid-poll

    result = pytester.runpytest(*argv)
    result.stdout.fnmatch_lines(["*re-attached to 1 batch(es)*", "*2 failed, 10 passed*"])
    api = session_server.anthropic_batch_api
    assert api.submissions == 1 and api.duplicate_submissions() == {}
    assert [b["id"] for b in api.batches()] == [batch_id]
    assert session_server.duplicate_successes() == {} and session_server.stats.total_requests == len(codes)
    assert all(r["batch"] is True for r in records(pytester))
