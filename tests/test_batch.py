"""``--medcode-batch``: real pytest sessions sending their questions through the Batch API of the scripted
server (``/v1/files``, ``/v1/batches``) with the real openai client — the same records as streaming, a
``kill -9`` mid-poll that re-attaches without submitting again, partial errors, expiry, cancel, a refused file,
and the ``medcode batch`` command."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import code_list_args, summary_of, wait_for_batch
from pytest_medcode.asking.batch import (
    BatchLedger,
    BatchRoute,
    request_line,
)
from pytest_medcode.asking.cache import ResponseStore, owner_id
from pytest_medcode.asking.coders import Question
from pytest_medcode.asking.engine import Call
from pytest_medcode.cli import main as medcode
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.responders import Request, mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SAME = ("case_id", "model", "system", "code", "raw_answer", "predicted_code", "exact_match", "outcome", "error",
        "prompt_tokens", "completion_tokens")


@pytest.fixture
def codes() -> list[tuple[str, str]]:
    billable = load_system("icd10cm").billable_codes()
    return [billable[i] for i in range(0, 72_000, 6_000)]  # 12 codes from across the table


@pytest.fixture
def server(codes: list[tuple[str, str]]) -> ScriptedServer:
    # right on all but the last two codes, so scores differ between cases
    mapping = {d: c for c, d in codes[:-2]}
    with ScriptedServer(mapping_responder(mapping, default="Code: R69")) as srv:
        srv.batch_api.plan.in_progress_s = 0.3
        yield srv


def args(pytester: pytest.Pytester, codes: list[tuple[str, str]], server: ScriptedServer, *extra: str) -> list[str]:
    return code_list_args(pytester, codes, "openai/m", server.base_url, *extra)


def cache(pytester: pytest.Pytester, name: str = "responses.sqlite3") -> Path:
    return pytester.path / "cache" / name


def records(pytester: pytest.Pytester) -> list[dict]:
    rows = pq.read_table(pytester.path / "reports" / "latest" / "cases.parquet").to_pylist()
    return sorted(rows, key=lambda r: r["case_id"])


def usages(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        return [json.loads(u) for (u,) in conn.execute("SELECT usage FROM responses")]


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDCODE_BATCH_POLL_S", "0.1")
    monkeypatch.setenv("MEDCODE_BATCH_POLL_MAX_S", "0.3")


def test_a_batch_run_gives_the_records_of_a_streamed_run(pytester, codes, server) -> None:
    streamed = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(cache(pytester, "s.db"))))
    assert streamed.ret == 1  # two wrong codes
    expected = [{k: r[k] for k in SAME} for r in records(pytester)]
    server.reset_stats()

    db = cache(pytester)
    result = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch",
                                      "--medcode-no-preflight"))
    assert result.ret == 1
    result.stdout.fnmatch_lines(["medcode: 0/12 answered*batches: 1 *run by the provider",  # the progress line
                                 "*2 failed, 10 passed*"])
    assert [{k: r[k] for k in SAME} for r in records(pytester)] == expected
    assert server.batch_api.submissions == 1 and server.batch_api.uploads == 1
    assert server.stats.total_requests == len(codes)  # every question asked once, inside the batch
    assert all(u.get("batch") is True for u in usages(db)) and len(usages(db)) == len(codes)

    again = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch"))
    assert again.ret == 1 and server.batch_api.submissions == 1  # all cached: nothing submitted


def test_under_xdist_one_worker_submits_and_every_worker_reads(pytester, codes, server) -> None:
    db = cache(pytester)
    result = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(db),
                                                 "--medcode-batch", "--medcode-no-preflight", "-n", "2"))
    result.stdout.fnmatch_lines(["*2 failed, 10 passed*"])
    assert server.batch_api.submissions == 1 and server.stats.total_requests == len(codes)
    assert len(records(pytester)) == len(codes)


def test_requests_are_chunked_within_the_limits(pytester, codes, server, monkeypatch) -> None:
    monkeypatch.setattr("pytest_medcode.asking.batch.MAX_REQUESTS", 5)
    db = cache(pytester)
    result = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch",
                                      "--medcode-no-preflight"))
    assert result.ret == 1
    assert server.batch_api.submissions == 3  # 12 requests: 5 + 5 + 2
    assert sorted(b["request_counts"]["total"] for b in server.batch_api.batches()) == [2, 5, 5]
    assert server.batch_api.duplicate_submissions() == {}


def test_request_files_stay_under_the_size_limit(pytester, codes, server, monkeypatch) -> None:
    monkeypatch.setattr("pytest_medcode.asking.batch.MAX_BYTES", 2_000)
    result = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(cache(pytester)),
                                      "--medcode-batch", "--medcode-no-preflight"))
    result.stdout.fnmatch_lines(["*2 failed, 10 passed*"])
    sizes = [f["bytes"] for f in server.batch_api.files()]
    assert len(sizes) > 2 and max(sizes) <= 2_000
    assert sum(b["request_counts"]["total"] for b in server.batch_api.batches()) == len(codes)
    assert server.batch_api.duplicate_submissions() == {}


def test_partial_errors_end_as_errors_or_are_streamed_again(pytester, codes, server) -> None:
    bad, flaky = codes[0][1], codes[1][1]

    def fail(request: Request) -> tuple[int, str] | None:
        text = request.last_user_message
        if bad in text:
            return 400, "The prompt was flagged by the scripted content policy."
        if flaky in text and request.attempt == 0:
            return 500, "The server had an error while processing your request."
        return None

    server.batch_api.plan.fail = fail
    result = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(cache(pytester)),
                                      "--medcode-batch", "--medcode-no-preflight"))
    rows = {r["code"]: r for r in records(pytester)}
    assert "scripted content policy" in rows[codes[0][0]]["error"]  # a 4xx line: the case's error, API's words
    assert rows[codes[1][0]]["error"] is None and rows[codes[1][0]]["exact_match"]  # a 500 line: streamed again
    assert server.stats.faults["batch_500"] == 1 and server.stats.faults["batch_400"] == 1
    assert server.batch_api.submissions == 1
    assert result.ret == 1


def test_an_expired_batch_has_its_unrun_requests_streamed(pytester, codes, server) -> None:
    server.batch_api.plan.expire_after = 4
    db = cache(pytester)
    result = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch",
                                      "--medcode-no-preflight"))
    result.stdout.fnmatch_lines(["*2 failed, 10 passed*"])
    assert server.batch_api.batches()[0]["status"] == "expired"
    assert sum(1 for u in usages(db) if u.get("batch")) == 4  # 4 run in the batch, 8 streamed
    assert server.duplicate_successes() == {}
    assert medcode(["batch", "status", "--cache", str(db)]) == 0


def test_a_refused_file_is_one_line_and_exit_4(pytester, codes, server) -> None:
    server.batch_api.plan.max_file_bytes = 100
    db = cache(pytester)
    result = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch",
                                      "--medcode-no-preflight"))
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*the batch API refused every batch: File is too large*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert server.batch_api.submissions == 0 and server.stats.total_requests == 0


def test_when_some_batches_are_refused_their_requests_stream(pytester, codes, server, monkeypatch) -> None:
    monkeypatch.setattr("pytest_medcode.asking.batch.MAX_REQUESTS", 10)  # files of 10 and 2 requests
    server.batch_api.plan.max_file_bytes = 3_000  # takes the file of 2 (about 1 kB), refuses the one of 10 (5 kB)
    db = cache(pytester)
    result = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch",
                                      "--medcode-no-preflight"))
    result.stdout.fnmatch_lines(["*1 batch(es) refused (File is too large*); their requests are asked by streaming",
                                 "*2 failed, 10 passed*"])
    assert server.batch_api.submissions == 1
    assert sorted(bool(u.get("batch")) for u in usages(db)) == [False] * 10 + [True] * 2


def test_a_batch_that_fails_validation_is_one_line_and_exit_4(pytester, codes, server) -> None:
    server.batch_api.plan.reject = "Invalid file format for Batch API: the scripted provider refuses this file."
    result = pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(cache(pytester)),
                                      "--medcode-batch", "--medcode-no-preflight"))
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*refused every batch: Invalid file format for Batch API*"])
    assert server.stats.total_requests == 0


def test_models_without_a_batch_api_stream_and_the_run_says_which(pytester, codes, server) -> None:
    db = cache(pytester)
    result = pytester.runpytest(*args(pytester, codes, server, "--model", "lookup", "--medcode-cache", str(db),
                                      "--medcode-batch", "--medcode-no-preflight"))
    result.stdout.fnmatch_lines(["medcode: --medcode-batch: lookup has no batch API and streams as usual"])
    assert server.batch_api.submissions == 1
    assert len(records(pytester)) == 2 * len(codes)


def test_medcode_batch_status_lists_the_recorded_batches(pytester, codes, server, capsys) -> None:
    db = cache(pytester)
    pytester.runpytest(*args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch",
                             "--medcode-no-preflight"))
    capsys.readouterr()
    assert medcode(["batch", "status", "--cache", str(db)]) == 0
    out = capsys.readouterr().out
    batch_id = server.batch_api.batches()[0]["id"]
    assert batch_id in out and "completed, collected" in out and "openai/m" in out
    assert f"{len(codes):>9} {len(codes):>9}" in out
    assert medcode(["batch", "status", "--cache", str(pytester.path / "nope.db")]) == 2
    assert medcode(["batch", "cancel", batch_id, "--cache", str(db)]) == 0  # by id: already done, says so
    assert f"{batch_id}: completed" in capsys.readouterr().out
    assert medcode(["batch", "cancel", "batch-nope", "--cache", str(db)]) == 2
    assert "no batch batch-nope is recorded" in capsys.readouterr().err


def _start(pytester: pytest.Pytester, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "MEDCODE_BATCH_POLL_S": "0.1", "MEDCODE_BATCH_POLL_MAX_S": "0.3"}
    return subprocess.Popen([sys.executable, "-m", "pytest", *argv], cwd=pytester.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_9_while_polling_reattaches_without_submitting_again(pytester, codes, server) -> None:
    server.batch_api.plan.in_progress_s = 3.0
    db = cache(pytester)
    argv = args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch", "--medcode-no-preflight")
    proc = _start(pytester, argv)
    batch_id = wait_for_batch(db, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert server.batch_api.batches()[0]["status"] in ("validating", "in_progress")  # killed mid-poll

    result = pytester.runpytest(*argv)
    result.stdout.fnmatch_lines(["*re-attached to 1 batch(es)*", "*2 failed, 10 passed*"])
    assert server.batch_api.submissions == 1 and server.batch_api.uploads == 1
    assert server.batch_api.duplicate_submissions() == {}
    assert server.duplicate_successes() == {}
    assert len(usages(db)) == len(codes) and all(u["batch"] for u in usages(db))
    assert {b["id"] for b in server.batch_api.batches()} == {batch_id}


@pytest.mark.parametrize("batch_created", [False, True], ids=["uploaded", "uploaded-and-created"])
def test_an_upload_the_killed_run_never_recorded_is_found_not_sent_again(pytester, codes, server,
                                                                         batch_created) -> None:
    """Killed after the upload (and perhaps the batch's creation), before either was recorded: the next run
    finds the file by its name and the batch by its metadata."""
    db = cache(pytester)
    argv = args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch", "--medcode-no-preflight")
    # what the killed run had done: the intent recorded (its owner a dead process), its file uploaded
    lines = _killed_after_recording(pytester, argv, server, db, "deadbeef")
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key="sk-test")
    uploaded = client.files.create(file=("medcode-deadbeef.jsonl", b"".join(lines)), purpose="batch")
    if batch_created:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                              metadata={"medcode_intent": "deadbeef"})

    result = pytester.runpytest(*argv)
    result.stdout.fnmatch_lines(["*re-attached to 1 batch(es)*", "*2 failed, 10 passed*"])
    assert server.batch_api.uploads == 1 and server.batch_api.submissions == 1
    assert server.batch_api.duplicate_submissions() == {}


def test_an_intent_that_never_reached_the_provider_is_sent_once(pytester, codes, server, capsys) -> None:
    """Killed after recording the intent, before the upload: nothing at the provider, so it is sent (once)."""
    db = cache(pytester)
    argv = args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch", "--medcode-no-preflight")
    _killed_after_recording(pytester, argv, server, db, "cafe")

    result = pytester.runpytest(*argv)
    result.stdout.fnmatch_lines(["*2 failed, 10 passed*"])
    assert server.batch_api.uploads == 1 and server.batch_api.submissions == 1
    assert medcode(["batch", "status", "--cache", str(db)]) == 0
    out = capsys.readouterr().out
    assert "abandoned" in out and "never reached the provider" in out and "completed, collected" in out
    assert medcode(["batch", "cancel", "--cache", str(db)]) == 2  # neither an id nor --all


def _killed_after_recording(pytester: pytest.Pytester, argv: list[str], server: ScriptedServer, db: Path,
                            intent: str) -> list[bytes]:
    """What a run killed right after recording its intent leaves: the intent and its keys, owned by a dead
    process; the request lines it was about to upload are returned."""
    keys, lines = _keys_and_lines(pytester, argv)
    store = ResponseStore(db)
    dead = owner_id("old").split("|")[0] + "|999999999|old"
    BatchLedger(store).record(intent, "openai/m", BatchRoute(server.base_url, "m"), keys, dead)
    store.close()
    return lines


def _keys_and_lines(pytester: pytest.Pytester, argv: list[str]) -> tuple[list[str], list[bytes]]:
    """The cache keys and request lines a run asks, computed by the plugin's own session object."""
    config = pytester.parseconfigure(*argv)
    from pytest_medcode.plugin.hooks import session_key

    session = config.stash[session_key]
    keys, lines = [], []
    for case in session.cases():
        question: Question = session.request_for(case)
        key = session.key_for(case.model, question)
        keys.append(key)
        lines.append(request_line(key, "m", Call(case.model, question)))
    return keys, lines


def test_medcode_batch_cancel_stops_a_batch_and_the_run_streams_the_rest(pytester, codes, server, capsys) -> None:
    server.batch_api.plan.in_progress_s = 30.0
    server.batch_api.plan.validating_s = 30.0
    db = cache(pytester)
    argv = args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch", "--medcode-no-preflight")
    proc = _start(pytester, argv)
    batch_id = wait_for_batch(db, proc)
    assert medcode(["batch", "cancel", "--all", "--cache", str(db)]) == 0
    assert f"{batch_id}: cancelling" in capsys.readouterr().out
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out.decode()
    assert b"10 passed" in out and b"2 failed" in out
    assert server.batch_api.batches()[0]["status"] == "cancelled"
    assert server.batch_api.submissions == 1
    assert medcode(["batch", "cancel", "--all", "--cache", str(db)]) == 0
    assert "no open batch to cancel" in capsys.readouterr().out


def test_the_scripted_batch_api_moves_through_its_states_and_cancels(server) -> None:
    """The server side alone, with the real openai client: states over time, list, cancel, error lines."""
    from openai import OpenAI

    plan = server.batch_api.plan
    plan.validating_s = plan.in_progress_s = plan.finalizing_s = 0.4
    client = OpenAI(base_url=server.base_url, api_key="sk-test")
    body = {"model": "m", "messages": [{"role": "user", "content": "Code for <Cholera>?"}]}
    lines = "".join(json.dumps({"custom_id": f"k{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {**body, "temperature": i / 10}}) + "\n" for i in range(3)).encode()
    uploaded = client.files.create(file=("in.jsonl", lines), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"medcode_intent": "x"})
    seen = [batch.status]
    while batch.status not in ("completed", "failed"):
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
        if batch.status != seen[-1]:
            seen.append(batch.status)
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert batch.request_counts.completed == 3 and batch.error_file_id is None
    out = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == ["k0", "k1", "k2"]
    assert out[0]["response"]["body"]["choices"][0]["message"]["content"] == "Code: R69"  # the chat responder
    assert [b.metadata for b in client.batches.list()] == [{"medcode_intent": "x"}]

    second = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                   completion_window="24h")
    assert client.batches.cancel(second.id).status == "cancelling"
    while second.status != "cancelled":
        time.sleep(0.05)
        second = client.batches.retrieve(second.id)
    errors = [json.loads(x) for x in client.files.content(second.error_file_id).text.splitlines()]
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"} and len(errors) == 3
    assert server.batch_api.submissions == 2 and set(server.batch_api.duplicate_submissions()) == {"k0", "k1", "k2"}


def test_a_transient_error_while_re_attaching_never_submits_again(pytester, codes, server) -> None:
    """Killed after the upload and the batch's creation were sent, with only the file's id recorded. The next run
    cannot list the provider's batches (a 500 on every try): it does not know whether the batch exists, so its
    requests are neither sent in a new batch nor streamed; the cases end unkept. The run after that finds the
    batch by its metadata and collects it: one batch in all, no request submitted twice."""
    db = cache(pytester)
    argv = args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch", "--medcode-no-preflight")
    lines = _killed_after_recording(pytester, argv, server, db, "feedface")
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key="sk-test")
    uploaded = client.files.create(file=("medcode-feedface.jsonl", b"".join(lines)), purpose="batch")
    client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                          metadata={"medcode_intent": "feedface"})
    store = ResponseStore(db)
    BatchLedger(store).update("feedface", file_id=uploaded.id, state="uploaded")
    store.close()
    answered = server.stats.total_requests  # the batch ran at the provider

    server.batch_api.plan.outage = lambda method, path: 500 if (method, path) == ("GET", "/batches") else None
    result = pytester.runpytest(*argv)
    assert server.batch_api.submissions == 1 and server.batch_api.uploads == 1
    result.stdout.fnmatch_lines(["*could not re-attach to batch feedface: *; its 12 request(s) are not sent again, "
                                 "a rerun re-attaches", "*12 failed*"])
    assert server.batch_api.outages >= 1
    assert server.stats.total_requests == answered  # nothing streamed either
    assert {r["error"].split(":")[0] for r in records(pytester)} == {"not asked"}
    assert usages(db) == []  # not kept: the next run looks again

    server.batch_api.plan.outage = None
    again = pytester.runpytest(*argv)
    again.stdout.fnmatch_lines(["*re-attached to 1 batch(es)*", "*2 failed, 10 passed*"])
    assert server.batch_api.submissions == 1 and server.batch_api.uploads == 1
    assert server.batch_api.duplicate_submissions() == {}
    assert server.stats.total_requests == answered
    assert len(usages(db)) == len(codes) and all(u["batch"] for u in usages(db))


def test_a_refused_key_or_quota_in_the_error_file_is_not_kept(pytester, codes, server) -> None:
    """Lines of the error file that say the setup is wrong (401, an exhausted quota) are no answer: they are
    asked again by streaming (refused there too, so the breaker stops the model), none is kept in the cache, and
    the run after the fix asks every one of them."""
    def fail(request: Request) -> tuple[int, str] | None:
        if request.description and len(request.description) % 2:
            return 401, "Incorrect API key provided."
        return 429, "You exceeded your current quota, please check your plan and billing details."

    server.batch_api.plan.fail = fail
    server.outage = "401"  # the streamed questions are refused as well
    db = cache(pytester)
    argv = args(pytester, codes, server, "--medcode-cache", str(db), "--medcode-batch", "--medcode-no-preflight")
    result = pytester.runpytest(*argv)
    result.stdout.fnmatch_lines(["*12 failed*"])
    assert server.stats.faults["batch_401"] + server.stats.faults["batch_429"] == len(codes)
    assert usages(db) == []

    server.batch_api.plan.fail, server.outage = None, None  # the key and the plan are fixed
    again = pytester.runpytest(*argv)
    again.stdout.fnmatch_lines(["*2 failed, 10 passed*"])
    assert server.batch_api.submissions == 2 and server.batch_api.duplicate_submissions() == {
        k: 2 for k in server.batch_api.submitted_per_id}  # each asked again, in the second batch
    assert len(usages(db)) == len(codes)


# -- confidences through the batch API -----------------------------------------------------------------------------

DOCUMENT_BENCHMARK = ("def test_document_coding(medcode_document, medcode):\n"
                      "    medcode.check_document(medcode_document)\n")
NOTES = [
    {"id": "n1", "system": "icd10cm", "codes": ["E11.9", "I10"], "text": "Type 2 diabetes. Hypertension."},
    {"id": "n2", "system": "icd10cm", "codes": ["I10"], "text": "Hypertension, on lisinopril."},
    {"id": "n3", "system": "icd10cm", "codes": ["J20.9"], "text": "Acute bronchitis with cough."},
]
#: The scripted notes' answers and how sure the model is of each code (the made-up R69 less so).
NOTE_ANSWERS = {"n1": [("E11.9", 0.97), ("I10", 0.93)], "n2": [("I10", 0.91), ("R69", 0.45)], "n3": [("J20.9", 0.88)]}


def test_confidences_come_through_the_batch_api_as_in_a_streamed_run(pytester, codes, server) -> None:
    """--medcode-batch with --medcode-confidence: every request body asks for log-probabilities, and the run's
    confidences — each code query's and each document code's — and its straight-through numbers are the
    streamed run's on the same scripted answers."""
    pytester.makepyfile(test_document_coding=DOCUMENT_BENCHMARK)
    notes = pytester.path / "notes.jsonl"
    notes.write_text("".join(json.dumps(n) + "\n" for n in NOTES))
    answer_code = server.responder

    def note(request: Request) -> str | None:
        return next((n["id"] for n in NOTES if n["text"] in request.last_user_message), None)

    def respond(request: Request) -> str | None:
        found = note(request)
        return answer_code(request) if found is None else "Codes:\n" + "\n".join(c for c, _ in NOTE_ANSWERS[found])

    def confidence(request: Request, text: str) -> float | list[float]:
        found = note(request)
        if found is not None:
            return [p for _, p in NOTE_ANSWERS[found]]
        return 0.4 if "R69" in text else 0.8 + len(request.description or "") % 20 / 100  # less sure when wrong

    server.responder, server.confidence = respond, confidence
    extra = ("--medcode-confidence", "--medcode-documents", str(notes), "--medcode-document-sample", "all")
    streamed = pytester.runpytest(*args(pytester, codes, server, *extra, "--medcode-cache",
                                        str(cache(pytester, "s.db"))))
    assert streamed.ret == 1
    expected, summary = records(pytester), summary_of(pytester)
    server.reset_stats()

    db = cache(pytester)
    batched = pytester.runpytest(*args(pytester, codes, server, *extra, "--medcode-cache", str(db), "--medcode-batch",
                                       "--medcode-no-preflight"))
    assert batched.ret == 1
    assert server.batch_api.submissions == 1 and server.stats.total_requests == len(codes) + len(NOTES)
    (sent,) = server.batch_api.files()
    bodies = [json.loads(line)["body"] for line in (server.batch_api.folder / sent["id"]).read_bytes().splitlines()]
    assert len(bodies) == len(codes) + len(NOTES) and all(b["logprobs"] is True for b in bodies)
    got = records(pytester)
    keep = ("case_id", "kind", "confidence", "confidence_source", "code_confidences", "predicted_codes", "outcome")
    assert [{k: r.get(k) for k in keep} for r in got] == [{k: r.get(k) for k in keep} for r in expected]
    assert all(r["confidence"] is not None for r in got if r.get("kind") != "document")
    for r in (r for r in got if r.get("kind") == "document"):
        assert r["code_confidences"] == pytest.approx([p for _, p in NOTE_ANSWERS[r["document"]]])
    again = summary_of(pytester)
    assert again["selective"] == summary["selective"] and summary["selective"][0]["coverage"]["95"]["value"] > 0
    assert again["documents"]["selective"] == summary["documents"]["selective"]
    assert all(u["batch"] is True and "confidence" in u for u in usages(db))
