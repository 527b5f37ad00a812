"""``rag:<model>``: retrieve candidate codes, let the model choose (retrieve-then-rank, Kwan 2024).

The study's closing suggestion made concrete: the ``lookup`` index retrieves the ``k`` billable codes
whose descriptions best match the description asked (``--medcode-rag-k``, default 15, as in Kwan et
al.), and ``<model>`` (any other ``--model`` value: a provider model, ``openai/NAME`` with
``--medcode-api-base``, ``local:smollm2``, a ``python:`` product) picks one of them. The prompt
replaces the study's single user turn; any later turns of the conversation (``verify:rag:...``
appends its follow-ups) are kept after it. The recorded raw answer is what the model said, so a
model that answers a code outside the list is scored on that code.

Its confidence is the chosen candidate's retrieval score (0-1; 0 when the answer names no candidate), times
the model's own confidence when it gives one (log-probabilities).

Candidates are listed in retrieval order (best first): that is the information a retrieval tool
gives, and a model that always takes the first one scores what ``lookup`` scores.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pytest_medcode.asking.coders.base import Coder, Question, Reply, WrappingCoder
from pytest_medcode.asking.coders.lookup import Candidate, candidates_table, index_for, match_confidence

__all__ = ["RAG_PROMPT", "RETRIEVER", "RagCoder", "chosen_confidence"]

DEFAULT_K = 15
#: Names the retrieval method; part of the cache identity so a better retriever never reuses answers.
RETRIEVER = "lookup-rapidfuzz-v1"

RAG_PROMPT = (
    "Candidate {system} billing codes, each with its official description:\n"
    "{candidates}\n\n"
    "Which candidate is the most correct {system} billing code for this description: <{description}>?\n"
    "Only answer with a single code from the list above. Do not explain. "
    "ALWAYS respond in the following format:\n"
    "Code: <code>"
)


class RagCoder(WrappingCoder):
    def __init__(self, name: str, inner: Coder, k: int = DEFAULT_K,
                 codesets: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, inner, codesets)
        self.k = k

    def identity(self) -> dict[str, Any]:
        return {"coder": "rag", "k": self.k, "retriever": RETRIEVER, "prompt": RAG_PROMPT,
                "inner": self.inner.identity()}

    def prompt(self, question: Question) -> str:
        """The retrieve-then-rank prompt for a question (retrieval included)."""
        return self._retrieve(question)[0]

    def _retrieve(self, question: Question) -> tuple[str, list[Candidate]]:
        system = self.system(question)
        description = question.description
        candidates = index_for(system).search(description, self.k)
        return RAG_PROMPT.format(
            system=system.prompt_name, candidates=candidates_table(candidates), description=description
        ), candidates

    async def answer(self, question: Question) -> Reply:
        # fuzzy retrieval takes ~20 ms: off the loop
        text, candidates = await asyncio.to_thread(self._retrieve, question)
        messages = (("user", text), *question.messages[1:])
        reply = await self.inner.answer(replace(question, messages=messages))
        return replace(reply, confidence=chosen_confidence(reply, candidates))


def chosen_confidence(reply: Reply, candidates: list[Candidate]) -> float:
    """The chosen candidate's retrieval score (0-1), times the model's own confidence when it gives one: an
    answer that names no candidate is 0 (the model left the list the retriever found)."""
    chosen = [(m.start(), c) for c in candidates if (m := re.search(rf"(?<![\w.]){re.escape(c.code)}(?![\w.])",
                                                                   reply.text, re.IGNORECASE))]
    if not chosen:
        return 0.0
    score = match_confidence(min(chosen, key=lambda pair: pair[0])[1].score)
    own = reply.confidence
    return score * own if isinstance(own, int | float) and 0.0 <= own <= 1.0 else score
