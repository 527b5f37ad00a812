"""Anthropic's Message Batches API behind the batch runner's provider interface (``batch_provider.py``).

Why its own module: the ``anthropic`` package is optional (``pip install 'pytest-medcode[anthropic]'``) and is
imported only here, when a run batches an ``anthropic/NAME`` or ``claude-*`` model. What differs from OpenAI's
API, and what is done about it:

- a batch is one call carrying every request (no file to upload): the intent is recorded, then the call is
  sent, then the batch's id is recorded. The call is sent once (no client retry): a call whose answer never
  came may have made the batch, so its requests are held for the next run, never sent twice;
- a batch has no metadata to name the intent by. A run killed between the call and recording its id finds the
  batch among those made since the intent (a minute's clock slack): one that no other intent holds, of the
  intent's size, whose results (when it has ended) begin with one of the intent's keys. None such: the intent
  never reached Anthropic and is sent as new. Several still running: it cannot be told yet, and the intent is
  held for a later run. Only the intent's own keys are ever read from a batch;
- results are JSON lines read as they stream in (``succeeded``, ``errored``, ``canceled``, ``expired``); an
  ``errored`` line ends as the case's error when it is final (a 4xx), and is asked again by streaming when it
  may pass another time (429, 5xx, ``overloaded_error``) or says the setup is wrong (key, permission, model).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from typing import Any

from pytest_medcode.asking.batch_provider import BatchRoute, BatchState, SubmitUnknown, api_message
from pytest_medcode.asking.coders.endpoint import endpoint
from pytest_medcode.asking.coders.errors import status_failure
from pytest_medcode.asking.engine import Call, Outcome

MAX_REQUESTS = 100_000  # per batch (Anthropic's limit)
MAX_BYTES = 256 * 1000 * 1000  # per batch: 256 MB, in the smaller reading of "MB"
PATH = "/v1/messages/batches"
ENDED = "ended"
CLOCK_SLACK_S = 60.0  # a batch made this long before its intent was recorded may still be its own
#: Anthropic's error types and the HTTP status each stands for (the streamed path's rules then apply).
ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
                "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529}


def client_for(api_base: str | None) -> Any:
    """The synchronous Anthropic client for an endpoint: ``--medcode-api-base`` with or without its ``/v1`` (the
    client adds it), the key from ANTHROPIC_API_KEY or the URL's password (endpoint.py), never stored."""
    from anthropic import Anthropic

    where = endpoint(api_base, key_env="ANTHROPIC_API_KEY")
    base = where.url.rstrip("/").removesuffix("/v1") if where.url else None
    return Anthropic(base_url=base, api_key=where.key, max_retries=3, timeout=600.0)


def request_line(key: str, model: str, call: Call) -> bytes:
    """One request of a batch, keyed by the cache key: the Messages API body the question makes (its system
    message as ``system``). Anthropic gives no log-probabilities, so none are asked for."""
    q = call.question
    chat = q.chat()
    system = [m["content"] for m in chat if m["role"] == "system"]
    params: dict[str, Any] = {"model": model, "max_tokens": q.max_tokens,
                              "messages": [m for m in chat if m["role"] != "system"], "temperature": q.temperature}
    if system:
        params["system"] = "\n\n".join(system)
    return json.dumps({"custom_id": key, "params": params}, ensure_ascii=False).encode("utf-8")


def read_result(entry: dict[str, Any]) -> Outcome | None:
    """One line of a batch's results as an outcome; None when it should be asked again (a retryable or setup
    error, a request the batch never ran)."""
    usage: dict[str, Any] = {"batch": True}
    result = entry.get("result")
    kind = result.get("type") if isinstance(result, dict) else None
    if kind == "succeeded":
        message = result.get("message") if isinstance(result, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            return Outcome(None, "malformed response in the batch results", 0.0, 1, usage)
        counted = message.get("usage")
        if isinstance(counted, dict):
            usage.update(prompt_tokens=counted.get("input_tokens"), completion_tokens=counted.get("output_tokens"))
        texts = [b["text"] for b in message["content"]
                 if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]
        if not texts:
            return Outcome(None, f"no answer text (stop_reason: {message.get('stop_reason')})", 0.0, 1, usage)
        return Outcome("".join(texts), None, 0.0, 1, usage)
    if kind != "errored":  # canceled, expired: never run
        return None
    wrapper = result.get("error") if isinstance(result, dict) else None
    error = wrapper.get("error", wrapper) if isinstance(wrapper, dict) else None
    error = error if isinstance(error, dict) else {}
    failure = status_failure(ERROR_STATUS.get(str(error.get("type")), 500), "batch request", error.get("message"),
                             error.get("type"))
    if failure.retryable or failure.setup:  # setup failures (key, model) are the streamed path's to judge
        return None
    return Outcome(None, str(failure), 0.0, 1, usage)


def _state(batch: Any) -> BatchState:
    counts = batch.request_counts
    total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
    return BatchState(batch.id, batch.processing_status, batch.processing_status == ENDED, counts.succeeded,
                      counts.errored, total, None, batch)


class AnthropicBatches:
    """The Message Batches API of one endpoint (None: Anthropic's own)."""

    max_requests = MAX_REQUESTS
    max_bytes = MAX_BYTES

    def __init__(self, api_base: str | None) -> None:
        self.client = client_for(api_base)

    def request_line(self, key: str, route: BatchRoute, call: Call) -> bytes:
        return request_line(key, route.model, call)

    def submit(self, intent: str, lines: list[bytes], uploaded: Callable[[str], None]) -> BatchState:
        """The batch in one call of the requests as they were written (no copy of them as objects), sent once."""
        from anthropic import APIConnectionError, APIStatusError
        from anthropic.types.messages import MessageBatch

        body = b'{"requests":[' + b",".join(lines) + b"]}"
        try:
            batch = self.client.post(PATH, cast_to=MessageBatch, content=body,
                                     options={"headers": {"Content-Type": "application/json"}, "max_retries": 0})
        except APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code == 408:  # the batch may have been made
                raise SubmitUnknown(api_message(exc)) from None
            raise  # a refusal: nothing was made
        except APIConnectionError as exc:  # no answer (a dropped connection, a timeout)
            raise SubmitUnknown(api_message(exc)) from None
        return _state(batch)

    def find(self, row: dict[str, Any], keys: set[str], known: set[str],
             uploaded: Callable[[str], None]) -> BatchState | None:
        since = row["created"] - CLOCK_SLACK_S
        running: list[Any] = []
        for batch in self.client.messages.batches.list(limit=100):
            if batch.created_at.timestamp() < since:
                break
            state = _state(batch)
            if batch.id in known or state.total != row["requests"] or batch.archived_at is not None:
                continue
            if not state.ended:
                running.append(state)
            elif self._first_id(batch.id) in keys:
                return state
        if len(running) > 1:
            raise LookupError(f"{len(running)} running batches of its size were made since it, and none can be told "
                              "its own until they end")
        return running[0] if running else None

    def _first_id(self, batch_id: str) -> str | None:
        """The first custom_id of an ended batch's results (the rest is not downloaded)."""
        entries = self._entries(batch_id)
        try:
            return next(entries, (None, None))[0]
        finally:
            entries.close()

    def _entries(self, batch_id: str) -> Generator[tuple[str, dict[str, Any]], None, None]:
        """(custom_id, line) of a batch's results, parsed one line at a time as they stream in."""
        with self.client.messages.batches.with_streaming_response.results(batch_id) as response:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    yield str(entry.get("custom_id", "")), entry

    def retrieve(self, batch_id: str) -> BatchState:
        return _state(self.client.messages.batches.retrieve(batch_id))

    def results(self, state: BatchState) -> Iterator[tuple[str, Outcome | None]]:
        for custom_id, entry in self._entries(state.id):
            yield custom_id, read_result(entry)

    def cancel(self, batch_id: str) -> str:
        return str(self.client.messages.batches.cancel(batch_id).processing_status)
