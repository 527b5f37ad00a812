"""``openai/NAME`` with ``--medcode-api-base``: straight to the OpenAI client, without litellm.

For an OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama's /v1, a gateway) the official client
is all that is needed, and it costs a fraction of litellm's CPU per call — which is what bounds
throughput on a small CI machine once dozens of calls are in flight.
"""

from __future__ import annotations

import json
from typing import Any

from pytest_medcode.asking.coders.base import CallFailed, Question, Reply
from pytest_medcode.asking.coders.endpoint import PLACEHOLDER_KEY, endpoint
from pytest_medcode.asking.coders.errors import (
    completion_text,
    no_answer,
    not_a_completion,
    retry_after,
    status_failure,
)
from pytest_medcode.asking.coders.logprobs import REQUEST as LOGPROBS
from pytest_medcode.asking.coders.logprobs import confidences_of

__all__ = ["PLACEHOLDER_KEY", "OpenAICompatibleCoder"]


class OpenAICompatibleCoder:
    cacheable = True
    remote = True  # asks an API over the network: checked by a probe request before the run

    def __init__(self, name: str, api_base: str, timeout: float, logprobs: bool = False) -> None:
        self.name = name
        self.logprobs = logprobs  # a confidence is asked for: request log-probabilities (logprobs.py)
        self.model = name.split("/", 1)[1] if name.startswith("openai/") else name
        self.api_base = api_base
        self.timeout = timeout
        self._client: Any = None

    def identity(self) -> dict[str, Any]:
        # Same identity as the litellm path: the answer does not depend on the client library.
        identity: dict[str, Any] = {"coder": "litellm", "model": self.name, "api_base": self.api_base}
        return {**identity, **LOGPROBS} if self.logprobs else identity

    def check(self) -> None:
        return None

    def close(self) -> None:
        """Nothing to release here: the client's connections belong to the engine's event loop, which
        has stopped by now, and end with the process."""

    def _get_client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            where = endpoint(self.api_base)  # a user:password@ in the URL is not sent as Basic auth
            self._client = AsyncOpenAI(
                base_url=where.url,
                api_key=where.key,
                max_retries=0,  # the query engine retries, honouring Retry-After, and counts attempts
                timeout=self.timeout,
            )
        return self._client

    async def answer(self, question: Question) -> Reply:
        import openai

        try:
            response = await self._get_client().chat.completions.create(
                model=self.model,
                messages=question.chat(),
                temperature=question.temperature,
                max_tokens=question.max_tokens,
                **(LOGPROBS if self.logprobs else {}),
            )
        except openai.APIStatusError as exc:
            raise status_failure(exc.status_code, exc.__class__.__name__, _api_message(exc),
                                 getattr(exc, "code", None), retry_after(exc.response.headers)) from None
        except openai.APITimeoutError as exc:
            raise CallFailed(f"{exc.__class__.__name__}: timed out after {self.timeout:g} s") from None
        except openai.APIConnectionError as exc:
            raise no_answer(exc.__class__.__name__, exc) from None
        except (json.JSONDecodeError, ValueError, TypeError) as exc:  # a malformed body
            raise CallFailed(f"malformed response: {exc.__class__.__name__}") from None
        if isinstance(response, str | bytes):  # the client hands back a body that is not JSON as it came
            raise not_a_completion(response)
        usage: dict[str, Any] = {}
        if getattr(response, "usage", None) is not None:
            usage = {"prompt_tokens": response.usage.prompt_tokens,
                     "completion_tokens": response.usage.completion_tokens}
        try:
            text = completion_text(response)
        except CallFailed as exc:  # billed all the same: the usage stays on the outcome
            exc.usage = usage
            raise
        confidence, per_code = confidences_of(response.choices[0]) if self.logprobs else (None, None)
        return Reply(text=text, usage=usage, confidence=confidence, code_confidences=per_code)


def _api_message(exc: Any) -> str:
    """The API's own words ("The model `x` does not exist"), not the client's summary of them."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", "") or "")


