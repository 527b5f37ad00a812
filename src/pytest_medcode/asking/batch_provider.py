"""The provider interface of batch runs (``--medcode-batch``): what the runner (``batch.py``) asks of a
provider's batch API, and the words both sides use.

Why its own module: the runner and each provider's implementation (``batch.py``'s OpenAI one,
``anthropic_batch.py``) import these, and the runner imports an implementation only when a run needs it; with
them here neither imports the other's module at load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_medcode.asking.engine import Call, Outcome
from pytest_medcode.redaction import mask_credentials

OPENAI, ANTHROPIC = "openai", "anthropic"  # the providers whose batch API is spoken natively
AZURE, HOSTED_VLLM, LITELLM_PROXY = "azure", "hosted_vllm", "litellm_proxy"
#: The providers whose batches go through litellm's batch functions (``litellm_batch.py``): those litellm's
#: files and batches functions serve with OpenAI's request and result files (its
#: ``OPENAI_COMPATIBLE_BATCH_AND_FILES_PROVIDERS``, less OpenAI itself, and ``azure``), by their model prefix.
THROUGH_LITELLM = (AZURE, HOSTED_VLLM, LITELLM_PROXY)
PROVIDER_NAMES = {OPENAI: "OpenAI", ANTHROPIC: "Anthropic", AZURE: "Azure OpenAI", HOSTED_VLLM: "vLLM",
                  LITELLM_PROXY: "LiteLLM proxy"}


class SubmitUnknown(Exception):
    """A submission whose answer never came (the connection dropped, a timeout, a 5xx): the provider may have
    made the batch, so it is neither sent again nor streamed this run; the next run looks for it."""


@dataclass(frozen=True)
class BatchRoute:
    """Where a model's batches go: the endpoint (None: the provider's own), the model name the API knows, and
    whose batch API it is."""

    api_base: str | None
    model: str
    logprobs: bool = False  # a confidence is asked for: each request body asks for log-probabilities
    provider: str = OPENAI


@dataclass(frozen=True)
class BatchState:
    """A batch as its provider reports it, in the runner's terms."""

    id: str
    status: str  # the provider's own word, as recorded and shown
    ended: bool  # nothing more will run: its results are to be collected
    completed: int
    failed: int
    total: int | None  # None: the provider gave no counts yet (the recorded number of requests stands)
    failure: str | None = None  # why the provider failed the whole batch (its requests stream), else None
    handle: Any = None  # the provider's object, for reading its results


class BatchProvider(Protocol):
    """One provider's batch API: the only part of a batch run that differs between providers."""

    @property
    def max_requests(self) -> int: ...

    @property
    def max_bytes(self) -> int: ...

    def request_line(self, key: str, route: BatchRoute, call: Call) -> bytes:
        """One request as the provider takes it, keyed by the cache key; its size counts toward the limit."""
        ...

    def submit(self, intent: str, lines: list[bytes], uploaded: Callable[[str], None]) -> BatchState:
        """Send one batch; ``uploaded`` records a file id before the batch is made of it. Raises the provider's
        refusal, or :class:`SubmitUnknown` when it cannot be known whether the batch was made."""
        ...

    def find(self, row: dict[str, Any], keys: set[str], known: set[str],
             uploaded: Callable[[str], None]) -> BatchState | None:
        """The batch an intent recorded without a batch id became (finished when half made), or None when
        nothing of it reached the provider; ``known``: batch ids other intents hold. Raises when the provider
        cannot be asked."""
        ...

    def retrieve(self, batch_id: str) -> BatchState: ...

    def results(self, state: BatchState) -> Iterator[tuple[str, Outcome | None]]:
        """(custom_id, outcome) for each request of an ended batch; None: to be asked again."""
        ...

    def cancel(self, batch_id: str) -> str:
        """Ask the provider to stop the batch; its status after."""
        ...


def api_message(exc: Exception) -> str:
    """The provider's own words for a refused call, on one line, credentials masked."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return mask_credentials(" ".join(str(inner["message"]).split()))
    status = getattr(exc, "status_code", None)
    text = " ".join(str(getattr(exc, "message", "") or exc).split())
    return mask_credentials(f"HTTP {status}: {text}" if status else f"{exc.__class__.__name__}: {text}")
