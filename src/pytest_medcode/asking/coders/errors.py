"""One reading of an API failure for every client: may another attempt succeed, and is it the setup's
fault (key, model name, quota, endpoint) rather than this question's?"""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Mapping
from typing import Any

from pytest_medcode.asking.coders.base import CallFailed

_MESSAGE_CHARS = 200


def _quota(code: str | None, message: str) -> bool:
    """OpenAI answers an exhausted quota with a 429 that no amount of waiting fixes."""
    return code == "insufficient_quota" or "quota" in message.lower()


def short(message: str | None) -> str:
    """The first line of an API's error message, bounded: enough to act on, never a page of HTML."""
    text = " ".join((message or "").split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def status_failure(status: int, kind: str, message: str | None, code: str | None = None,
                   retry_after: float | None = None) -> CallFailed:
    """A non-2xx answer → CallFailed with the retry decision and the API's own words."""
    detail = short(message)
    text = f"HTTP {status} {kind}" + (f": {detail}" if detail else "")
    if status == 429 and _quota(code, detail):
        return CallFailed(text, retryable=False, setup=True)
    if status in (401, 403, 404):  # refused key, no access, unknown model or wrong path
        return CallFailed(text, retryable=False, setup=True)
    retryable = status in (408, 409, 429) or status >= 500
    return CallFailed(text, retryable=retryable, retry_after=retry_after)


def refused(exc: BaseException) -> bool:
    """The connection was never made (refused, no such host): the endpoint is wrong or down. A connection
    reset or a dropped answer on a live server is not that: it is one call's bad luck."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError | socket.gaierror) or type(cause).__name__ == "ConnectError":
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def no_answer(kind: str, exc: BaseException) -> CallFailed:
    """No HTTP answer at all: retried (a blip); a setup fault when nothing listens where we ask."""
    cause = exc.__cause__ or exc.__context__
    detail = short(str(cause)) if cause is not None and str(cause) else ""
    return CallFailed(f"{kind}" + (f": {detail}" if detail else ""), retryable=True, setup=refused(exc))


def not_a_completion(body: object) -> CallFailed:
    """A 200 whose body is not a chat completion (an HTML page, a proxy's login form): a wrong endpoint."""
    snippet = short(str(body))[:80]
    return CallFailed(f"the endpoint did not answer with a chat completion (got {snippet!r}); is the URL "
                      "the API's base, e.g. http://HOST:PORT/v1?", retryable=False, setup=True)


def completion_text(response: object) -> str:
    """The answer text of a chat completion (any client's object); a malformed one, or one with no text at all
    (a refusal, a filter, tokens spent elsewhere), is a failed call, not an answer with "no code". Neither is
    retried: the endpoint answered (and billed) this question, and asking again would bill it again."""
    try:
        choice = response.choices[0]  # type: ignore[attr-defined]
        text = choice.message.content
    except (AttributeError, IndexError, TypeError, KeyError):
        raise CallFailed("malformed response: HTTP 200 with no answer in it (the chat completion has no choices)",
                         retryable=False) from None
    if text is None:
        raise CallFailed(f"no answer text (content: null, finish_reason: {getattr(choice, 'finish_reason', None)})",
                         retryable=False)
    return text


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds to wait that an answer asks for: ``retry-after-ms``, or ``Retry-After`` in either of its forms
    (seconds, or an HTTP-date); None when it names no wait that can be read."""
    if headers is None:
        return None
    try:
        value = headers.get("retry-after-ms")
        if value is not None:
            return max(0.0, float(value) / 1000)
        value = headers.get("retry-after")
    except (AttributeError, TypeError, ValueError):
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return None if when is None else max(0.0, when.timestamp() - time.time())
