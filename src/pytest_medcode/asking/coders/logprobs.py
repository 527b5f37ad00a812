"""A model's confidence in its answer, from the log-probabilities of the answered code's tokens.

Asked for only when a run wants a confidence (``CoderOptions.confidence``): the request then carries
``logprobs: true``, so it is another request with another cache key, and a run that does not ask sends
exactly what it always sent. The confidence is the probability of the tokens that spell the code — the
first code-shaped word after ``Code:`` (else the first in the answer), a word with a digit in it — as the
product of their probabilities; an answer with no such word takes the probability of the whole answer.

Reads the chat completion's ``choices[0].logprobs.content`` (a list of ``{token, logprob}``) from any client's
object or a plain dict (a batch output line).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["REQUEST", "code_probability", "confidence_of", "token_logprobs"]

#: What a request adds to ask for log-probabilities.
REQUEST: dict[str, Any] = {"logprobs": True}

#: A code-shaped word: letters, digits, dots and dashes with at least one digit (E11.9, 250.00, 0DT70ZZ, 99213).
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*")
_LABEL = re.compile(r"code\s*:\s*", re.IGNORECASE)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def token_logprobs(choice: Any) -> list[tuple[str, float]] | None:
    """``[(token, logprob), ...]`` of a completion's choice; None when it carries none (or a malformed list)."""
    content = _get(_get(choice, "logprobs"), "content")
    if not isinstance(content, Sequence) or isinstance(content, str | bytes) or not content:
        return None
    out = []
    for entry in content:
        token, logprob = _get(entry, "token"), _get(entry, "logprob")
        if not isinstance(token, str) or not isinstance(logprob, int | float) or isinstance(logprob, bool):
            return None
        out.append((token, float(logprob)))
    return out


def _code_span(text: str) -> tuple[int, int] | None:
    label = _LABEL.search(text)
    for start in (label.end() if label else 0, 0):
        for word in _CODE.finditer(text, start):
            if any(ch.isdigit() for ch in word.group()):
                return word.start(), word.end()
    return None


def code_probability(tokens: Sequence[tuple[str, float]]) -> float | None:
    """The probability of the tokens that overlap the answer's code (of every token when it names none)."""
    if not tokens:
        return None
    text = "".join(token for token, _ in tokens)
    span = _code_span(text)
    total, at = 0.0, 0
    for token, logprob in tokens:
        end = at + len(token)
        if span is None or (end > span[0] and at < span[1]):
            total += logprob
        at = end
    probability = math.exp(min(0.0, total))
    return probability if math.isfinite(probability) else None


def confidence_of(choice: Any) -> float | None:
    """A choice's confidence in its code, or None when the endpoint sent no log-probabilities."""
    tokens = token_logprobs(choice)
    return None if tokens is None else code_probability(tokens)
