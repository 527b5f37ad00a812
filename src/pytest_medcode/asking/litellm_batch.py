"""The batch APIs litellm's files and batches functions reach (``azure/NAME``, ``hosted_vllm/NAME``,
``litellm_proxy/NAME``), behind the batch runner's provider interface (``batch_provider.py``).

Why its own module: these providers take OpenAI's batch files (JSONL request lines, output and error files of
``{custom_id, response}`` lines) through litellm's ``create_file``, ``create_batch``, ``retrieve_batch``,
``list_batches``, ``file_list``, ``file_content`` and ``cancel_batch``, so the runner's OpenAI implementation
(``batch.py``'s ``OpenAIBatches``: file named after the intent, batch ``metadata`` naming it, re-attaching by
both) runs unchanged over :class:`LiteLLMBatchClient`, which has the OpenAI client's shape. litellm is imported
only when a call is made. What differs from the OpenAI client:

- litellm picks the endpoint and key per provider from its own environment (``AZURE_API_BASE``,
  ``AZURE_API_KEY``, ``AZURE_API_VERSION``; ``HOSTED_VLLM_API_BASE``...) when no ``--medcode-api-base`` is
  given; with one, the URL goes without ``user:password@`` and the key is the provider's variable or that
  password (endpoint.py), never stored;
- the batch is made with no retry (litellm keeps one client per endpoint, whatever retries a call asks for, so
  that client retries nothing and the calls that are safe to repeat are retried here): a call whose answer
  never came (a dropped connection, a timeout, a 5xx) may have made it, so it raises :class:`SubmitUnknown` and
  the next run finds it by its ``metadata``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from pytest_medcode.asking.batch_provider import AZURE, HOSTED_VLLM, LITELLM_PROXY, SubmitUnknown, api_message
from pytest_medcode.asking.coders.endpoint import endpoint
from pytest_medcode.asking.coders.litellm_coder import import_litellm as _litellm

RETRIES = 3  # tries of a call that is safe to repeat
#: The environment variable of each provider's key, as litellm reads it when it is given none.
KEY_ENV = {AZURE: "AZURE_API_KEY", HOSTED_VLLM: "HOSTED_VLLM_API_KEY", LITELLM_PROXY: "LITELLM_PROXY_API_KEY"}


def _unknown(exc: Exception) -> bool:
    """Whether a failed call may still have been carried out: no answer came, or a 5xx or 408 did."""
    from openai import APIConnectionError

    status = getattr(exc, "status_code", None)
    return isinstance(exc, APIConnectionError) or (isinstance(status, int) and (status >= 500 or status == 408))


def _retried(call: Callable[[], Any]) -> Any:
    """A call that is safe to repeat, tried again (up to 3 times) when no answer or a 5xx came: litellm keeps one
    client per endpoint whatever retries a call asks for, so its client is made with none (for the batch's
    creation) and the retries are here."""
    for attempt in range(RETRIES):
        try:
            return call()
        except Exception as exc:
            if attempt == RETRIES - 1 or not _unknown(exc):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


class _Files:
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def create(self, file: tuple[str, bytes], purpose: str) -> Any:
        return _retried(lambda: _litellm().create_file(file=file, purpose=purpose, **self.params))

    def list(self, purpose: str) -> Iterator[Any]:
        yield from _retried(lambda: _litellm().file_list(purpose=purpose, **self.params))

    def content(self, file_id: str) -> Any:
        return _retried(lambda: _litellm().file_content(file_id=file_id, **self.params))


class _Batches:
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def create(self, input_file_id: str, endpoint: str, completion_window: str, metadata: dict[str, str]) -> Any:
        try:
            return _litellm().create_batch(completion_window=completion_window, endpoint=endpoint,
                                           input_file_id=input_file_id, metadata=metadata,
                                           **self.params)
        except Exception as exc:
            if _unknown(exc):  # it may have been made: never sent again, found by its metadata next run
                raise SubmitUnknown(api_message(exc)) from None
            raise

    def list(self, limit: int) -> Iterator[Any]:
        """Every batch, newest first, a page of ``limit`` at a time."""
        after: str | None = None
        while True:
            page = _retried(partial(_litellm().list_batches, after=after, limit=limit, **self.params))
            data = list(getattr(page, "data", None) or [])
            yield from data
            if not data or not getattr(page, "has_more", False):
                return
            after = data[-1].id

    def retrieve(self, batch_id: str) -> Any:
        return _retried(lambda: _litellm().retrieve_batch(batch_id=batch_id, **self.params))

    def cancel(self, batch_id: str) -> Any:
        return _litellm().cancel_batch(batch_id=batch_id, **self.params)


class LiteLLMBatchClient:
    """The part of the OpenAI client a batch run uses (``files``, ``batches``), made of litellm's functions for
    one provider and endpoint (None: the one litellm's environment names)."""

    def __init__(self, provider: str, api_base: str | None) -> None:
        params: dict[str, Any] = {"custom_llm_provider": provider, "max_retries": 0, "timeout": 600.0}
        if api_base:
            where = endpoint(api_base, key_env=KEY_ENV.get(provider, "OPENAI_API_KEY"))
            params.update(api_base=where.url, api_key=where.key)
        self.files = _Files(params)
        self.batches = _Batches(params)
