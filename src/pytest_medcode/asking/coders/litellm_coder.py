"""Provider models through litellm: one name covers OpenAI, Gemini, Replicate, Ollama and more.

litellm is imported on first use (it costs 3–4 s) with its price map read from the package, not
the network.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pytest_medcode.asking.coders.base import CallFailed, CoderUnavailable, Question, Reply
from pytest_medcode.asking.coders.endpoint import endpoint
from pytest_medcode.asking.coders.errors import (
    completion_text,
    not_a_completion,
    refused,
    retry_after,
    short,
    status_failure,
)
from pytest_medcode.asking.coders.logprobs import REQUEST as LOGPROBS
from pytest_medcode.asking.coders.logprobs import confidences_of


def import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


class LiteLLMCoder:
    cacheable = True
    remote = True  # asks an API over the network: checked by a probe request before the run

    def __init__(self, name: str, api_base: str | None, timeout: float, logprobs: bool = False) -> None:
        self.name = name
        self.logprobs = logprobs  # a confidence is asked for: request log-probabilities (logprobs.py)
        self.api_base = api_base
        self.timeout = timeout

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"coder": "litellm", "model": self.name, "api_base": self.api_base}
        return {**identity, **LOGPROBS} if self.logprobs else identity

    def check(self) -> None:
        if self.api_base:
            return  # a custom endpoint decides for itself whether it wants a key
        litellm = import_litellm()
        try:
            litellm.get_llm_provider(self.name)
        except Exception:  # litellm names no provider for this model: no call can succeed
            raise CoderUnavailable(
                f"--model {self.name}: litellm knows no provider for this name; give one it knows "
                "(gpt-4o, gemini/gemini-pro, anthropic/claude-3-5-sonnet-20240620, ollama/llama3), or "
                "openai/NAME with --medcode-api-base for an OpenAI-compatible server"
            ) from None
        try:
            env = litellm.validate_environment(model=self.name)
        except Exception as exc:  # unknown provider names raise here
            raise CoderUnavailable(f"--model {self.name}: litellm does not know this model ({exc})") from None
        missing = env.get("missing_keys") or []
        if missing:
            raise CoderUnavailable(
                f"--model {self.name}: set {' and '.join(missing)} in the environment "
                f"(or point --medcode-api-base at an OpenAI-compatible server)"
            )

    def close(self) -> None:
        """Nothing to release: litellm keeps its clients process-wide."""

    def _model_and_key(self) -> tuple[str, str | None, str | None]:
        """The model name, endpoint and key for litellm: its own provider's when no endpoint is given; else
        the endpoint without user:password@ (never sent as Basic auth) and its key (endpoint.py)."""
        if not self.api_base:
            return self.name, None, None
        model = self.name if "/" in self.name else f"openai/{self.name}"
        where = endpoint(self.api_base)
        return model, where.url, where.key

    async def answer(self, question: Question) -> Reply:
        litellm = import_litellm()
        model, api_base, key = self._model_and_key()
        try:
            response = await litellm.acompletion(
                model=model,
                messages=question.chat(),
                temperature=question.temperature,
                max_tokens=question.max_tokens,
                api_base=api_base,
                api_key=key,
                timeout=self.timeout,
                num_retries=0,
                max_retries=0,
                **(LOGPROBS if self.logprobs else {}),
            )
        except Exception as exc:
            raise _classify(exc, self.timeout) from None
        return reply_of(response, self.logprobs)


def reply_of(response: Any, logprobs: bool) -> Reply:
    """litellm's chat completion → the reply: its text, token usage and (asked for) confidences; a completion
    with no answer in it is a CallFailed that keeps the usage (it was billed all the same)."""
    usage: dict[str, Any] = {}
    u = getattr(response, "usage", None)
    if u is not None:
        usage["prompt_tokens"] = getattr(u, "prompt_tokens", None)
        usage["completion_tokens"] = getattr(u, "completion_tokens", None)
    # No cost here: a case's cost is its usage at the run's price table (results/costs.py), the same
    # for every coder, so a --medcode-price wins and the batch discount applies.
    try:
        text = completion_text(response)
    except CallFailed as exc:  # billed all the same: the usage stays on the outcome
        exc.usage = usage
        raise
    confidence, per_code = confidences_of(response.choices[0]) if logprobs else (None, None)
    return Reply(text=text, usage=usage, confidence=confidence, code_confidences=per_code)


# "litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key" → the API's words
_LITELLM_PREFIX = re.compile(r"^(litellm\.\w+: )?(\w+Error: )?(\w+Exception - )?")
_SETUP_ERRORS = ("AuthenticationError", "PermissionDeniedError", "NotFoundError")


def _classify(exc: Exception, timeout: float | None = None) -> CallFailed:
    """litellm's exception → CallFailed with the retry decision and any Retry-After."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    wait = retry_after(getattr(response, "headers", None))
    name = exc.__class__.__name__
    message = _LITELLM_PREFIX.sub("", str(exc).splitlines()[0]) if str(exc) else name
    if name == "Timeout":
        return CallFailed(f"{name}: timed out after {timeout:g} s" if timeout else f"{name}: {short(message)}")
    if "response with no 'choices'" in message:  # litellm's reading of a 200 that holds no answer: not a 500
        return CallFailed("malformed response: HTTP 200 with no answer in it (the chat completion has no "
                          "choices)", retryable=False)
    if "invalid response from llm endpoint" in message.lower():  # a web page, not an API, answered
        return not_a_completion(message.partition("Received:")[2].strip() or message)
    if refused(exc):
        return CallFailed(f"{name}: {short(message)}", retryable=True, setup=True)
    if isinstance(status, int) and 400 <= status < 600:
        failure = status_failure(status, name, message, getattr(exc, "code", None), wait)
        if name in _SETUP_ERRORS or name == "BadRequestError":
            failure.retryable = False
        failure.setup = failure.setup or name in _SETUP_ERRORS
        return failure
    return CallFailed(f"{name}: {short(message)}", retryable=True, retry_after=wait)

