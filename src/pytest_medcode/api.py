"""The public API for a coder: what a product is asked, what it answers, and how it fails.

``from pytest_medcode.api import Question, Reply, CallFailed, CoderUnavailable, Coder, CoderOptions``

A coder sees a :class:`Question` and nothing else of the case: the reference code never travels
with it, so no coder can read the answer key from what it is handed. A third-party coder factory
(entry point group ``pytest_medcode.coders``) is called as ``factory(name, options)`` with a
:class:`CoderOptions`, not the run's whole configuration.

This module imports only the standard library (and the package's stdlib-only masker), so a product can
depend on it without pulling in pytest, pyarrow or numpy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from pytest_medcode.redaction import mask_credentials

__all__ = ["CallFailed", "Coder", "CoderOptions", "CoderUnavailable", "Question", "Reply"]


@dataclass(frozen=True)
class Question:
    """One question, as a coder may see it: the system, the description as asked, the prompt and the
    generation parameters — never the reference code."""

    system: str  # "icd10cm", "icd9cm", "icd9cm-proc" or "cpt"
    #: The description as asked: a robustness variant's wording when variants are on, else the official one.
    description: str
    messages: tuple[tuple[str, str], ...]  # (role, content): the prompt, hashable
    temperature: float
    max_tokens: int
    repeat: int = 0  # --medcode-repeats: the k-th asking of the same question
    #: "code": one description, one code (the study's task); "document": a clinical text (``description``)
    #: to be coded with every code it supports — answer with all of them.
    task: str = "code"

    @property
    def case_id(self) -> str:
        """A stable, opaque id of the question (a product may log or cache by it).

        It is a hash of what the question already says (system, description, temperature, repeat) and of
        nothing else: a hash of the reference code could be reversed by hashing every code of the table,
        and a hash of the variant's name by hashing its six names. Two cases that ask exactly the same
        question (ICD-9-CM has a few codes that share a description) share the id, as nothing a coder
        sees can tell them apart."""
        blob = json.dumps([self.system, self.description, self.temperature, self.repeat],
                          ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def chat(self) -> list[dict[str, str]]:
        """The messages in the OpenAI chat format."""
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass
class Reply:
    """A coder's answer: the raw text (scored as it is), what the call cost, and how sure the product is.

    ``confidence`` (0–1) is what a straight-through product thresholds on: cases above its threshold are coded
    automatically, the rest go to a person. None is "no confidence" — never read as 1.0. ``abstained`` is the
    product declining the case outright (it goes to a person whatever its confidence); any text is still
    scored, so the report can say how the declined cases would have fared. A confidence outside [0, 1] or
    NaN is recorded as no confidence, with one warning naming the coder.

    ``code_confidences`` is for a document's answer (``Question.task == "document"``), a set of codes: how sure
    the product is of each code it names, keyed by the code as written in ``text`` (``{"E11.9": 0.97, "I10":
    0.62}``). A document is coded automatically at a threshold only when every code it names has a confidence at
    or above it. A code it does not cover has no confidence (never 1.0); a value outside [0, 1] or NaN is
    dropped the same way, with the same one warning. A code query reads ``confidence`` alone."""

    text: str
    usage: dict[str, Any] = field(default_factory=dict)  # prompt_tokens, completion_tokens, cost_usd
    confidence: float | None = None
    abstained: bool = False
    code_confidences: Mapping[str, float] | None = None


class CoderUnavailable(Exception):
    """The coder cannot run here (missing API key, extra not installed); the message is one line, with any
    credential in it masked."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(mask_credentials(a) if isinstance(a, str) else a for a in args))


class CallFailed(Exception):
    """One call failed; ``retryable`` says whether another attempt may succeed.

    ``setup`` marks a failure that says nothing about the question — a wrong key, an unknown model, an
    exhausted quota, an endpoint that is not an OpenAI-compatible API or cannot be reached — so it is
    not kept as the case's answer (a rerun after the fix asks it) and it counts towards the circuit
    breaker that stops asking a model that fails every call the same way.

    The message is masked when the exception is made (:func:`pytest_medcode.redaction.mask_credentials`): a
    provider that echoes the key it was sent never gets it into the cache, the records or the terminal.
    """

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None,
                 setup: bool = False, usage: dict[str, Any] | None = None) -> None:
        super().__init__(mask_credentials(str(message)))
        self.retryable = retryable
        self.retry_after = retry_after
        self.setup = setup
        #: What the failed call cost when the endpoint said (a 200 with no answer in it is billed all the same).
        self.usage: dict[str, Any] = usage or {}


def _frozen_paths(codesets: Mapping[str, Path | str] | None) -> Mapping[str, Path]:
    return MappingProxyType({system: Path(path) for system, path in (codesets or {}).items()})


@dataclass(frozen=True)
class CoderOptions:
    """What a coder factory may use of the run's configuration: where to call and for how long, the
    user's own code tables, and the tools' knobs. Secrets are not in it (API keys stay in the
    environment) and neither is anything about the cases."""

    api_base: str | None = None  # --medcode-api-base: an OpenAI-compatible endpoint
    timeout: float = 30.0  # --medcode-timeout: seconds per call
    #: --medcode-codeset: the user's code-table files by system (read-only).
    codesets: Mapping[str, Path] = field(default_factory=dict, hash=False)
    rag_k: int = 15  # --medcode-rag-k: candidates that rag:MODEL retrieves
    verify_rounds: int = 2  # --medcode-verify-rounds: follow-ups that verify:MODEL may send
    #: A confidence metric or gate is asked for: LLM coders request log-probabilities (a different request,
    #: so a different cache key); False keeps every request, and every cache key, as it always was.
    confidence: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "codesets", _frozen_paths(self.codesets))


@runtime_checkable
class Coder(Protocol):
    """A model, a retrieval tool or a team's product, as the query engine drives it."""

    name: str

    @property
    def cacheable(self) -> bool:
        """Answers worth keeping in the response cache (paid or slow); a local lookup is not. A class
        attribute (``cacheable = True``) or a read-only property both satisfy it."""

    def identity(self) -> dict[str, Any]:
        """What, besides the question, decides the answer (model, endpoint) — never a secret."""

    def check(self) -> None:
        """Raise CoderUnavailable before any case runs if this coder cannot work here."""

    async def answer(self, question: Question) -> Reply:
        """The raw answer text; raise CallFailed for a failed call."""

    def close(self) -> None:
        """Release what the coder holds (a server process, a client) at the end of the session."""
