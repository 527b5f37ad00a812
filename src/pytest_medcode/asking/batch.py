"""Provider batch APIs (``--medcode-batch``): the way past one machine's rate limits.

For the models that have one, the query phase does not stream the questions it must ask: it sends them as
batches (``custom_id`` is the response-cache key), polls with backoff, and stores every answer in the response
cache — where the tests read it exactly as a streamed answer. The usage of a batched answer says
``"batch": true`` (it is billed at the batch discount). Two providers speak it, behind one small interface
(:class:`BatchProvider`: submit, find, retrieve, results, cancel); what is recorded, polled and re-attached here
is the same for both:

- OpenAI (``openai/NAME``, with or without ``--medcode-api-base``: OpenAI and any endpoint that serves
  ``/v1/files`` and ``/v1/batches``): JSONL request files of at most 50,000 requests and 200 MB, each uploaded,
  then a batch made of it (:class:`OpenAIBatches`, here);
- Anthropic (``anthropic/NAME``, and ``claude-*`` without ``--medcode-api-base``): the Message Batches API, at
  most 100,000 requests and 256 MB a batch, sent in one call (``asking/anthropic_batch.py``; the optional
  ``anthropic`` package);
- Azure OpenAI, vLLM and a LiteLLM proxy (``azure/NAME``, ``hosted_vllm/NAME``, ``litellm_proxy/NAME``, with or
  without ``--medcode-api-base``): OpenAI's files and batches through litellm's batch functions
  (``asking/litellm_batch.py``), by the same :class:`OpenAIBatches`. Other providers litellm names stream.

The cache is the durable thing: each batch is recorded in its file (tables ``batches`` and ``batch_keys``)
*before* anything is sent — the intent first, then the uploaded file's id, then the batch's id. A run killed
at any point (``kill -9``, a CI timeout) re-attaches on the next run: a recorded batch is polled, not sent
again; an intent whose submission may have happened is looked up at the provider (OpenAI: by its file name,
then by the batch's ``metadata``; Anthropic: among the batches made since it, by their size and their results)
before anything is sent again, so no request is ever submitted twice. When that
look-up fails (the provider answers a 5xx, the connection drops), nothing is known of the intent: it stays
open for the next run, and its requests are neither sent again nor streamed; their cases end this run as
``error`` (not kept in the cache), and the next run looks again.

What fails inside a batch, and what becomes of it:

- a line of the error file with a final status (a 4xx: a bad request) ends as that case's ``error``, in the
  API's words, exactly as a streamed call that failed for good (``--medcode-retry-errors`` asks it again);
- a line that may succeed another time (429, 5xx), a line that says the setup is wrong (401, 404, quota: the
  streamed path keeps those out of the cache and its circuit breaker stops the model) and the requests an
  expired or cancelled batch never ran are asked again by streaming, in the same run;
- a batch the provider refuses (a file too large, a file it cannot read) is one line with the provider's
  message; its requests stream instead, unless nothing at all could be submitted: then the run stops with
  that line (exit 4). Nothing received is lost either way.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_medcode.asking.batch_provider import (
    ANTHROPIC,
    OPENAI,
    PROVIDER_NAMES,
    THROUGH_LITELLM,
    BatchProvider,
    BatchRoute,
    BatchState,
    SubmitUnknown,
    api_message,
)
from pytest_medcode.asking.cache import CacheError, ResponseStore, env_seconds, owner_alive
from pytest_medcode.asking.coders import Coder
from pytest_medcode.asking.coders.endpoint import endpoint
from pytest_medcode.asking.coders.errors import status_failure
from pytest_medcode.asking.coders.logprobs import REQUEST as LOGPROBS
from pytest_medcode.asking.coders.logprobs import confidences_of
from pytest_medcode.asking.engine import CODE_CONFIDENCES, CONFIDENCE, Call, Outcome
from pytest_medcode.asking.progress import Progress
from pytest_medcode.redaction import mask_credentials

MAX_REQUESTS = 50_000  # per batch input file (OpenAI's limit)
MAX_BYTES = 200 * 1000 * 1000  # per batch input file: 200 MB, in the smaller reading of "MB"
ENDPOINT = "/v1/chat/completions"
PROVIDER_DONE = ("completed", "failed", "expired", "cancelled", "ended")  # OpenAI's ends, then Anthropic's
_DELIVER_EVERY = 5_000
_ATTACHED, _ABSENT, _UNKNOWN = "attached", "absent", "unknown"  # what re-attaching found of an intent

_DDL = """
CREATE TABLE IF NOT EXISTS batches (
    intent TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    sent_model TEXT NOT NULL,
    api_base TEXT,
    owner TEXT,
    file_id TEXT,
    batch_id TEXT,
    state TEXT NOT NULL,
    requests INTEGER NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    provider TEXT
);
CREATE TABLE IF NOT EXISTS batch_keys (intent TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (intent, key));
"""
_FIELDS = ("intent", "model", "sent_model", "api_base", "owner", "file_id", "batch_id", "state", "requests",
           "completed", "failed", "message", "done", "created", "updated", "provider")


class BatchRejected(Exception):
    """No batch could be submitted: the provider's reason, in one line."""


def batch_route(coder: Coder) -> BatchRoute | None:
    """The batch route of a coder, or None when it has no batch API (lookup, python:, local:, rag:, verify:,
    litellm providers other than openai/, anthropic/ and those of ``THROUGH_LITELLM``). A bare ``claude-*`` is
    Anthropic's only on Anthropic's own endpoint (with --medcode-api-base litellm sends it to an
    OpenAI-compatible server)."""
    from pytest_medcode.asking.coders.litellm_coder import LiteLLMCoder
    from pytest_medcode.asking.coders.openai_compat import OpenAICompatibleCoder

    if isinstance(coder, OpenAICompatibleCoder):
        return BatchRoute(coder.api_base, coder.model, coder.logprobs)
    if isinstance(coder, LiteLLMCoder):
        if coder.name.startswith("openai/"):
            return BatchRoute(coder.api_base, coder.name.split("/", 1)[1], coder.logprobs)
        if coder.name.startswith("anthropic/"):
            return BatchRoute(coder.api_base, coder.name.split("/", 1)[1], provider=ANTHROPIC)
        if coder.name.startswith("claude-") and not coder.api_base:
            return BatchRoute(None, coder.name, provider=ANTHROPIC)
        prefix, _, name = coder.name.partition("/")
        if prefix in THROUGH_LITELLM and name:
            return BatchRoute(coder.api_base, name, coder.logprobs, provider=prefix)
    return None


def missing_client(model: str, route: BatchRoute) -> str | None:
    """The one line that says how to install the client a route's batches need, or None when it is there."""
    if route.provider == ANTHROPIC and importlib.util.find_spec("anthropic") is None:  # found, not imported (seconds)
        return (f"--medcode-batch: {model} goes through Anthropic's Message Batches API, which needs the anthropic "
                "package: pip install 'pytest-medcode[anthropic]' (or drop --medcode-batch to stream)")
    return None


def _row(values: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(_FIELDS, values, strict=True))


class BatchLedger:
    """The batches recorded in a response cache: what was sent where, and what became of it."""

    def __init__(self, store: ResponseStore) -> None:
        self.store = store
        store.run_sql(self._create)

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        """The tables, and the provider column a cache from before Anthropic's batches lacks (NULL: OpenAI)."""
        conn.executescript(_DDL)
        if "provider" not in {row[1] for row in conn.execute("PRAGMA table_info(batches)")}:
            conn.execute("ALTER TABLE batches ADD COLUMN provider TEXT")

    def record(self, intent: str, model: str, route: BatchRoute, keys: list[str], owner: str) -> None:
        """The intent, before anything is uploaded (one transaction with its keys); the endpoint is kept with
        its credentials masked (the run that re-attaches has them from its own --medcode-api-base)."""
        now = time.time()
        api_base = mask_credentials(route.api_base) if route.api_base else route.api_base

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"INSERT INTO batches ({','.join(_FIELDS)}) VALUES ({','.join('?' * len(_FIELDS))})",
                         (intent, model, route.model, api_base, owner, None, None, "preparing", len(keys),
                          0, 0, None, 0, now, now, route.provider))
            conn.executemany("INSERT OR IGNORE INTO batch_keys VALUES (?, ?)", [(intent, k) for k in keys])
            conn.execute("COMMIT")

        self.store.run_sql(write)

    def update(self, intent: str, **values: Any) -> None:
        values["updated"] = time.time()
        sets = ", ".join(f"{name} = ?" for name in values)
        self.store.run_sql(lambda conn: conn.execute(f"UPDATE batches SET {sets} WHERE intent = ?",
                                                     (*values.values(), intent)))

    def rows(self, open_only: bool = False) -> list[dict[str, Any]]:
        where = "WHERE done = 0" if open_only else ""
        found = self.store.run_sql(lambda conn: conn.execute(
            f"SELECT {','.join(_FIELDS)} FROM batches {where} ORDER BY created").fetchall())
        return [_row(r) for r in found]

    def keys(self, intent: str) -> list[str]:
        return [k for (k,) in self.store.run_sql(lambda conn: conn.execute(
            "SELECT key FROM batch_keys WHERE intent = ?", (intent,)).fetchall())]

    def adopt(self, owner: str) -> list[dict[str, Any]]:
        """The open batches nobody alive is polling, now ``owner``'s (one transaction: two runs sharing the
        cache never both take one)."""
        def take(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            conn.execute("BEGIN IMMEDIATE")
            mine = []
            for values in conn.execute(f"SELECT {','.join(_FIELDS)} FROM batches WHERE done = 0 "
                                       "ORDER BY created").fetchall():
                row = _row(values)
                if row["owner"] == owner or not row["owner"] or not owner_alive(row["owner"]):
                    row["owner"] = owner
                    mine.append(row)
            conn.executemany("UPDATE batches SET owner = ? WHERE intent = ?", [(owner, r["intent"]) for r in mine])
            conn.execute("COMMIT")
            return mine

        return self.store.run_sql(take)

    def batch_ids(self) -> set[str]:
        """Every batch id recorded: a batch found at the provider is some intent's only when none holds it."""
        return {b for (b,) in self.store.run_sql(lambda conn: conn.execute(
            "SELECT batch_id FROM batches WHERE batch_id IS NOT NULL").fetchall())}


def provider_for(name: str | None, api_base: str | None) -> BatchProvider:
    """The batch API of a recorded provider (None: a row from before there were two, OpenAI's)."""
    if name == ANTHROPIC:
        from pytest_medcode.asking.anthropic_batch import AnthropicBatches

        return AnthropicBatches(api_base)
    if name in THROUGH_LITELLM:
        from pytest_medcode.asking.litellm_batch import LiteLLMBatchClient

        return OpenAIBatches(api_base, LiteLLMBatchClient(name, api_base))
    return OpenAIBatches(api_base)


def client_for(api_base: str | None) -> Any:
    """The synchronous OpenAI client for an endpoint (its key as the streamed coders send it, never stored)."""
    from openai import OpenAI

    where = endpoint(api_base)
    return OpenAI(base_url=where.url, api_key=where.key, max_retries=3, timeout=600.0)


def request_line(key: str, model: str, call: Call, logprobs: bool = False) -> bytes:
    """One request of a batch input file: the body the streamed coder would send, keyed by the cache key."""
    q = call.question
    body = {"model": model, "messages": q.chat(), "temperature": q.temperature, "max_tokens": q.max_tokens,
            **(LOGPROBS if logprobs else {})}
    return (json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body},
                       ensure_ascii=False) + "\n").encode("utf-8")


def read_result(entry: dict[str, Any]) -> Outcome | None:
    """One line of an output or error file as an outcome; None when it should be asked again (429, 5xx, a
    request the batch never ran)."""
    usage: dict[str, Any] = {"batch": True}
    response = entry.get("response") or {}
    status = response.get("status_code")
    body = response.get("body") or {}
    if status == 200:
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return Outcome(None, "malformed response in the batch output", 0.0, 1, usage)
        if body.get("usage"):
            usage.update(prompt_tokens=body["usage"].get("prompt_tokens"),
                         completion_tokens=body["usage"].get("completion_tokens"))
        if text is None:
            return Outcome(None, f"no answer text (content: null, finish_reason: {choice.get('finish_reason')})",
                           0.0, 1, usage)
        confidence, per_code = confidences_of(choice)
        if confidence is not None:  # asked for (a request with logprobs): kept beside the usage, as streamed
            usage[CONFIDENCE] = confidence
        if per_code is not None:  # each code-shaped word's (a document's codes), as streamed
            usage[CODE_CONFIDENCES] = per_code
        return Outcome(text, None, 0.0, 1, usage)
    if status is None:  # not run: expired, cancelled
        return None
    inner = body.get("error") if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    failure = status_failure(int(status), "batch request", message, code)
    if failure.retryable or failure.setup:  # setup failures (key, model, quota) are the streamed path's to judge
        return None
    return Outcome(None, str(failure), 0.0, 1, usage)


class OpenAIBatches:
    """OpenAI's batch API: a JSONL file uploaded (named after the intent), then a batch made of it (its
    ``metadata`` names the intent). ``client``: the OpenAI client's ``files`` and ``batches`` of another
    provider's (litellm_batch.py); None: the OpenAI client of ``api_base``."""

    def __init__(self, api_base: str | None, client: Any = None) -> None:
        self.client = client if client is not None else client_for(api_base)

    @property
    def max_requests(self) -> int:
        return MAX_REQUESTS  # read when asked: a test may lower it

    @property
    def max_bytes(self) -> int:
        return MAX_BYTES

    def request_line(self, key: str, route: BatchRoute, call: Call) -> bytes:
        return request_line(key, route.model, call, route.logprobs)

    def submit(self, intent: str, lines: list[bytes], uploaded: Callable[[str], None]) -> BatchState:
        file = self.client.files.create(file=(_file_name(intent), b"".join(lines)), purpose="batch")
        uploaded(file.id)
        return self._create(intent, file.id)

    def _create(self, intent: str, file_id: str) -> BatchState:
        return _openai_state(self.client.batches.create(input_file_id=file_id, endpoint=ENDPOINT,
                                                        completion_window="24h", metadata={"medcode_intent": intent}))

    def find(self, row: dict[str, Any], keys: set[str], known: set[str],
             uploaded: Callable[[str], None]) -> BatchState | None:
        if row["file_id"] is None:
            name = _file_name(row["intent"])
            found = next((f for f in self.client.files.list(purpose="batch") if f.filename == name), None)
            if found is None:
                return None
            row["file_id"] = found.id
            uploaded(found.id)
        since = row["created"] - 3600
        for candidate in self.client.batches.list(limit=100):
            if (candidate.metadata or {}).get("medcode_intent") == row["intent"]:
                return _openai_state(candidate)
            if candidate.created_at < since:
                break
        return self._create(row["intent"], row["file_id"])

    def retrieve(self, batch_id: str) -> BatchState:
        return _openai_state(self.client.batches.retrieve(batch_id))

    def results(self, state: BatchState) -> Iterator[tuple[str, Outcome | None]]:
        for file_id in (state.handle.output_file_id, state.handle.error_file_id):
            if file_id:
                for entry in _lines(self.client.files.content(file_id).content):
                    yield entry.get("custom_id", ""), read_result(entry)

    def cancel(self, batch_id: str) -> str:
        return str(self.client.batches.cancel(batch_id).status)


def _openai_state(batch: Any) -> BatchState:
    counts = batch.request_counts
    failure = None
    if batch.status == "failed":
        data = getattr(getattr(batch, "errors", None), "data", None) or []
        failure = mask_credentials(" ".join(str(data[0].message).split())) if data and data[0].message \
            else "the batch failed"
    return BatchState(batch.id, batch.status, batch.status in PROVIDER_DONE, counts.completed if counts else 0,
                      counts.failed if counts else 0, counts.total if counts else None, failure, batch)


@dataclass
class _Chunk:
    keys: list[str] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    size: int = 0


@dataclass
class BatchRunner:
    """Asks through batch APIs the keys whose model has one; hands back the keys left to stream."""

    store: ResponseStore
    routes: dict[str, BatchRoute]  # model → route, for the batch-capable models only
    owner: str
    notice: Callable[[str], None] | None = None
    #: Per batch, below the provider's own limits (None: the provider's); a test may lower them.
    max_requests: int | None = None
    max_bytes: int | None = None
    poll_s: float = field(default_factory=lambda: env_seconds("MEDCODE_BATCH_POLL_S", 2.0))
    poll_max_s: float = field(default_factory=lambda: env_seconds("MEDCODE_BATCH_POLL_MAX_S", 60.0))
    _providers: dict[tuple[str, str | None], BatchProvider] = field(default_factory=dict)
    _accepted: int = 0
    #: Keys of intents that could not be looked up at the provider this run: their outcome for this run only.
    unanswered: dict[str, Outcome] = field(default_factory=dict)

    def _provider(self, name: str, api_base: str | None) -> BatchProvider:
        if (name, api_base) not in self._providers:
            self._providers[name, api_base] = provider_for(name, api_base)
        return self._providers[name, api_base]

    def _row_provider(self, row: dict[str, Any]) -> BatchProvider:
        """The provider of a recorded batch: its model's endpoint in this run (with the credentials the ledger
        does not keep) when that is the endpoint it was sent to."""
        route = self.routes.get(row["model"])
        same = route is not None and mask_credentials(route.api_base or "") == mask_credentials(row["api_base"] or "")
        return self._provider(row["provider"] or OPENAI, route.api_base if same and route is not None
                              else row["api_base"])

    def _limits(self, provider: BatchProvider) -> tuple[int, int]:
        return (min(provider.max_requests, self.max_requests or provider.max_requests),
                min(provider.max_bytes, self.max_bytes or provider.max_bytes))

    def _say(self, line: str) -> None:
        if self.notice is not None:
            self.notice(line)

    def run(self, todo: list[str], wanted: set[str], call_of: Callable[[str], Call],
            deliver: Callable[[list[tuple[str, str, Outcome]]], None], progress: Progress,
            report: Callable[[], None]) -> list[str]:
        """Submit (or re-attach to), poll and collect the keys ``todo`` (``wanted``: the same, as a set);
        ``deliver`` stores each slice of results as it is read. The keys returned are to be streamed (no batch
        API, refused, or to be asked again)."""
        self.ledger = BatchLedger(self.store)
        self.unanswered = {}
        stream: list[str] = []
        active, taken = self._reattach(wanted)
        refused: list[str] = []
        refused_keys: list[str] = []
        chunks: dict[str, _Chunk] = {}
        for key in todo:
            if key in taken:
                continue
            call = call_of(key)
            route = self.routes.get(call.model)
            if route is None:
                stream.append(key)
                continue
            provider = self._provider(route.provider, route.api_base)
            most, size = self._limits(provider)
            line = provider.request_line(key, route, call)
            chunk = chunks.setdefault(call.model, _Chunk())
            if chunk.keys and (len(chunk.keys) >= most or chunk.size + len(line) > size):
                self._submit(call.model, chunk, active, refused, refused_keys)
                chunk = chunks[call.model] = _Chunk()
            chunk.keys.append(key)
            chunk.lines.append(line)
            chunk.size += len(line)
        for model, chunk in chunks.items():
            if chunk.keys:
                self._submit(model, chunk, active, refused, refused_keys)
        del chunks, taken
        self._accepted = 0
        self._poll(active, wanted, deliver, progress, report, refused, stream)
        if refused and not self._accepted:
            raise BatchRejected(f"medcode: the batch API refused every batch: {refused[0]}; nothing was "
                                "run (those questions are unanswered; nothing received was lost)")
        if refused:
            self._say(f"medcode: {len(refused)} batch(es) refused ({refused[0]}); their requests are asked "
                      "by streaming")
        return stream + [k for k in refused_keys if k in wanted]

    # -- re-attaching ------------------------------------------------------------------------------------
    def _reattach(self, wanted: set[str]) -> tuple[list[dict[str, Any]], set[str]]:
        """The open batches of earlier runs (now this process's), and the wanted keys they carry."""
        active: list[dict[str, Any]] = []
        taken: set[str] = set()
        requests = 0
        for row in self.ledger.adopt(self.owner):
            found = _ATTACHED if row["batch_id"] is not None else self._resume(row)
            if found == _ABSENT:
                self.ledger.update(row["intent"], state="abandoned", done=1,
                                   message="never reached the provider")
                continue
            if found == _UNKNOWN:  # it may be running at the provider: not sent again, not streamed
                self._hold(row["intent"], wanted)
                taken.update(self.unanswered)
                continue
            active.append(row)
            requests += row["requests"]
            taken.update(k for k in self.ledger.keys(row["intent"]) if k in wanted)
        if active:
            self._say(f"medcode: re-attached to {len(active)} batch(es) an earlier run submitted "
                      f"({requests} request(s)); nothing is submitted twice")
        return active, taken

    def _hold(self, intent: str, wanted: set[str]) -> None:
        """An intent the provider may hold and could not be asked about: its wanted keys end this run unkept,
        neither sent again nor streamed, and any later run may look again."""
        self.ledger.update(intent, owner=None)
        reason = (f"not asked: its batch (intent {intent[:12]}) may be at the provider and could not "
                  "be looked up this run; a rerun re-attaches to it")
        self.unanswered.update({k: Outcome(None, reason, 0.0, 0, keep=False)
                                for k in self.ledger.keys(intent) if k in wanted})

    def _resume(self, row: dict[str, Any]) -> str:
        """An intent recorded without a batch id: find what of it reached the provider and finish it
        (_ATTACHED); _ABSENT when nothing did (it is sent again as new); _UNKNOWN when the provider could not be
        asked (it stays open for the next run)."""
        intent = row["intent"]

        def uploaded(file_id: str) -> None:
            self.ledger.update(intent, file_id=file_id, state="uploaded")

        try:
            batch = self._row_provider(row).find(row, set(self.ledger.keys(intent)), self.ledger.batch_ids(),
                                                 uploaded)
        except Exception as exc:  # the provider's words, one line; the intent stays for next time
            self._say(f"medcode: could not re-attach to batch {intent}: {api_message(exc)}; its "
                      f"{row['requests']} request(s) are not sent again, a rerun re-attaches")
            return _UNKNOWN
        if batch is None:
            return _ABSENT
        row["batch_id"], row["state"] = batch.id, batch.status
        self.ledger.update(intent, batch_id=batch.id, state=batch.status)
        return _ATTACHED

    # -- submitting -------------------------------------------------------------------------------------------
    def _submit(self, model: str, chunk: _Chunk, active: list[dict[str, Any]], refused: list[str],
                refused_keys: list[str]) -> None:
        route = self.routes[model]
        intent = uuid.uuid4().hex
        self.ledger.record(intent, model, route, chunk.keys, self.owner)  # before anything leaves

        def uploaded(file_id: str) -> None:
            self.ledger.update(intent, file_id=file_id, state="uploaded")

        try:
            batch = self._provider(route.provider, route.api_base).submit(intent, chunk.lines, uploaded)
        except SubmitUnknown as exc:  # it may have been made: held for the next run to find
            self._say(f"medcode: submitting batch {intent}: {exc}; its {len(chunk.keys)} request(s) are not sent "
                      "again, a rerun re-attaches")
            self._hold(intent, set(chunk.keys))
            return
        except Exception as exc:  # any refusal is the provider's one line, and the keys stream
            message = api_message(exc)
            self.ledger.update(intent, state="rejected", done=1, message=message)
            refused.append(message)
            refused_keys.extend(chunk.keys)
            return
        self.ledger.update(intent, batch_id=batch.id, state=batch.status)
        row = self.ledger_row(intent)
        active.append(row)

    def ledger_row(self, intent: str) -> dict[str, Any]:
        return next(r for r in self.ledger.rows() if r["intent"] == intent)

    # -- polling and collecting -------------------------------------------------------------------------------
    def _poll(self, active: list[dict[str, Any]], wanted: set[str],
              deliver: Callable[[list[tuple[str, str, Outcome]]], None], progress: Progress,
              report: Callable[[], None], refused: list[str], stream: list[str]) -> None:
        delay = self.poll_s
        states: dict[str, tuple[str, int, int, int]] = {}
        while active:
            for row in list(active):
                try:
                    batch = self._row_provider(row).retrieve(row["batch_id"])
                except Exception as exc:  # a failed poll is tried again; the batch runs on
                    self._say(f"medcode: polling batch {row['batch_id']}: {api_message(exc)}; trying again")
                    continue
                done = (batch.completed, batch.failed, row["requests"] if batch.total is None else batch.total)
                if states.get(row["intent"]) != (batch.status, *done):
                    states[row["intent"]] = (batch.status, *done)
                    self.ledger.update(row["intent"], state=batch.status, completed=done[0], failed=done[1])
                if batch.ended:
                    try:
                        stream.extend(self._collect(row, batch, wanted, deliver, refused))
                    except CacheError:
                        raise  # the cache cannot take answers: the phase stops (and keeps what it received)
                    except Exception as exc:  # a download that failed: tried again at the next poll
                        self._say(f"medcode: collecting batch {row['batch_id']}: {api_message(exc)}; trying again")
                        continue
                    active.remove(row)
                    states.pop(row["intent"], None)
                    progress.batches = _summary(states)
                    report()  # a large batch takes a while to store: show each as it is in
            progress.batches = _summary(states)
            report()
            if active:
                time.sleep(delay)
                delay = min(delay * 1.5, self.poll_max_s)
        progress.batches = ""

    def _collect(self, row: dict[str, Any], batch: BatchState, wanted: set[str],
                 deliver: Callable[[list[tuple[str, str, Outcome]]], None], refused: list[str]) -> list[str]:
        """Store the results of a finished batch; the wanted keys it did not answer for good (to stream). Only
        the intent's own keys are read from it (a batch found by its size may hold others' requests)."""
        ordered = self.ledger.keys(row["intent"])
        keys = set(ordered)
        seen: set[str] = set()
        items: list[tuple[str, str, Outcome]] = []
        for custom_id, outcome in self._row_provider(row).results(batch):
            if outcome is None or custom_id not in keys:
                continue
            seen.add(custom_id)
            items.append((custom_id, row["model"], outcome))
            if len(items) >= _DELIVER_EVERY:
                deliver(items)
                items = []
        if items:
            deliver(items)
        if batch.failure is not None:
            refused.append(batch.failure)
            self.ledger.update(row["intent"], state="rejected", done=1, message=batch.failure)
        else:
            self._accepted += 1
            self.ledger.update(row["intent"], done=1)
        return [k for k in ordered if k in wanted and k not in seen]


def _file_name(intent: str) -> str:
    return f"medcode-{intent}.jsonl"


def _lines(content: bytes) -> Iterator[dict[str, Any]]:
    for line in content.splitlines():
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                continue


def _summary(states: dict[str, tuple[str, int, int, int]]) -> str:
    """The batches' part of the progress line: how many in each state, and the requests the provider did."""
    if not states:
        return ""
    by_state: dict[str, int] = {}
    for status, *_ in states.values():
        by_state[status] = by_state.get(status, 0) + 1
    done = sum(c + f for _, c, f, _ in states.values())
    total = sum(t for *_, t in states.values())
    shown = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items()))
    return f"batches: {shown} · {done}/{total} run by the provider"


# -- the ``medcode batch`` command -----------------------------------------------------------------------------
def status_lines(store: ResponseStore) -> list[str]:
    """The batches recorded in a cache, newest last: id, model, state, counts (``medcode batch status``)."""
    from pytest_medcode.redaction import public_url

    rows = BatchLedger(store).rows()
    if not rows:
        return ["no batches recorded in this cache"]
    lines = [f"{'batch':<28} {'model':<28} {'state':<21} {'requests':>9} {'completed':>9} {'failed':>7}  endpoint"]
    for r in rows:
        state = r["state"] + (", collected" if r["done"] and r["state"] in PROVIDER_DONE else "")
        lines.append(f"{r['batch_id'] or '(' + r['intent'][:12] + ')':<28} {r['model']:<28} {state:<21} "
                     f"{r['requests']:>9} {r['completed']:>9} {r['failed']:>7}  "
                     f"{public_url(r['api_base']) or PROVIDER_NAMES[r['provider'] or OPENAI]}"
                     + (f"  {r['message']}" if r["message"] else ""))
    return lines


def cancel(store: ResponseStore, batch_id: str | None) -> list[str]:
    """Cancel one recorded batch, or every open one (None); a line per batch. A run polling it collects what
    was done and streams the rest; a later run re-attaches and does the same."""
    ledger = BatchLedger(store)
    rows = [r for r in ledger.rows(open_only=True) if r["batch_id"] and r["state"] not in PROVIDER_DONE]
    if batch_id is not None:
        rows = [r for r in ledger.rows() if r["batch_id"] == batch_id]
        if not rows:
            raise BatchRejected(f"no batch {batch_id} is recorded in {store.path}")
    out = []
    for row in rows:
        try:
            status = provider_for(row["provider"], row["api_base"]).cancel(row["batch_id"])
        except Exception as exc:  # the provider's words, one line per batch
            out.append(f"{row['batch_id']}: not cancelled: {api_message(exc)}")
            continue
        ledger.update(row["intent"], state=status)
        out.append(f"{row['batch_id']}: {status}")
    return out or ["no open batch to cancel"]
