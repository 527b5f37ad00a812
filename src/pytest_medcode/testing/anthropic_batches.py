"""The scripted server's Anthropic Message Batches API: ``/v1/messages/batches`` as Anthropic serves it.

Why: ``--medcode-batch`` for ``anthropic/NAME`` must be tested against the real ``anthropic`` client talking
HTTP — a batch that runs for a while, lines that error, a batch that expires or is cancelled with part of its
work done, a batch the API refuses, a submission whose answer is lost, and a client killed mid-poll that must
not submit again. Each request is answered by the same responder (and counted in the same statistics) as a
chat request, through the OpenAI batch API's own answering (testing/batches.py), so a batch run and a
streamed run get the same answers. Requests and results live in the batch API's temporary folder, not in
memory, so a perf run of 100,000 requests stays small here too.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pytest_medcode.testing.batches import BatchAPI, BatchPlan

ScriptedServer = Any
_Handler = Any

__all__ = ["AnthropicBatchAPI"]

MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1000 * 1000
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
#: The error type Anthropic names for each HTTP status a scripted failure gives.
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 529: "overloaded_error"}


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _MessageBatch:
    id: str
    created_at: float
    total: int
    status: str = "in_progress"  # in_progress → (canceling →) ended
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("succeeded", "errored", "canceled", "expired"), 0))
    ended_at: float | None = None
    cancel_initiated_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def to_dict(self, root: str) -> dict[str, Any]:
        done = sum(self.counts.values())
        return {"id": self.id, "type": "message_batch", "processing_status": self.status,
                "request_counts": {"processing": self.total - done, **self.counts},
                "created_at": _iso(self.created_at), "expires_at": _iso(self.created_at + 86_400),
                "ended_at": _iso(self.ended_at), "cancel_initiated_at": _iso(self.cancel_initiated_at),
                "archived_at": None,
                "results_url": f"{root}/v1/messages/batches/{self.id}/results" if self.status == "ended" else None}


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


class AnthropicBatchAPI(BatchAPI):
    """The message batches of one :class:`~pytest_medcode.testing.server.ScriptedServer` (its ``plan``: a
    :class:`BatchPlan` read as Anthropic's — ``in_progress_s``, ``fail``, ``expire_after``, ``reject``, the
    limits, ``outage``)."""

    def __init__(self, server: ScriptedServer) -> None:
        super().__init__(server)
        self.plan = BatchPlan(max_file_bytes=MAX_BYTES, max_requests=MAX_REQUESTS)
        self._message_batches: dict[str, _MessageBatch] = {}
        #: Submissions made whose answer is dropped (the connection closed before it is sent): a lost answer.
        self.drop_answers = 0

    def batches(self) -> list[dict[str, Any]]:
        with self._lock:
            return [b.to_dict(self.server.base_url.removesuffix("/v1")) for b in self._message_batches.values()]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            statuses: dict[str, int] = {}
            for b in self._message_batches.values():
                statuses[b.status] = statuses.get(b.status, 0) + 1
            requests = sum(self.submitted_per_id.values())
        return {"submissions": self.submissions, "requests": requests,
                "distinct_requests": len(self.submitted_per_id), "statuses": statuses,
                "duplicate_submissions": len(self.duplicate_submissions())}

    def close(self) -> None:
        with self._lock:
            for batch in self._message_batches.values():
                batch.cancel.set()
        super().close()

    def _root(self) -> str:
        return str(self.server.base_url).removesuffix("/v1")

    # -- routes ------------------------------------------------------------------------------------
    def get(self, handler: _Handler, path: str) -> bool:
        """Answer a GET under /v1/messages/batches; False when the path is not ours."""
        path = path.removeprefix("/v1/messages")
        if self._out(handler, "GET", path):
            return True
        if path == "/batches":
            query = dict(p.partition("=")[::2] for p in handler.path.partition("?")[2].split("&") if p)
            limit = int(query.get("limit") or 20)
            with self._lock:
                data = [b.to_dict(self._root()) for b in self._message_batches.values()][::-1]
            if query.get("after_id"):
                ids = [b["id"] for b in data]
                data = data[ids.index(query["after_id"]) + 1:] if query["after_id"] in ids else []
            page = data[:limit]
            handler._send_json(200, {"data": page, "has_more": len(data) > limit,
                                     "first_id": page[0]["id"] if page else None,
                                     "last_id": page[-1]["id"] if page else None})
        elif m := re.fullmatch(r"/batches/([^/]+)(/results)?", path):
            with self._lock:
                batch = self._message_batches.get(m.group(1))
                body = batch.to_dict(self._root()) if batch is not None else None
            if body is None:
                handler._send_json(404, _error(f"No message batch found with id '{m.group(1)}'.", "not_found_error"))
            elif not m.group(2):
                handler._send_json(200, body)
            elif body["processing_status"] != "ended":
                handler._send_json(400, _error(f"Message batch {m.group(1)} is still processing."))
            else:
                handler._send(200, (self.folder / f"{m.group(1)}-results").read_bytes(), "application/binary")
        else:
            return False
        return True

    def post(self, handler: _Handler, path: str, raw: bytes) -> bool:
        """Answer a POST under /v1/messages/batches; False when the path is not ours."""
        path = path.removeprefix("/v1/messages")
        if self._out(handler, "POST", path):
            return True
        if path == "/batches":
            self._create(handler, raw)
        elif m := re.fullmatch(r"/batches/([^/]+)/cancel", path):
            with self._lock:
                batch = self._message_batches.get(m.group(1))
                if batch is not None and batch.status == "in_progress":
                    batch.status = "canceling"
                    batch.cancel_initiated_at = time.time()
                    batch.cancel.set()
                body = batch.to_dict(self._root()) if batch is not None else None
            if body is None:
                handler._send_json(404, _error(f"No message batch found with id '{m.group(1)}'.", "not_found_error"))
            else:
                handler._send_json(200, body)
        else:
            return False
        return True

    def _create(self, handler: _Handler, raw: bytes) -> None:
        plan = self.plan
        if len(raw) > plan.max_file_bytes:
            handler._send_json(413, _error(f"Request too large: {len(raw)} bytes, the maximum for a message batch "
                                           f"is {plan.max_file_bytes} bytes.", "request_too_large"))
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        requests = body.get("requests") if isinstance(body, dict) else None
        problem = plan.reject or _invalid(requests, plan.max_requests)
        if problem is not None:
            handler._send_json(400, _error(problem))
            return
        assert isinstance(requests, list)
        batch = _MessageBatch(self._new_id("msgbatch"), time.time(), len(requests))
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{batch.id}-requests", "wb") as out:
            for request in requests:
                out.write(json.dumps(request).encode() + b"\n")
        with self._lock:
            self._message_batches[batch.id] = batch
            self.submissions += 1
            for request in requests:
                self.submitted_per_id[request["custom_id"]] += 1
            dropped = self.drop_answers > 0
            self.drop_answers -= 1 if dropped else 0
        del requests, body
        threading.Thread(target=self._work, args=(batch, plan), name=f"medcode-{batch.id}", daemon=True).start()
        if dropped:
            handler.close_connection = True  # the batch is made; its answer never reaches the client
            return
        handler._send_json(200, batch.to_dict(self._root()))

    # -- the work of one batch --------------------------------------------------------------------------
    def _work(self, batch: Any, plan: BatchPlan) -> None:
        try:
            self._run(batch, plan)
        except OSError:
            if self.folder.exists():
                raise  # (a server that stopped took the folder with it: nothing to finish)
        finally:
            with self._lock:
                batch.status, batch.ended_at = "ended", time.time()

    def _run(self, batch: Any, plan: BatchPlan) -> None:
        """Wait ``in_progress_s`` (a cancel cuts it short), then answer each request; what a cancel or the
        expiry leaves is written as ``canceled`` or ``expired``."""
        if plan.in_progress_s > 0:
            batch.cancel.wait(plan.in_progress_s)
        with open(self.folder / f"{batch.id}-requests", "rb") as lines, \
                open(self.folder / f"{batch.id}-results.part", "wb") as out:
            for n, line in enumerate(lines):
                request = json.loads(line)
                custom_id = request["custom_id"]
                if batch.cancel.is_set() or (plan.expire_after is not None and n >= plan.expire_after):
                    kind = "canceled" if batch.cancel.is_set() else "expired"
                    result: dict[str, Any] = {"type": kind}
                else:
                    result = self._result(request["params"], plan)
                    kind = result["type"]
                with self._lock:
                    batch.counts[kind] += 1
                out.write(json.dumps({"custom_id": custom_id, "result": result}).encode() + b"\n")
        (self.folder / f"{batch.id}-results.part").rename(self.folder / f"{batch.id}-results")

    def _result(self, params: dict[str, Any], plan: BatchPlan) -> dict[str, Any]:
        """One request answered as the chat endpoint answers it, written as Anthropic's result."""
        system = params.get("system")
        messages = ([{"role": "system", "content": system}] if system else []) + list(params.get("messages") or [])
        chat = {"model": params.get("model"), "messages": messages, "max_tokens": params.get("max_tokens"),
                "temperature": params.get("temperature")}
        status, answer = self._answer({k: v for k, v in chat.items() if v is not None}, plan)
        if status != 200:
            message = answer.get("error", {}).get("message", "")
            return {"type": "errored", "error": _error(message, _ERROR_TYPES.get(status, "api_error"))}
        choice, usage = answer["choices"][0], answer["usage"]
        text = choice["message"]["content"]
        stop = {"stop": "end_turn", "length": "max_tokens"}.get(choice["finish_reason"], "refusal")
        return {"type": "succeeded", "message": {
            "id": f"msg_{answer['id']}", "type": "message", "role": "assistant", "model": answer["model"],
            "content": [] if text is None else [{"type": "text", "text": text}], "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}}}


def _invalid(requests: object, max_requests: int) -> str | None:
    """Why a batch cannot be made (Anthropic's validation), or None."""
    if not isinstance(requests, list) or not requests:
        return "requests: a non-empty list of requests is required"
    if len(requests) > max_requests:
        return f"requests: {len(requests)} requests; the maximum is {max_requests}"
    seen: set[str] = set()
    for n, request in enumerate(requests):
        custom_id = request.get("custom_id") if isinstance(request, dict) else None
        params = request.get("params") if isinstance(request, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            return f"requests.{n}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"
        if custom_id in seen:
            return f"requests.{n}.custom_id: duplicate custom_id {custom_id!r}"
        if not isinstance(params, dict) or not isinstance(params.get("messages"), list) or \
                not isinstance(params.get("max_tokens"), int) or not params.get("model"):
            return f"requests.{n}.params: model, max_tokens and messages are required"
        seen.add(custom_id)
    return None
