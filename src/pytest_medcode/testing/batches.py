"""The scripted server's batch API: ``/v1/files`` and ``/v1/batches`` as OpenAI serves them.

Why: a batch run (``--medcode-batch``) must be tested against the real ``openai`` client talking HTTP,
including what makes batch APIs hard — a batch that takes time (validating → in_progress → finalizing →
completed), some lines in the error file, a batch that expires or is cancelled with part of its work done,
a file the provider rejects, and a client killed mid-poll that must not submit again. Each line of a batch
is answered by the same responder (and counted in the same statistics) as a chat request, so a batch run
and a streamed run get the same answers. Files live in a temporary folder, not in memory, so a perf run of
a million requests stays small here too.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_medcode.testing.responders import Request, request_key

# The server and its request handler (testing/server.py, which imports this module) are typed loosely here.
ScriptedServer = Any
_Handler = Any

__all__ = ["BatchAPI", "BatchPlan"]

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_REQUESTS = 50_000
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")  # what OpenAI accepts


@dataclass
class BatchPlan:
    """How the scripted batches behave (settable while serving; read when a batch is created)."""

    validating_s: float = 0.0  # time spent in each state before the next
    in_progress_s: float = 0.0
    finalizing_s: float = 0.0
    #: A line's failure, or None: (HTTP status, message) written to the error file instead of an answer.
    fail: Callable[[Request], tuple[int, str] | None] | None = None
    #: Expire each batch after answering this many lines (the rest go to the error file as batch_expired).
    expire_after: int | None = None
    #: Every new batch fails validation with this message (as a provider rejects a file it cannot read).
    reject: str | None = None
    max_file_bytes: int = MAX_FILE_BYTES
    max_requests: int = MAX_REQUESTS
    #: A call of the files/batches API answered with this status instead (a provider's 5xx), or None:
    #: (method, path without /v1, e.g. "GET", "/batches") → status. Sent with ``retry-after-ms: 1``.
    outage: Callable[[str, str], int | None] | None = None


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, Any]
    created_at: int
    status: str = "validating"
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    times: dict[str, int] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "input_file_id": self.input_file_id,
            "completion_window": "24h", "status": self.status, "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id, "created_at": self.created_at,
            "expires_at": self.created_at + 86_400,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata or None,
            **{f"{state}_at": self.times.get(state) for state in
               ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")},
        }


class BatchAPI:
    """Files and batches of one :class:`~pytest_medcode.testing.server.ScriptedServer`."""

    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.plan = BatchPlan()
        self.folder = Path(tempfile.mkdtemp(prefix="medcode-batches-"))
        self._lock = threading.Lock()
        self._files: dict[str, dict[str, Any]] = {}
        self._batches: dict[str, _Batch] = {}
        self._ids = 0
        self.uploads = 0
        self.submissions = 0  # batches created
        self.outages = 0  # calls answered with the plan's outage status
        self.submitted_per_id: Counter[str] = Counter()  # custom_id → batches that carried it
        #: Batches made whose answer is dropped (the connection closed before it is sent): a lost answer.
        self.drop_answers = 0

    def duplicate_submissions(self) -> dict[str, int]:
        """custom_ids submitted in more than one batch (a well-behaved client has none)."""
        with self._lock:
            return {cid: n for cid, n in self.submitted_per_id.items() if n > 1}

    def summary(self) -> dict[str, Any]:
        """What ``GET /_batches`` answers (the server runs as its own process in perf scripts)."""
        with self._lock:
            statuses = Counter(b.status for b in self._batches.values())
            requests = sum(self.submitted_per_id.values())
        return {"uploads": self.uploads, "submissions": self.submissions, "requests": requests,
                "distinct_requests": len(self.submitted_per_id), "statuses": dict(statuses),
                "duplicate_submissions": len(self.duplicate_submissions())}

    def files(self, purpose: str = "batch") -> list[dict[str, Any]]:
        """The uploaded files (``purpose`` batch: the input files a client sent)."""
        with self._lock:
            return [dict(f) for f in self._files.values() if f["purpose"] == purpose]

    def batches(self) -> list[dict[str, Any]]:
        with self._lock:
            return [b.to_dict() for b in self._batches.values()]

    def close(self) -> None:
        with self._lock:
            for batch in self._batches.values():
                batch.cancel.set()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}-{self._ids:06d}"

    # -- routes ------------------------------------------------------------------------------------
    def get(self, handler: _Handler, path: str) -> bool:
        """Answer a GET under /v1/files or /v1/batches; False when the path is not ours."""
        path = path.removeprefix("/v1")
        if self._out(handler, "GET", path):
            return True
        if path == "/files":
            query = handler.path.partition("?")[2]
            purpose = re.search(r"purpose=([^&]+)", query)
            with self._lock:
                data = [f for f in self._files.values() if purpose is None or f["purpose"] == purpose.group(1)]
            handler._send_json(200, {"object": "list", "data": data[::-1], "has_more": False})
        elif m := re.fullmatch(r"/files/([^/]+)(/content)?", path):
            with self._lock:
                meta = self._files.get(m.group(1))
            if meta is None:
                handler._send_json(404, _error(f"No such File object: {m.group(1)}"))
            elif m.group(2):
                handler._send(200, (self.folder / meta["id"]).read_bytes(), "application/octet-stream")
            else:
                handler._send_json(200, meta)
        elif path == "/batches":
            with self._lock:
                data = [b.to_dict() for b in self._batches.values()][::-1]
            handler._send_json(200, {"object": "list", "data": data, "has_more": False,
                                     "first_id": data[0]["id"] if data else None,
                                     "last_id": data[-1]["id"] if data else None})
        elif m := re.fullmatch(r"/batches/([^/]+)", path):
            with self._lock:
                batch = self._batches.get(m.group(1))
                body = batch.to_dict() if batch is not None else None
            _send_batch(handler, m.group(1), body)
        else:
            return False
        return True

    def post(self, handler: _Handler, path: str, raw: bytes) -> bool:
        """Answer a POST under /v1/files or /v1/batches; False when the path is not ours."""
        path = path.removeprefix("/v1")
        if self._out(handler, "POST", path):
            return True
        if path == "/files":
            self._upload(handler, raw)
        elif path == "/batches":
            self._create(handler, raw)
        elif m := re.fullmatch(r"/batches/([^/]+)/cancel", path):
            with self._lock:
                batch = self._batches.get(m.group(1))
                if batch is not None and batch.status in ("validating", "in_progress", "finalizing"):
                    batch.status = "cancelling"
                    batch.times["cancelling"] = int(time.time())
                    batch.cancel.set()
                body = batch.to_dict() if batch is not None else None
            _send_batch(handler, m.group(1), body)
        else:
            return False
        return True

    def _out(self, handler: _Handler, method: str, path: str) -> bool:
        """Answer the plan's outage status for this call, if it has one for it."""
        outage = self.plan.outage
        status = outage(method, path) if outage is not None else None
        if status is None:
            return False
        with self._lock:
            self.outages += 1
        handler._send_json(status, {"error": {"message": "The server had an error while processing your request.",
                                              "type": "server_error", "param": None, "code": None}},
                           headers={"retry-after-ms": "1"})
        return True

    def _upload(self, handler: _Handler, raw: bytes) -> None:
        fields = _multipart(handler.headers.get("Content-Type", ""), raw)
        content = fields.get("file")
        if content is None or "purpose" not in fields:
            handler._send_json(400, _error("'file' and 'purpose' are required"))
            return
        filename, data = content
        if len(data) > self.plan.max_file_bytes:
            handler._send_json(400, _error(f"File is too large: {len(data)} bytes, the maximum for a batch input "
                                           f"file is {self.plan.max_file_bytes} bytes."))
            return
        file_id = self._new_id("file")
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / file_id).write_bytes(data)
        meta = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": fields["purpose"][1].decode(), "status": "processed"}
        with self._lock:
            self._files[file_id] = meta
            self.uploads += 1
        handler._send_json(200, meta)

    def _create(self, handler: _Handler, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or "input_file_id" not in body:
            handler._send_json(400, _error("'input_file_id' is required"))
            return
        if body.get("endpoint") not in ENDPOINTS or body.get("completion_window") != "24h":
            handler._send_json(400, _error(f"'endpoint' must be one of {', '.join(ENDPOINTS)} and "
                                           "'completion_window' must be '24h'"))
            return
        with self._lock:
            meta = self._files.get(body["input_file_id"])
        if meta is None:
            handler._send_json(400, _error(f"No such File object: {body['input_file_id']}"))
            return
        batch = _Batch(self._new_id("batch"), meta["id"], body["endpoint"],
                       body.get("metadata") or {}, int(time.time()))
        plan = self.plan
        with self._lock:
            self._batches[batch.id] = batch
            self.submissions += 1
            dropped = self.drop_answers > 0
            self.drop_answers -= 1 if dropped else 0
        threading.Thread(target=self._work, args=(batch, plan), name=f"medcode-{batch.id}", daemon=True).start()
        if dropped:
            handler.close_connection = True  # the batch is made; its answer never reaches the client
            return
        handler._send_json(200, batch.to_dict())

    # -- the work of one batch --------------------------------------------------------------------------
    def _set(self, batch: _Batch, status: str) -> None:
        with self._lock:
            if batch.status == "cancelling" and status not in ("cancelled",):
                return
            batch.status = status
            batch.times[status] = int(time.time())

    def _wait(self, batch: _Batch, seconds: float) -> bool:
        """Wait in a state; True when the batch was cancelled meanwhile."""
        return batch.cancel.wait(seconds) if seconds > 0 else batch.cancel.is_set()

    def _work(self, batch: _Batch, plan: BatchPlan) -> None:
        try:
            self._run(batch, plan)
        except Exception as exc:  # a broken script shows as a failed batch, not a hang
            with self._lock:
                batch.errors = [{"code": "server_error", "message": f"{type(exc).__name__}: {exc}", "line": None,
                                 "param": None}]
            self._set(batch, "failed")

    def _run(self, batch: _Batch, plan: BatchPlan) -> None:
        lines = (self.folder / batch.input_file_id).read_bytes().splitlines()
        problem = plan.reject or _invalid(lines, batch.endpoint, plan.max_requests)
        with self._lock:
            batch.total = len(lines)
            for line in lines if problem is None else ():
                with contextlib.suppress(ValueError, KeyError):
                    self.submitted_per_id[json.loads(line)["custom_id"]] += 1
        cancelled = self._wait(batch, plan.validating_s)  # then every line goes to the error file, not run
        if problem is not None and not cancelled:
            with self._lock:
                batch.errors = [{"code": "invalid_file", "message": problem, "line": None, "param": None}]
            self._set(batch, "failed")
            return
        self._set(batch, "in_progress")
        started = time.monotonic()
        out_path, err_path = self.folder / f"{batch.id}-output", self.folder / f"{batch.id}-errors"
        ended = "completed"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            for n, line in enumerate(lines):
                entry = json.loads(line)
                if batch.cancel.is_set() or (plan.expire_after is not None and n >= plan.expire_after):
                    ended = "cancelled" if batch.cancel.is_set() else "expired"
                    code = "batch_cancelled" if ended == "cancelled" else "batch_expired"
                    message = ("This request was not run: the batch was cancelled." if ended == "cancelled" else
                               "This request could not be executed before the completion window expired.")
                    err.write(_line(entry["custom_id"], None, {"code": code, "message": message}))
                    continue
                status, answer = self._answer(entry["body"], plan)
                (out if status == 200 else err).write(_line(entry["custom_id"], {"status_code": status,
                                                                                "request_id": f"req-{n}",
                                                                                "body": answer}, None))
                with self._lock:
                    if status == 200:
                        batch.completed += 1
                    else:
                        batch.failed += 1
            del lines
        if ended == "completed":
            left = plan.in_progress_s - (time.monotonic() - started)
            if self._wait(batch, left):
                ended = "cancelled"
        if ended in ("completed", "cancelled") and not batch.cancel.is_set():
            self._set(batch, "finalizing")
            if self._wait(batch, plan.finalizing_s):
                ended = "cancelled"
        out_id, err_id = self._new_id("file"), self._new_id("file")
        out_path.rename(self.folder / out_id)
        err_path.rename(self.folder / err_id)
        with self._lock:
            for file_id, name in ((out_id, "output"), (err_id, "errors")):
                size = (self.folder / file_id).stat().st_size
                self._files[file_id] = {"id": file_id, "object": "file", "bytes": size,
                                        "created_at": int(time.time()), "filename": f"{batch.id}_{name}.jsonl",
                                        "purpose": "batch_output", "status": "processed"}
            batch.output_file_id = out_id if (self.folder / out_id).stat().st_size else None
            batch.error_file_id = err_id if (self.folder / err_id).stat().st_size else None
        self._set(batch, ended)

    def _answer(self, body: dict[str, Any], plan: BatchPlan) -> tuple[int, dict[str, Any]]:
        """One line answered as the chat endpoint answers it (same responder, same counters)."""
        server = self.server
        key = request_key(body)
        with server._lock:
            attempt = server._stats.requests_per_key[key]
            server._stats.requests_per_key[key] += 1
            server._stats.total_requests += 1
        request = Request.from_body(body, attempt)
        failure = plan.fail(request) if plan.fail is not None else None
        if failure is not None:
            server._fault(f"batch_{failure[0]}", key)
            return failure[0], _error(failure[1])
        try:
            text = server.responder(request)
        except Exception as exc:  # a broken responder shows as a 500 line, as on the chat endpoint
            return 500, _error(f"responder raised {type(exc).__name__}: {exc}")
        payload, content_type = server._completion_payload(request, text)
        with server._lock:
            server._stats.successes_per_key[key] += 1
            server._stats.bill(server._billed(request, payload, content_type), batch=True)
        return 200, json.loads(payload)


def _invalid(lines: list[bytes], endpoint: str, max_requests: int) -> str | None:
    """Why a batch input file cannot run (the provider's validation), or None."""
    if len(lines) > max_requests:
        return f"The batch input file has {len(lines)} requests; the maximum is {max_requests}."
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            custom_id = entry["custom_id"]
            ok = entry.get("url") == endpoint and isinstance(entry.get("body"), dict)
        except (ValueError, KeyError, TypeError):
            return f"Line {n}: not a JSON object with custom_id, method, url and body."
        if not ok:
            return f"Line {n}: the url must be {endpoint} and the body an object."
        if custom_id in seen:
            return f"Line {n}: duplicate custom_id {custom_id!r}."
        seen.add(custom_id)
    return None


def _line(custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None) -> bytes:
    return (json.dumps({"id": f"batch_req_{custom_id[:16]}", "custom_id": custom_id, "response": response,
                        "error": error}) + "\n").encode()


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str, bytes]]:
    """The fields of a multipart/form-data body: name → (filename, bytes)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if m is None:
        return {}
    fields: dict[str, tuple[str, bytes]] = {}
    for part in raw.split(b"--" + m.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        filename = re.search(rb'filename="([^"]*)"', head)
        if name is not None:
            fields[name.group(1).decode()] = (filename.group(1).decode() if filename else "",
                                              data.removesuffix(b"\r\n"))
    return fields


def _send_batch(handler: _Handler, batch_id: str, body: dict | None) -> None:
    """A batch object, or the API's 404 for an id it does not know."""
    if body is None:
        handler._send_json(404, _error(f"No batch found with id '{batch_id}'."))
    else:
        handler._send_json(200, body)
