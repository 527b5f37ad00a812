"""What every coder (a model, a retrieval tool, a team's product) looks like to the query engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pytest_medcode.codesystems import CodeSystem, load_system
from pytest_medcode.dataset.cases import Case


class CoderUnavailable(Exception):
    """The coder cannot run here (missing API key, extra not installed); the message is one line."""


class CallFailed(Exception):
    """One call failed; ``retryable`` says whether another attempt may succeed.

    ``setup`` marks a failure that says nothing about the question — a wrong key, an unknown model, an
    exhausted quota, an endpoint that is not an OpenAI-compatible API or cannot be reached — so it is
    not kept as the case's answer (a rerun after the fix asks it) and it counts towards the circuit
    breaker that stops asking a model that fails every call the same way.
    """

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None,
                 setup: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.setup = setup


@dataclass(frozen=True)
class CodeRequest:
    """One question: the case, the exact messages, and the generation parameters."""

    case: Case
    messages: tuple[tuple[str, str], ...]  # (role, content): hashable, so a request can key a cache
    temperature: float
    max_tokens: int
    repeat: int = 0  # --medcode-repeats: the k-th asking of the same question, so caches keep them apart

    def chat(self) -> list[dict[str, str]]:
        """The messages in the OpenAI chat format."""
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass
class Reply:
    text: str
    usage: dict[str, Any] = field(default_factory=dict)  # prompt_tokens, completion_tokens, cost_usd


@runtime_checkable
class Coder(Protocol):
    name: str
    #: Answers worth keeping in the response cache (paid or slow); a local lookup is not.
    cacheable: bool

    def identity(self) -> dict[str, Any]:
        """What, besides the request, decides the answer (model, endpoint) — never a secret."""

    def check(self) -> None:
        """Raise CoderUnavailable before any case runs if this coder cannot work here."""

    async def answer(self, request: CodeRequest) -> Reply:
        """The raw answer text; raise CallFailed for a failed call."""


class WrappingCoder:
    """A tool around another coder (``rag:``, ``verify:``): same cacheability, checks and clean-up as the
    coder it wraps, and the code tables of the run (user code sets included) for its own work."""

    def __init__(self, name: str, inner: Coder, codesets: dict | None = None) -> None:
        self.name = name
        self.inner = inner
        self._codesets = codesets or {}

    @property
    def cacheable(self) -> bool:
        return bool(getattr(self.inner, "cacheable", False))

    def check(self) -> None:
        self.inner.check()

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def system(self, request: CodeRequest) -> CodeSystem:
        """The code table of the request's system (the user's file when one was given)."""
        return load_system(request.case.system, self._codesets.get(request.case.system))
