"""What the scripted model answers, and how it can be made wrong on purpose.

The request a responder sees (``Request``, ``request_key``), the responders tests script answers
with, and the deterministic corruption (``degrade``, ``wrong_code``) that makes "a model wrong on 10%
of cases" the same 10% on every run. ``_unit`` is the one source of seeded randomness for the server.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KEY_IGNORED_FIELDS",
    "ConfidenceFn",
    "Request",
    "Responder",
    "corrupt_answer",
    "degrade",
    "echo_responder",
    "extract_description",
    "is_corrupted",
    "mapping_responder",
    "request_key",
    "scripted_confidence",
    "token_logprobs",
    "wrong_code",
]

#: Body fields that don't change what is being asked, so they don't change the request key.
KEY_IGNORED_FIELDS: frozenset[str] = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "n",
        "service_tier",
        "timeout",
        "request_timeout",
        "safety_identifier",
        "prompt_cache_key",
    }
)


def _unit(*parts: object) -> float:
    """Map ``parts`` to a uniform float in [0, 1); the one source of seeded randomness here."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def request_key(body: Mapping[str, Any]) -> str:
    """Stable hash of a chat-completions body, ignoring fields that don't change the question.

    Tests use it to know in advance which key a prompt will get (e.g. for ``always_fail_keys``).
    """
    relevant = {k: v for k, v in body.items() if k not in KEY_IGNORED_FIELDS}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _content_text(content: Any) -> str:
    """Text of a message ``content``, which may be a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and "text" in part
        )
    return "" if content is None else str(content)


@dataclass(frozen=True)
class Request:
    """What a responder / latency function / fault plan sees of one chat-completions call."""

    model: str
    messages: tuple[Mapping[str, Any], ...] = field(hash=False)
    temperature: float | None
    max_tokens: int | None
    body: Mapping[str, Any] = field(hash=False, repr=False)
    key: str
    #: 0 for the first time this server saw ``key`` (since the last ``reset_stats``), 1 for the next...
    attempt: int = 0

    @classmethod
    def from_body(cls, body: Mapping[str, Any], attempt: int = 0) -> Request:
        """Build from a parsed JSON body; handy for unit-testing responders without a server."""
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        temperature = body.get("temperature")
        return cls(
            model=str(body.get("model", "")),
            messages=tuple(m for m in body.get("messages") or () if isinstance(m, Mapping)),
            temperature=float(temperature) if isinstance(temperature, (int, float)) else None,
            max_tokens=int(max_tokens) if isinstance(max_tokens, (int, float)) else None,
            body=body,
            key=request_key(body),
            attempt=attempt,
        )

    @property
    def last_user_message(self) -> str:
        """Text of the last ``user`` message (the prompt that carries the description)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _content_text(message.get("content"))
        return ""

    @property
    def description(self) -> str | None:
        """The description between ``<`` and ``>`` in the last user message, if any."""
        return extract_description(self.last_user_message)


Responder = Callable[[Request], "str | None"]  # None: ``"content": null`` (no answer text at all)


_BRACKETED = re.compile(r"<([^<>]*)>")


def _description_candidates(text: str) -> list[str]:
    """Possible descriptions, best first: the widest ``<...>`` span, then each innermost one from the end."""
    found: list[str] = []
    start, end = text.find("<"), text.rfind(">")
    if 0 <= start < end:
        found.append(text[start + 1 : end].strip())
    for match in reversed(_BRACKETED.findall(text)):
        if match.strip() not in found:
            found.append(match.strip())
    return found


def extract_description(text: str) -> str | None:
    """Find the description the prompt wraps in angle brackets (``...: <{DESCRIPTION}>.``)."""
    candidates = _description_candidates(text)
    return candidates[0] if candidates else None


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def echo_responder(text: str | None = None) -> Responder:
    """Always answer ``text``; with no ``text``, echo the last user message (useful when debugging)."""

    def respond(request: Request) -> str:
        return request.last_user_message if text is None else text

    return respond


def mapping_responder(
    mapping: Mapping[str, str],
    default: str = "Code: 000.0",
    *,
    wrong_fraction: float = 0.0,
    seed: int = 0,
) -> Responder:
    """A model that knows ``mapping`` (description -> code) and answers ``Code: {code}``.

    Lookup is exact first, then whitespace/case-insensitive, so prompt formatting doesn't matter.
    ``wrong_fraction`` > 0 wraps the result in :func:`degrade` with ``seed``.
    """
    exact = dict(mapping)
    loose = {_normalise(desc): code for desc, code in exact.items()}

    def respond(request: Request) -> str:
        for candidate in _description_candidates(request.last_user_message):
            code = exact.get(candidate)
            if code is None:
                code = loose.get(_normalise(candidate))
            if code is not None:
                return f"Code: {code}"
        return default

    return degrade(respond, wrong_fraction, seed) if wrong_fraction > 0 else respond


def is_corrupted(description: str, fraction: float, seed: int = 0) -> bool:
    """Whether ``degrade(..., fraction, seed)`` answers ``description`` wrongly (pure, for expectations)."""
    return _unit("degrade", seed, description) < fraction


def wrong_code(code: str, seed: int = 0) -> str:
    """A code guaranteed to differ from ``code``.

    Keeps the shape (``E11.9`` -> ``E11.4``, ``99213`` -> ``99217``) so a wrong answer still parses
    as a code of the same system: the last digit is shifted, a letter only when there is no digit.
    """
    shift = _unit("wrong", seed, code)
    digits = [i for i, ch in enumerate(code) if ch.isdigit()]
    if digits:
        i = digits[-1]
        return code[:i] + str((int(code[i]) + 1 + int(shift * 9)) % 10) + code[i + 1 :]
    letters = [i for i, ch in enumerate(code) if ch.isascii() and ch.isalpha()]
    if letters:
        i = letters[-1]
        base = ord("A") if code[i].isupper() else ord("a")
        return code[:i] + chr(base + (ord(code[i]) - base + 1 + int(shift * 25)) % 26) + code[i + 1 :]
    return code + "9"


_CODE_IN_ANSWER = re.compile(r"(Code:\s*)(\S+?)(\s*[.,;]?\s*)$", re.IGNORECASE | re.DOTALL)


def corrupt_answer(answer: str, seed: int = 0) -> str:
    """Replace the code in a ``Code: X`` answer (or the whole answer) with :func:`wrong_code`."""
    match = _CODE_IN_ANSWER.search(answer)
    if match is None:
        return wrong_code(answer, seed)
    return answer[: match.start(2)] + wrong_code(match.group(2), seed) + answer[match.end(2) :]


def degrade(
    responder: Responder,
    fraction: float,
    seed: int = 0,
    *,
    wrong: Callable[[str], str] | None = None,
) -> Responder:
    """Make ``responder`` wrong on a deterministic ``fraction`` of descriptions.

    The subset is chosen by hashing the description (the request key when there is none) with
    ``seed``, so "a model wrong on 10% of cases" is the same 10% on every run and every retry.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    corrupt = wrong or (lambda answer: corrupt_answer(answer, seed))

    def respond(request: Request) -> str | None:
        answer = responder(request)
        if answer is None:  # no answer text: nothing to make wrong
            return None
        subject = request.description or request.key
        return corrupt(answer) if is_corrupted(subject, fraction, seed) else answer

    return respond


# -- log-probabilities: how sure the scripted model is ------------------------------------------------

#: The probability a request's answer gets (0-1), for ``ScriptedServer(confidence=...)``: one number for its code,
#: or one per code-shaped word in order (a document's answer names several codes; see :func:`token_logprobs`).
ConfidenceFn = Callable[[Request, str], float | Sequence[float]]

_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
_CODE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*\d[A-Za-z0-9.\-]*|\d[A-Za-z0-9.\-]*")


def token_logprobs(text: str, probability: float | Sequence[float]) -> list[dict[str, Any]]:
    """The answer as tokens (words, runs of spaces, single punctuation) with log-probabilities: the tokens of
    its first code-shaped word (one with a digit) share ``log(probability)``, every other token is certain
    (logprob 0); an answer without such a word spreads it over all its tokens. A sequence of probabilities gives
    the i-th code-shaped word the i-th (a document's codes, each its own); words past its end are certain."""
    import math

    tokens = _TOKEN.findall(text)
    spans, at = [], 0
    for token in tokens:
        spans.append((at, at + len(token)))
        at += len(token)
    if isinstance(probability, int | float):
        code = _CODE_WORD.search(text)
        words = [(code.start(), code.end(), float(probability))] if code else [(0, len(text), float(probability))]
    else:
        words = [(m.start(), m.end(), float(p)) for m, p in zip(_CODE_WORD.finditer(text), probability, strict=False)]
    logprob = [0.0] * len(tokens)
    for start, end, p in words:
        inside = [i for i, (a, b) in enumerate(spans) if b > start and a < end]
        for i in inside:
            logprob[i] += math.log(max(p, 1e-12)) / max(1, len(inside))
    return [{"token": token, "logprob": lp, "bytes": list(token.encode("utf-8")), "top_logprobs": []}
            for token, lp in zip(tokens, logprob, strict=True)]


def scripted_confidence(fraction: float, seed: int = 0, *, right: tuple[float, float] = (0.7, 1.0),
                        wrong: tuple[float, float] = (0.2, 0.85)) -> ConfidenceFn:
    """A confidence correlated with correctness, for a responder made wrong by ``degrade(.., fraction, seed)``:
    an answer :func:`degrade` corrupts gets a probability drawn (seeded by its description) from ``wrong``,
    any other from ``right``; the ranges overlap, so no threshold separates them perfectly."""

    def confidence(request: Request, text: str) -> float:
        subject = request.description or request.key
        low, high = wrong if is_corrupted(subject, fraction, seed) else right
        return low + (high - low) * _unit("confidence", seed, subject)

    return confidence
