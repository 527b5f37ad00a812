"""``verify:<model>``: a code that does not exist is sent back, and the model asked again.

The cheapest tool a coding product can have is the code table itself. The model answers as in the
study; the answer is parsed (the same parser the scores use); when it names no code, a code that
is not in the system (:meth:`CodeSystem.lookup`), or a category that is not billable, a follow-up
user turn says exactly that and asks again — up to ``--medcode-verify-rounds`` times (default 2).
The last answer is the one scored. ``Reply.usage["verify_rounds"]`` (the record's
``verify_rounds``) is the number of follow-ups used: 0 when the first answer already named an
existing billable code. Tokens and cost add up over all rounds.

Its confidence says whether verification changed the answer: 1 when the first answer stood, 1/(1 + follow-ups)
when it was sent back, times the model's own confidence in its last answer when it gives one.

It checks existence, not correctness: a real but wrong code ends the loop. Whether that buys
anything over the plain model is what the table shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pytest_medcode.asking.coders.base import Coder, Question, Reply, WrappingCoder
from pytest_medcode.codesystems import CodeSystem
from pytest_medcode.scoring.parsing import extract

__all__ = ["DEFAULT_ROUNDS", "VerifyCoder", "feedback", "verified_confidence"]

DEFAULT_ROUNDS = 2
_FORMAT = "Only generate a single, VALID {system} billing code. Do not explain. " \
          "ALWAYS respond in the following format:\nCode: {example}"


def feedback(system: CodeSystem, text: str) -> str | None:
    """The follow-up for an answer, or None when it names an existing billable code."""
    predicted = extract(system.name, text).predicted
    again = _FORMAT.format(system=system.prompt_name, example=system.example)
    if predicted is None:
        return f"Your answer contains no {system.prompt_name} code. {again}"
    entry = system.lookup(predicted)
    if entry is None:
        return (f"{predicted} is not a valid {system.prompt_name} code: it does not exist in "
                f"{system.title} {system.version}. {again}")
    if not entry.billable:
        return (f"{entry.code} is a {system.prompt_name} category, not a billable code. "
                f"Give the complete billable code. {again}")
    return None


def _add_usage(total: dict[str, Any], usage: dict[str, Any]) -> None:
    """Each round's usage added to the total; a round without it makes the total unknown (None), never a
    sum that leaves a billed round out."""
    for key in ("prompt_tokens", "completion_tokens", "cost_usd"):
        value = usage.get(key)
        if value is None or (key in total and total[key] is None):
            total[key] = None
        else:
            total[key] = total.get(key, 0) + value


class VerifyCoder(WrappingCoder):
    def __init__(
        self, name: str, inner: Coder, rounds: int = DEFAULT_ROUNDS, codesets: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(name, inner, codesets)
        self.rounds = rounds

    def identity(self) -> dict[str, Any]:
        return {"coder": "verify", "rounds": self.rounds, "inner": self.inner.identity()}

    async def answer(self, question: Question) -> Reply:
        system = self.system(question)
        messages = question.messages
        usage: dict[str, Any] = {}
        for used in range(self.rounds + 1):
            reply = await self.inner.answer(replace(question, messages=messages))
            _add_usage(usage, reply.usage)
            follow_up = feedback(system, reply.text) if used < self.rounds else None
            if follow_up is None:
                break
            messages = (*messages, ("assistant", reply.text), ("user", follow_up))
        usage["verify_rounds"] = used
        return Reply(text=reply.text, usage=usage, confidence=verified_confidence(used, reply.confidence),
                     abstained=reply.abstained, code_confidences=reply.code_confidences)


def verified_confidence(rounds: int, own: float | None) -> float:
    """1 when the first answer already named an existing billable code, 1/(1 + follow-ups) when verification
    had to change it; times the model's own confidence in its last answer when it gives one."""
    base = 1.0 / (1 + rounds)
    return base * own if isinstance(own, int | float) and 0.0 <= own <= 1.0 else base
