"""A model's confidence in its answer, from the log-probabilities of the answered code's tokens.

Asked for only when a run wants a confidence (``CoderOptions.confidence``): the request then carries
``logprobs: true``, so it is another request with another cache key, and a run that does not ask sends
exactly what it always sent. The confidence is the probability of the tokens that spell the code — the
first code-shaped word after ``Code:`` (else the first in the answer), a word with a digit in it — as the
product of their probabilities; an answer with no such word takes the probability of the whole answer.
A document's answer names several codes: each code-shaped word gets the probability of its own tokens, the same
way (:func:`code_probabilities`), and scoring reads which of them are codes (scoring/code_sets.py).

Reads the chat completion's ``choices[0].logprobs.content`` (a list of ``{token, logprob}``) from any client's
object or a plain dict (a batch output line).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["REQUEST", "code_probabilities", "code_probability", "confidence_of", "confidences_of", "token_logprobs"]

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


def code_probabilities(tokens: Sequence[tuple[str, float]]) -> dict[str, float]:
    """``{word: probability}`` of every code-shaped word of the answer (a word with a digit), each the product of
    the probabilities of the tokens that overlap it — :func:`code_probability`'s reading of one code, for each; a
    word written twice keeps its first writing's."""
    text = "".join(token for token, _ in tokens)
    words = [w for w in _CODE.finditer(text) if any(ch.isdigit() for ch in w.group())]
    out: dict[str, float] = {}
    if not words:
        return out
    sums = [0.0] * len(words)
    at, first = 0, 0
    for token, logprob in tokens:
        end = at + len(token)
        while first < len(words) and words[first].end() <= at:  # words wholly before this token are done
            first += 1
        i = first
        while i < len(words) and words[i].start() < end:
            if words[i].end() > at:
                sums[i] += logprob
            i += 1
        at = end
    for word, total in zip(words, sums, strict=True):
        probability = math.exp(min(0.0, total))
        if math.isfinite(probability):
            out.setdefault(word.group(), probability)
    return out


def confidences_of(choice: Any) -> tuple[float | None, dict[str, float] | None]:
    """A choice's confidence in its code and in each code-shaped word it wrote (a document's codes), from one
    reading of its log-probabilities; (None, None) when it carries none."""
    tokens = token_logprobs(choice)
    if tokens is None:
        return None, None
    return code_probability(tokens), code_probabilities(tokens)
