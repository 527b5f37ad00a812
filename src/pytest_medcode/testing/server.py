"""A real, scripted OpenAI-compatible HTTP server for tests and perf scripts.

Why a server and not a mock: the plugin's retry, timeout, concurrency and caching behaviour only
means something against the real ``openai``/``litellm`` clients talking HTTP over TCP. Everything
is deterministic (answers, latencies and faults are pure functions of the request body, the attempt
number for that body and a seed), so a failing test or a perf regression can be replayed. This
module is the HTTP side; what it answers is in ``responders``, how slow and faulty it is in
``faults``, what it counts in ``stats``.

Stdlib only, so it runs wherever the plugin does, and as a separate process via the CLI
(``python -m pytest_medcode.testing.server``, see ``cli``) so server threads don't steal the client's GIL.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from pytest_medcode.testing.anthropic_batches import AnthropicBatchAPI
from pytest_medcode.testing.batches import BatchAPI
from pytest_medcode.testing.faults import FaultPlan, LatencyFn, RateLimitStorm
from pytest_medcode.testing.responders import (
    ConfidenceFn,
    Request,
    Responder,
    _content_text,
    mapping_responder,
    request_key,
    token_logprobs,
)
from pytest_medcode.testing.stats import ServerStats, token_hash

__all__ = ["OUTAGES", "ScriptedServer"]

#: Setup failures a ``ScriptedServer`` can show for every request (``outage``): a revoked key, a model the
#: API does not have, an exhausted quota, or a web page where the API should be. ``echo-401`` and
#: ``echo-500`` are a careless upstream: the error message repeats the request's credentials (its
#: ``Authorization`` header, the Bearer key, an ``api-key`` header, the query string) in colour, ESC and BEL
#: bytes included — what a plugin must never store or print as it came.
OUTAGES: tuple[str, ...] = ("401", "404", "quota", "html", "echo-401", "echo-500")

_POLL_S = 0.05


class _ResetConnection(Exception):
    """Raised inside a handler to drop the connection with a TCP RST instead of answering."""


def _error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _word_count(text: str) -> int:
    return len(text.split())


def azure_path(path: str) -> str:
    """Azure OpenAI's paths as the OpenAI ones they stand for (``/openai/files`` → ``/v1/files``,
    ``/openai/deployments/NAME/chat/completions`` → ``/v1/chat/completions``): the server is an Azure endpoint
    too, with its ``api-version`` query ignored."""
    if not path.startswith("/openai/"):
        return path
    rest = path.removeprefix("/openai")
    if rest.startswith("/deployments/"):
        rest = "/" + rest.split("/", 3)[3] if rest.count("/") >= 3 else rest
    return "/v1" + rest


class _Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive so clients reuse sockets like they do against real APIs."""

    protocol_version = "HTTP/1.1"
    # Without this, a small response written in two sends waits for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server_version = "medcode-scripted/1.0"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def handle(self) -> None:
        try:
            super().handle()
        except _ResetConnection:
            self._reset()
        except (ConnectionError, TimeoutError):
            pass  # The client hung up; nothing to answer.

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)

    # -- plumbing -------------------------------------------------------------------------------

    def _reset(self) -> None:
        """Close with SO_LINGER 0 so the kernel sends RST: the client sees a connection reset."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for stream in (self.rfile, self.wfile):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with contextlib.suppress(OSError):
            self.connection.close()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        # Count before the bytes leave: a client that has its answer must already see it in the stats.
        self.server.owner._count_status(status)
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), headers=headers)

    def _path(self) -> str:
        return azure_path(self.path.split("?", 1)[0].rstrip("/"))

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _authorised(self) -> bool:
        """Record the token's hash; refuse a wrong or missing key when the server requires one."""
        owner = self.server.owner
        token = (self._bearer() or self.headers.get("x-api-key", "").strip()  # OpenAI's, Anthropic's, Azure's
                 or self.headers.get("api-key", "").strip() or None)
        if token is not None:
            owner._saw_token(token)
        if owner.require_key is None:
            return True
        return token is not None and hmac.compare_digest(token.encode(), owner.require_key.encode())

    def _send_unauthorised(self) -> None:
        self._send_json(
            401,
            _error_body(
                "Incorrect API key provided. You can find your API key in your test fixture.",
                "invalid_request_error",
                code="invalid_api_key",
            ),
        )

    # -- routes ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self._path()
        if path == "/_stats":
            self._send_json(200, owner.stats.to_dict())
        elif path == "/_batches":
            self._send_json(200, owner.batch_api.summary())
        elif path == "/_anthropic_batches":
            self._send_json(200, owner.anthropic_batch_api.summary())
        elif path.startswith("/v1/messages/batches"):
            if not self._authorised():
                self._send_unauthorised()
            elif not owner.anthropic_batch_api.get(self, path):
                self._send_json(404, _error_body(f"Unknown path {path}", "invalid_request_error"))
        elif path in ("/v1/models", "/models"):
            if not self._authorised():
                self._send_unauthorised()
                return
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "medcode-testing"}
                for m in owner.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        elif path.startswith(("/v1/files", "/v1/batches")):
            if not self._authorised():
                self._send_unauthorised()
            elif not owner.batch_api.get(self, path):
                self._send_json(404, _error_body(f"Unknown path {path}", "invalid_request_error"))
        else:
            self._send_json(404, _error_body(f"Unknown path {path}", "invalid_request_error"))

    def do_POST(self) -> None:
        raw = self._read_body()
        path = self._path()
        if path.startswith("/v1/messages/batches"):
            if not self._authorised():
                self._send_unauthorised()
            elif not self.server.owner.anthropic_batch_api.post(self, path, raw):
                self._send_json(404, _error_body(f"Unknown path {path}", "invalid_request_error"))
            return
        if path.startswith(("/v1/files", "/v1/batches")):
            if not self._authorised():
                self._send_unauthorised()
            elif not self.server.owner.batch_api.post(self, path, raw):
                self._send_json(404, _error_body(f"Unknown path {path}", "invalid_request_error"))
            return
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, _error_body(f"Unknown path {path}", "invalid_request_error"))
            return
        self.server.owner._handle_chat(self, raw)

    # -- chat behaviours --------------------------------------------------------------------------

    def _client_gone(self) -> bool:
        """True if the peer closed its end (readable with EOF); pipelined data counts as still there."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _hang(self, seconds: float, stop: threading.Event) -> bool:
        """Wait ``seconds`` unless the client hangs up or the server stops; True if still connected."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if stop.is_set() or self._client_gone():
                return False
            if remaining <= 0:
                return True
            stop.wait(min(_POLL_S, remaining))


class _HTTPServer(ThreadingHTTPServer):
    # Bursts of 64+ concurrent connects overflow the default backlog of 5 and clients see resets.
    request_queue_size = 512
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: ScriptedServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError) and not self.owner.verbose:
            return  # Client hang-ups are expected under fault injection.
        super().handle_error(request, client_address)


class ScriptedServer:
    """Scripted OpenAI-compatible server on 127.0.0.1; use as a context manager.

    ``responder`` writes the answer text, ``latency`` says how long to think, ``faults`` injects
    errors; all three may be swapped between requests (they're read per request).
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: LatencyFn | None = None,
        faults: FaultPlan | None = None,
        require_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = ("medcode-test",),
        verbose: bool = False,
        outage: str | None = None,
        outage_after: int = 0,
        confidence: ConfidenceFn | None = None,
        capacity: int | None = None,
    ) -> None:
        if outage is not None and outage not in OUTAGES:
            raise ValueError(f"outage must be one of {OUTAGES}")
        self.responder: Responder = responder or mapping_responder({})
        #: The probability a request's answer is given when it asks for ``logprobs`` (responders.py's
        #: ``scripted_confidence``); None: ``"logprobs": null``, as an endpoint that has none answers.
        self.confidence = confidence
        #: Every chat request after the first ``outage_after`` fails this way (settable while serving).
        self.outage = outage
        self.outage_after = outage_after
        #: A period of 429s for every chat request (settable while serving; see ``RateLimitStorm``).
        self.storm: RateLimitStorm | None = None
        self.latency = latency
        #: At most this many requests are worked on at once, the rest wait their turn (None: no limit), as a
        #: model server with a fixed batch size on its GPU: more calls in flight then buy latency, not answers.
        self.capacity = capacity
        self._slots = threading.BoundedSemaphore(capacity) if capacity else None
        self.faults = faults
        self.require_key = require_key
        self.models = tuple(models)
        self.verbose = verbose
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._stats = ServerStats()
        self._stop = threading.Event()
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._ids = 0
        #: ``/v1/files`` and ``/v1/batches`` (testing/batches.py); its ``plan`` says how batches behave.
        self.batch_api = BatchAPI(self)
        #: ``/v1/messages/batches``, Anthropic's Message Batches API (testing/anthropic_batches.py).
        self.anthropic_batch_api = AnthropicBatchAPI(self)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind (port 0 picks a free port) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._stop.clear()
        self._server = _HTTPServer((self._host, self._port), self)
        self._port = self._server.server_address[1]
        # A short poll interval keeps stop() fast; tests start many servers.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_S},
            name="medcode-scripted-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and drop kept-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stop.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        self.batch_api.close()
        self.anthropic_batch_api.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url``/``api_base`` to the clients: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -- accounting -----------------------------------------------------------------------------

    @property
    def stats(self) -> ServerStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return self._stats.copy()

    def duplicate_successes(self) -> dict[str, int]:
        """Keys answered successfully more than once (should be empty for a well-behaved plugin)."""
        return self.stats.duplicate_successes()

    def reset_stats(self) -> None:
        """Zero the counters; attempt numbers restart at 0 too, since they count requests per key."""
        with self._lock:
            in_flight = self._stats.in_flight
            self._stats = ServerStats(in_flight=in_flight, max_in_flight=in_flight)

    def attempts(self, key: str) -> int:
        """How many chat requests this server has seen for ``key``."""
        with self._lock:
            return self._stats.requests_per_key[key]

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _saw_token(self, token: str) -> None:
        digest = token_hash(token)
        with self._lock:
            self._stats.saw_keys.add(digest)

    def _count_status(self, status: int) -> None:
        with self._lock:
            self._stats.status_counts[status] += 1

    def _fault(self, kind: str, key: str) -> None:
        with self._lock:
            self._stats.faults[kind] += 1
            self._stats.faults_per_key[key] += 1

    def _next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"chatcmpl-{self._ids:08d}"

    # -- the chat endpoint ----------------------------------------------------------------------

    def _handle_chat(self, handler: _Handler, raw: bytes) -> None:
        if not handler._authorised():
            with self._lock:
                self._stats.total_requests += 1
                self._stats.unauthorized += 1
            handler._send_unauthorised()
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            with self._lock:
                self._stats.total_requests += 1
            handler._send_json(
                400,
                _error_body(
                    "Request body must be a JSON object with a 'messages' list.", "invalid_request_error"
                ),
            )
            return

        key = request_key(body)
        arrived = time.monotonic()
        with self._lock:
            stats = self._stats
            stats.attempt_times.setdefault(key, []).append(arrived)
            attempt = stats.requests_per_key[key]
            stats.requests_per_key[key] += 1
            stats.total_requests += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            outage = self.outage if stats.total_requests > self.outage_after else None
        storm = self.storm
        try:
            if storm is not None and storm.active():
                self._fault("storm_429", key)
                handler._send_json(429, _error_body("Rate limit reached for requests (scripted storm). Please try "
                                                    "again later.", "requests", code="rate_limit_exceeded"),
                                   headers={"Retry-After": storm.header()})
                return
            if outage is not None:
                self._fault(f"outage_{outage}", key)
                _send_outage(handler, outage, str(body.get("model", "")))
                return
            if self._slots is None:
                self._answer(handler, Request.from_body(body, attempt))
            else:
                with self._slots:
                    self._answer(handler, Request.from_body(body, attempt))
        finally:
            with self._lock:
                self._stats.in_flight -= 1

    def _think(self, request: Request) -> None:
        latency = self.latency
        if latency is not None:
            delay = latency(request)
            if delay > 0:
                self._stop.wait(delay)

    def _answer(self, handler: _Handler, request: Request) -> None:
        faults = self.faults
        fault = faults.for_request(request) if faults is not None else None
        key = request.key
        if fault == "429":
            self._fault("429", key)
            assert faults is not None
            handler._send_json(
                429,
                _error_body(
                    "Rate limit reached for requests (scripted). Please try again later.",
                    "requests",
                    code="rate_limit_exceeded",
                ),
                headers={"Retry-After": _format_seconds(faults.retry_after)},
            )
            return
        if fault == "reset":
            self._fault("reset", key)
            raise _ResetConnection
        if fault == "timeout":
            self._fault("timeout", key)
            assert faults is not None
            if not handler._hang(faults.timeout_s, self._stop):
                handler.close_connection = True
                return
            # The client outwaited us: answer late, as a slow real API eventually would.
        else:
            self._think(request)
        if fault == "500":
            self._fault("500", key)
            handler._send_json(
                500, _error_body("The server had an error while processing your request.", "server_error")
            )
            return

        try:
            text = self.responder(request)
        except Exception as exc:  # a broken responder must show as a clear 500, not a hang
            self._fault("responder_error", key)
            handler._send_json(
                500, _error_body(f"responder raised {type(exc).__name__}: {exc}", "server_error")
            )
            return
        payload, content_type = self._completion_payload(request, text)
        if fault == "malformed":
            self._fault("malformed", key)
            handler._send(200, payload[: max(1, len(payload) // 2)], content_type)
            return
        if fault == "no_choices" and content_type == "application/json":
            self._fault("no_choices", key)  # billed as an answer would be, yet there is no answer in it
            body = {k: v for k, v in json.loads(payload).items() if k != "choices"}
            billed = self._billed(request, payload, content_type)
            with self._lock:
                self._stats.bill(billed)
            handler._send_json(200, body)
            return
        # Count the success before sending (so a client that got it sees it counted), undo if the send fails.
        billed = self._billed(request, payload, content_type)
        with self._lock:
            self._stats.successes_per_key[key] += 1
            self._stats.bill(billed)
        try:
            handler._send(200, payload, content_type)
        except BaseException:
            with self._lock:
                self._stats.successes_per_key[key] -= 1
                if self._stats.successes_per_key[key] <= 0:
                    del self._stats.successes_per_key[key]
                self._stats.bill(billed, undo=True)
            raise

    def _logprobs(self, request: Request, text: str | None) -> dict[str, Any] | None:
        """``{"content": [{token, logprob, ...}]}`` when the request asks and a confidence is scripted."""
        confidence = self.confidence
        if text is None or confidence is None or not request.body.get("logprobs"):
            return None
        return {"content": token_logprobs(text, confidence(request, text))}

    @staticmethod
    def _billed(request: Request, payload: bytes, content_type: str) -> tuple[str, int, int] | None:
        """(model, prompt tokens, completion tokens) of an answer, as its ``usage`` states them."""
        if content_type != "application/json":
            return None
        usage = json.loads(payload)["usage"]
        return request.model or "", usage["prompt_tokens"], usage["completion_tokens"]

    def _completion_payload(self, request: Request, text: str | None) -> tuple[bytes, str]:
        """The OpenAI chat-completion (or SSE stream) body for ``text`` (None: ``content: null``)."""
        finish_reason = "stop" if text is not None else "content_filter"
        words = text.split() if text is not None else []
        if request.max_tokens is not None and len(words) > request.max_tokens:
            text = " ".join(words[: request.max_tokens])
            finish_reason = "length"
        prompt_tokens = sum(_word_count(_content_text(m.get("content"))) for m in request.messages)
        completion_tokens = _word_count(text or "")
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        common = {
            "id": self._next_id(),
            "created": int(time.time()),
            "model": request.model or self.models[0],
        }
        if not request.body.get("stream"):
            completion = {
                **common,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish_reason,
                        "logprobs": self._logprobs(request, text),
                    }
                ],
                "usage": usage,
                "system_fingerprint": "fp_medcode_scripted",
            }
            return json.dumps(completion).encode("utf-8"), "application/json"
        chunk = {**common, "object": "chat.completion.chunk"}
        events: list[dict[str, Any]] = [
            {
                **chunk,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}
                ],
            },
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]},
        ]
        options = request.body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            events.append({**chunk, "choices": [], "usage": usage})
        stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return stream.encode("utf-8"), "text/event-stream"


def _send_outage(handler: _Handler, outage: str, model: str) -> None:
    """The answers real APIs give when the setup, not the question, is wrong."""
    if outage == "401":
        handler._send_unauthorised()
    elif outage == "404":
        handler._send_json(404, _error_body(
            f"The model `{model}` does not exist or you do not have access to it.", "invalid_request_error",
            code="model_not_found"))
    elif outage.startswith("echo-"):
        handler._send_json(int(outage.removeprefix("echo-")), _error_body(echoed_credentials(handler), "server_error"))
    elif outage == "quota":
        handler._send_json(429, _error_body(
            "You exceeded your current quota, please check your plan and billing details.", "insufficient_quota",
            code="insufficient_quota"))
    else:
        handler._send(200, b"<!doctype html><html><head><title>Welcome</title></head><body>It works!</body></html>",
                      "text/html; charset=utf-8")


def echoed_credentials(handler: BaseHTTPRequestHandler) -> str:
    """An error message that repeats every credential of the request, as some proxies and gateways do."""
    auth = handler.headers.get("Authorization", "")
    token = auth.partition(" ")[2]
    query = handler.path.partition("?")[2]
    return (f"\x1b[31mupstream failed\x1b[0m\x07 for request with header Authorization={auth}; Incorrect API key "
            f"provided: {token.strip()}; api-key={handler.headers.get('api-key', '')}; query: {query}")


def _format_seconds(seconds: float) -> str:
    """Retry-After value: an integer when whole (the standard form), else a decimal clients accept."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"

