"""A real, scripted OpenAI-compatible HTTP server for tests and perf scripts.

Why a server and not a mock: the plugin's retry, timeout, concurrency and caching behaviour only
means something against the real ``openai``/``litellm`` clients talking HTTP over TCP. Everything
here is deterministic (answers, latencies and faults are pure functions of the request body, the
attempt number for that body and a seed), so a failing test or a perf regression can be replayed.

Stdlib only, so it runs wherever the plugin does, and as a separate process via the CLI
(``python -m pytest_medcode.testing.server``) so server threads don't steal the client's GIL.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import NormalDist
from typing import Any, Self

__all__ = [
    "FAULT_KINDS",
    "KEY_IGNORED_FIELDS",
    "OUTAGES",
    "FaultPlan",
    "LatencyFn",
    "Request",
    "Responder",
    "ScriptedServer",
    "ServerStats",
    "corrupt_answer",
    "degrade",
    "echo_responder",
    "extract_description",
    "fixed_latency",
    "is_corrupted",
    "lognormal_latency",
    "main",
    "mapping_responder",
    "request_key",
    "token_hash",
    "wrong_code",
]

#: Body fields that don't change what is being asked, so they don't change the request key.
KEY_IGNORED_FIELDS: frozenset[str] = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "n",
        "service_tier",
        "timeout",
        "request_timeout",
        "safety_identifier",
        "prompt_cache_key",
    }
)

#: Setup failures a ``ScriptedServer`` can show for every request (``outage``): a revoked key, a model the
#: API does not have, an exhausted quota, or a web page where the API should be.
OUTAGES: tuple[str, ...] = ("401", "404", "quota", "html")

#: Every fault a ``FaultPlan`` can inject, in the order their rates are stacked on [0, 1).
FAULT_KINDS: tuple[str, ...] = ("429", "500", "timeout", "malformed", "reset")

_POLL_S = 0.05


def _unit(*parts: object) -> float:
    """Map ``parts`` to a uniform float in [0, 1); the one source of seeded randomness here."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def request_key(body: Mapping[str, Any]) -> str:
    """Stable hash of a chat-completions body, ignoring fields that don't change the question.

    Tests use it to know in advance which key a prompt will get (e.g. for ``always_fail_keys``).
    """
    relevant = {k: v for k, v in body.items() if k not in KEY_IGNORED_FIELDS}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def token_hash(token: str) -> str:
    """SHA-256 hex of a bearer token: lets tests check which key was sent without storing secrets."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _content_text(content: Any) -> str:
    """Text of a message ``content``, which may be a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and "text" in part
        )
    return "" if content is None else str(content)


@dataclass(frozen=True)
class Request:
    """What a responder / latency function / fault plan sees of one chat-completions call."""

    model: str
    messages: tuple[Mapping[str, Any], ...] = field(hash=False)
    temperature: float | None
    max_tokens: int | None
    body: Mapping[str, Any] = field(hash=False, repr=False)
    key: str
    #: 0 for the first time this server saw ``key`` (since the last ``reset_stats``), 1 for the next...
    attempt: int = 0

    @classmethod
    def from_body(cls, body: Mapping[str, Any], attempt: int = 0) -> Request:
        """Build from a parsed JSON body; handy for unit-testing responders without a server."""
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        temperature = body.get("temperature")
        return cls(
            model=str(body.get("model", "")),
            messages=tuple(m for m in body.get("messages") or () if isinstance(m, Mapping)),
            temperature=float(temperature) if isinstance(temperature, (int, float)) else None,
            max_tokens=int(max_tokens) if isinstance(max_tokens, (int, float)) else None,
            body=body,
            key=request_key(body),
            attempt=attempt,
        )

    @property
    def last_user_message(self) -> str:
        """Text of the last ``user`` message (the prompt that carries the description)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _content_text(message.get("content"))
        return ""

    @property
    def description(self) -> str | None:
        """The description between ``<`` and ``>`` in the last user message, if any."""
        return extract_description(self.last_user_message)


Responder = Callable[[Request], "str | None"]  # None: ``"content": null`` (no answer text at all)
LatencyFn = Callable[[Request], float]

_BRACKETED = re.compile(r"<([^<>]*)>")


def _description_candidates(text: str) -> list[str]:
    """Possible descriptions, best first: the widest ``<...>`` span, then each innermost one from the end."""
    found: list[str] = []
    start, end = text.find("<"), text.rfind(">")
    if 0 <= start < end:
        found.append(text[start + 1 : end].strip())
    for match in reversed(_BRACKETED.findall(text)):
        if match.strip() not in found:
            found.append(match.strip())
    return found


def extract_description(text: str) -> str | None:
    """Find the description the prompt wraps in angle brackets (``...: <{DESCRIPTION}>.``)."""
    candidates = _description_candidates(text)
    return candidates[0] if candidates else None


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def echo_responder(text: str | None = None) -> Responder:
    """Always answer ``text``; with no ``text``, echo the last user message (useful when debugging)."""

    def respond(request: Request) -> str:
        return request.last_user_message if text is None else text

    return respond


def mapping_responder(
    mapping: Mapping[str, str],
    default: str = "Code: 000.0",
    *,
    wrong_fraction: float = 0.0,
    seed: int = 0,
) -> Responder:
    """A model that knows ``mapping`` (description -> code) and answers ``Code: {code}``.

    Lookup is exact first, then whitespace/case-insensitive, so prompt formatting doesn't matter.
    ``wrong_fraction`` > 0 wraps the result in :func:`degrade` with ``seed``.
    """
    exact = dict(mapping)
    loose = {_normalise(desc): code for desc, code in exact.items()}

    def respond(request: Request) -> str:
        for candidate in _description_candidates(request.last_user_message):
            code = exact.get(candidate)
            if code is None:
                code = loose.get(_normalise(candidate))
            if code is not None:
                return f"Code: {code}"
        return default

    return degrade(respond, wrong_fraction, seed) if wrong_fraction > 0 else respond


def is_corrupted(description: str, fraction: float, seed: int = 0) -> bool:
    """Whether ``degrade(..., fraction, seed)`` answers ``description`` wrongly (pure, for expectations)."""
    return _unit("degrade", seed, description) < fraction


def wrong_code(code: str, seed: int = 0) -> str:
    """A code guaranteed to differ from ``code``.

    Keeps the shape (``E11.9`` -> ``E11.4``, ``99213`` -> ``99217``) so a wrong answer still parses
    as a code of the same system: the last digit is shifted, a letter only when there is no digit.
    """
    shift = _unit("wrong", seed, code)
    digits = [i for i, ch in enumerate(code) if ch.isdigit()]
    if digits:
        i = digits[-1]
        return code[:i] + str((int(code[i]) + 1 + int(shift * 9)) % 10) + code[i + 1 :]
    letters = [i for i, ch in enumerate(code) if ch.isascii() and ch.isalpha()]
    if letters:
        i = letters[-1]
        base = ord("A") if code[i].isupper() else ord("a")
        return code[:i] + chr(base + (ord(code[i]) - base + 1 + int(shift * 25)) % 26) + code[i + 1 :]
    return code + "9"


_CODE_IN_ANSWER = re.compile(r"(Code:\s*)(\S+?)(\s*[.,;]?\s*)$", re.IGNORECASE | re.DOTALL)


def corrupt_answer(answer: str, seed: int = 0) -> str:
    """Replace the code in a ``Code: X`` answer (or the whole answer) with :func:`wrong_code`."""
    match = _CODE_IN_ANSWER.search(answer)
    if match is None:
        return wrong_code(answer, seed)
    return answer[: match.start(2)] + wrong_code(match.group(2), seed) + answer[match.end(2) :]


def degrade(
    responder: Responder,
    fraction: float,
    seed: int = 0,
    *,
    wrong: Callable[[str], str] | None = None,
) -> Responder:
    """Make ``responder`` wrong on a deterministic ``fraction`` of descriptions.

    The subset is chosen by hashing the description (the request key when there is none) with
    ``seed``, so "a model wrong on 10% of cases" is the same 10% on every run and every retry.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    corrupt = wrong or (lambda answer: corrupt_answer(answer, seed))

    def respond(request: Request) -> str:
        answer = responder(request)
        subject = request.description or request.key
        return corrupt(answer) if is_corrupted(subject, fraction, seed) else answer

    return respond


def fixed_latency(seconds: float) -> LatencyFn:
    """Every answer takes ``seconds``."""
    if seconds < 0:
        raise ValueError("latency must be >= 0")
    return lambda request: seconds


def lognormal_latency(
    median: float = 0.3, p95: float = 2.0, seed: int = 0, *, cap: float | None = None
) -> LatencyFn:
    """Heavy-tailed latency like a real LLM API, deterministic per (request key, seed).

    Parametrised by the median and 95th percentile because those are what API dashboards show.
    """
    if not 0 < median <= p95:
        raise ValueError("need 0 < median <= p95")
    sigma = math.log(p95 / median) / NormalDist().inv_cdf(0.95)
    mu = math.log(median)
    eps = 1e-12

    def latency(request: Request) -> float:
        u = min(max(_unit("latency", seed, request.key), eps), 1 - eps)
        value = math.exp(mu + sigma * NormalDist().inv_cdf(u))
        return value if cap is None else min(value, cap)

    return latency


@dataclass(frozen=True)
class FaultPlan:
    """Seeded fault injection; the decision is a pure function of (key, attempt, seed).

    Rates are stacked on [0, 1) in ``FAULT_KINDS`` order, so they must sum to <= 1. A key gets at
    most ``max_faults_per_key`` faults (None: unlimited), so a client with that many retries always
    gets through; keys in ``always_fail_keys`` or matching ``always_fail`` fail on every attempt
    with ``always_fail_kind``, to test exhausted retries. A "timeout" holds the answer for
    ``timeout_s`` (``math.inf``: until the client hangs up) and answers late if the client waited.
    """

    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    timeout_s: float = 30.0
    rate_malformed: float = 0.0
    rate_reset: float = 0.0
    seed: int = 0
    max_faults_per_key: int | None = 2
    always_fail_keys: frozenset[str] = frozenset()
    always_fail: Callable[[Request], bool] | None = None
    always_fail_kind: str = "500"

    def __post_init__(self) -> None:
        object.__setattr__(self, "always_fail_keys", frozenset(self.always_fail_keys))
        rates = self.rates()
        if any(not 0.0 <= r <= 1.0 for r in rates.values()):
            raise ValueError(f"fault rates must be in [0, 1]: {rates}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to more than 1: {rates}")
        if self.always_fail_kind not in FAULT_KINDS:
            raise ValueError(f"always_fail_kind must be one of {FAULT_KINDS}")
        if self.max_faults_per_key is not None and self.max_faults_per_key < 0:
            raise ValueError("max_faults_per_key must be >= 0 or None")

    def rates(self) -> dict[str, float]:
        """Rate of each kind, keyed like ``FAULT_KINDS``."""
        return {
            "429": self.rate_429,
            "500": self.rate_500,
            "timeout": self.rate_timeout,
            "malformed": self.rate_malformed,
            "reset": self.rate_reset,
        }

    def raw_fault(self, key: str, attempt: int) -> str | None:
        """The fault drawn for (key, attempt) before the per-key cap is applied."""
        u = _unit("fault", self.seed, key, attempt)
        acc = 0.0
        for kind, rate in self.rates().items():
            acc += rate
            if u < acc:
                return kind
        return None

    def decide(self, key: str, attempt: int) -> str | None:
        """The fault (a ``FAULT_KINDS`` member) for this attempt at ``key``, or None to answer."""
        if key in self.always_fail_keys:
            return self.always_fail_kind
        fault = self.raw_fault(key, attempt)
        if fault is None or self.max_faults_per_key is None:
            return fault
        earlier = sum(1 for a in range(attempt) if self.raw_fault(key, a) is not None)
        return fault if earlier < self.max_faults_per_key else None

    def for_request(self, request: Request) -> str | None:
        """``decide`` plus the ``always_fail`` predicate, which needs the whole request."""
        if self.always_fail is not None and self.always_fail(request):
            return self.always_fail_kind
        return self.decide(request.key, request.attempt)

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse the CLI form ``rate_429=0.1,retry_after=1,seed=3,always_fail_keys=k1|k2``."""
        kwargs: dict[str, Any] = {}
        known = {f.name for f in fields(cls)} - {"always_fail"}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in known:
                raise ValueError(f"bad fault spec item {item!r}; known names: {sorted(known)}")
            value = value.strip()
            if name == "always_fail_keys":
                kwargs[name] = frozenset(filter(None, value.split("|")))
            elif name == "always_fail_kind":
                kwargs[name] = value
            elif name == "max_faults_per_key":
                kwargs[name] = None if value.lower() in ("none", "") else int(value)
            elif name == "seed":
                kwargs[name] = int(value)
            else:
                kwargs[name] = float(value)
        return cls(**kwargs)


@dataclass
class ServerStats:
    """Counters a test asserts on; the server hands out copies so readers never race writers."""

    total_requests: int = 0
    requests_per_key: Counter[str] = field(default_factory=Counter)
    successes_per_key: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    faults_per_key: Counter[str] = field(default_factory=Counter)
    status_counts: Counter[int] = field(default_factory=Counter)
    unauthorized: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    saw_keys: set[str] = field(default_factory=set)
    #: ``time.monotonic()`` at the arrival of each chat request, per key, in order: the gaps between a
    #: key's attempts show how long the client waited (Retry-After, backoff) before asking again.
    attempt_times: dict[str, list[float]] = field(default_factory=dict)

    @property
    def successes(self) -> int:
        """Total successful answers delivered."""
        return sum(self.successes_per_key.values())

    def duplicate_successes(self) -> dict[str, int]:
        """Keys answered successfully more than once: the plugin must never re-ask an answered key."""
        return {key: n for key, n in self.successes_per_key.items() if n > 1}

    def copy(self) -> ServerStats:
        """Independent snapshot."""
        return ServerStats(
            total_requests=self.total_requests,
            requests_per_key=Counter(self.requests_per_key),
            successes_per_key=Counter(self.successes_per_key),
            faults=Counter(self.faults),
            faults_per_key=Counter(self.faults_per_key),
            status_counts=Counter(self.status_counts),
            unauthorized=self.unauthorized,
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
            saw_keys=set(self.saw_keys),
            attempt_times={k: list(v) for k, v in self.attempt_times.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, used by ``GET /_stats`` and ``--stats-file``."""
        return {
            "total_requests": self.total_requests,
            "successes": self.successes,
            "requests_per_key": dict(self.requests_per_key),
            "successes_per_key": dict(self.successes_per_key),
            "faults": dict(self.faults),
            "faults_per_key": dict(self.faults_per_key),
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "unauthorized": self.unauthorized,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "saw_keys": sorted(self.saw_keys),
            "duplicate_successes": self.duplicate_successes(),
            "attempt_times": {k: list(v) for k, v in self.attempt_times.items()},
        }


class _ResetConnection(Exception):
    """Raised inside a handler to drop the connection with a TCP RST instead of answering."""


def _error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _word_count(text: str) -> int:
    return len(text.split())


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
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        for stream in (self.rfile, self.wfile):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        try:
            self.connection.close()
        except OSError:
            pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
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
        return self.path.split("?", 1)[0].rstrip("/")

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _authorised(self) -> bool:
        """Record the token's hash; refuse a wrong or missing key when the server requires one."""
        owner = self.server.owner
        token = self._bearer()
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
        elif path in ("/v1/models", "/models"):
            if not self._authorised():
                self._send_unauthorised()
                return
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "medcode-testing"}
                for m in owner.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, _error_body(f"Unknown path {path}", "invalid_request_error"))

    def do_POST(self) -> None:
        raw = self._read_body()
        path = self._path()
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
    ) -> None:
        if outage is not None and outage not in OUTAGES:
            raise ValueError(f"outage must be one of {OUTAGES}")
        self.responder: Responder = responder or mapping_responder({})
        #: Every chat request after the first ``outage_after`` fails this way (settable while serving).
        self.outage = outage
        self.outage_after = outage_after
        self.latency = latency
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
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
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
        try:
            if outage is not None:
                self._fault(f"outage_{outage}", key)
                _send_outage(handler, outage, str(body.get("model", "")))
                return
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
        except Exception as exc:  # noqa: BLE001 - a broken responder must show as a clear 500, not a hang
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
        # Count the success before sending (so a client that got it sees it counted), undo if the send fails.
        with self._lock:
            self._stats.successes_per_key[key] += 1
        try:
            handler._send(200, payload, content_type)
        except BaseException:
            with self._lock:
                self._stats.successes_per_key[key] -= 1
                if self._stats.successes_per_key[key] <= 0:
                    del self._stats.successes_per_key[key]
            raise

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
                        "logprobs": None,
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
    elif outage == "quota":
        handler._send_json(429, _error_body(
            "You exceeded your current quota, please check your plan and billing details.", "insufficient_quota",
            code="insufficient_quota"))
    else:
        handler._send(200, b"<!doctype html><html><head><title>Welcome</title></head><body>It works!</body></html>",
                      "text/html; charset=utf-8")


def _format_seconds(seconds: float) -> str:
    """Retry-After value: an integer when whole (the standard form), else a decimal clients accept."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


# -- CLI ----------------------------------------------------------------------------------------


def _load_answers(path: Path) -> dict[str, str]:
    """Read ``{description: code}`` or ``[{"description": ..., "code": ...}, ...]``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, Mapping):
        return {str(k): str(v) for k, v in data.items()}
    if isinstance(data, list):
        return {str(row["description"]): str(row["code"]) for row in data}
    raise ValueError(f"{path}: expected a JSON object or a list of {{description, code}} rows")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_medcode.testing.server",
        description="Serve a scripted OpenAI-compatible API; prints the base URL, runs until killed.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--answers", type=Path, help="JSON {description: code} the model 'knows'")
    parser.add_argument("--default", default="Code: 000.0", help="answer for unknown descriptions")
    parser.add_argument("--echo", metavar="TEXT", help="answer TEXT to everything instead of --answers")
    parser.add_argument(
        "--wrong-fraction", type=float, default=0.0, help="deterministically wrong on this share"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --wrong-fraction and latency")
    parser.add_argument("--latency", choices=("none", "fixed", "lognormal"), default="none")
    parser.add_argument("--latency-s", type=float, default=0.05, help="seconds for --latency fixed")
    parser.add_argument("--median", type=float, default=0.3, help="median seconds for --latency lognormal")
    parser.add_argument("--p95", type=float, default=2.0, help="p95 seconds for --latency lognormal")
    parser.add_argument("--latency-cap", type=float, default=None, help="upper bound for lognormal latency")
    parser.add_argument("--faults", default="", help="e.g. rate_429=0.1,retry_after=1,rate_500=0.05,seed=0")
    parser.add_argument("--require-key", default=None, help="answer 401 unless this bearer token is sent")
    parser.add_argument("--models", default="medcode-test", help="comma-separated ids for GET /v1/models")
    parser.add_argument("--outage", choices=OUTAGES, help="fail every request this way (after --outage-after)")
    parser.add_argument("--outage-after", type=int, default=0, help="requests answered before the outage")
    parser.add_argument("--stats-file", type=Path, help="write the counters here as JSON on SIGTERM/SIGINT")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    return parser


def _write_stats(path: Path, stats: ServerStats) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stats.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def main(argv: Iterable[str] | None = None) -> int:
    """Run the server as its own process so perf runs don't share a GIL with the client."""
    args = _build_parser().parse_args(None if argv is None else list(argv))
    if args.echo is not None:
        responder = echo_responder(args.echo)
        if args.wrong_fraction > 0:
            responder = degrade(responder, args.wrong_fraction, args.seed)
    else:
        answers = _load_answers(args.answers) if args.answers else {}
        responder = mapping_responder(
            answers, args.default, wrong_fraction=args.wrong_fraction, seed=args.seed
        )
    latency: LatencyFn | None = None
    if args.latency == "fixed":
        latency = fixed_latency(args.latency_s)
    elif args.latency == "lognormal":
        latency = lognormal_latency(args.median, args.p95, args.seed, cap=args.latency_cap)
    faults = FaultPlan.parse(args.faults) if args.faults.strip() else None

    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = ScriptedServer(
        responder,
        latency=latency,
        faults=faults,
        require_key=args.require_key,
        host=args.host,
        port=args.port,
        models=[m for m in args.models.split(",") if m],
        verbose=args.verbose,
        outage=args.outage,
        outage_after=args.outage_after,
    )
    server.start()
    try:
        print(server.base_url, flush=True)
        while not done.wait(0.2):
            pass
    finally:
        stats = server.stats
        server.stop()
        if args.stats_file is not None:
            _write_stats(args.stats_file, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
