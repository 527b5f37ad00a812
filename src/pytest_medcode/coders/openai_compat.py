"""``openai/NAME`` with ``--medcode-api-base``: straight to the OpenAI client, without litellm.

For an OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama's /v1, a gateway) the official client
is all that is needed, and it costs a fraction of litellm's CPU per call — which is what bounds
throughput on a small CI machine once dozens of calls are in flight.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pytest_medcode.coders.base import CallFailed, CodeRequest, Reply

PLACEHOLDER_KEY = "sk-no-key-needed"  # local servers need some key string; never a real one


class OpenAICompatibleCoder:
    cacheable = True

    def __init__(self, name: str, api_base: str, timeout: float) -> None:
        self.name = name
        self.model = name.split("/", 1)[1] if name.startswith("openai/") else name
        self.api_base = api_base
        self.timeout = timeout
        self._client: Any = None

    def identity(self) -> dict[str, Any]:
        # Same identity as the litellm path: the answer does not depend on the client library.
        return {"coder": "litellm", "model": self.name, "api_base": self.api_base}

    def check(self) -> None:
        return None

    def _get_client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                base_url=self.api_base,
                api_key=os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY,
                max_retries=0,  # the query engine retries, honouring Retry-After, and counts attempts
                timeout=self.timeout,
            )
        return self._client

    async def answer(self, request: CodeRequest) -> Reply:
        import openai

        try:
            response = await self._get_client().chat.completions.create(
                model=self.model,
                messages=request.chat(),
                temperature=request.temperature,
                max_tokens=request.max_tokens,
            )
        except openai.APIStatusError as exc:
            status = exc.status_code
            retry_after = _retry_after(exc.response.headers)
            retryable = status in (408, 409, 429) or status >= 500
            raise CallFailed(f"HTTP {status} {exc.__class__.__name__}", retryable, retry_after) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise CallFailed(exc.__class__.__name__) from None
        except (json.JSONDecodeError, ValueError, TypeError) as exc:  # a malformed body
            raise CallFailed(f"malformed response: {exc.__class__.__name__}") from None
        try:
            choice = response.choices[0]
            text = choice.message.content
        except (AttributeError, IndexError, TypeError) as exc:
            raise CallFailed(f"malformed response: {exc}") from None
        if text is None:  # no answer at all (a refusal, a filter, tokens spent elsewhere): a failed call, not "no code"
            raise CallFailed(f"no answer text (content: null, finish_reason: {getattr(choice, 'finish_reason', None)})",
                             retryable=False)
        usage: dict[str, Any] = {}
        if response.usage is not None:
            usage = {"prompt_tokens": response.usage.prompt_tokens,
                     "completion_tokens": response.usage.completion_tokens}
        return Reply(text=text, usage=usage)


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after-ms")
        if value is not None:
            return float(value) / 1000
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
