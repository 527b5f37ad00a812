"""What a run will cost before it runs (``--medcode-estimate``): calls to make, tokens, a cost range.

Nothing is asked. Prompt tokens are counted on the real prompts with litellm's counter (the model's own
tokenizer when it is cl100k_base, an approximation otherwise, and the output says which). Each answer is
expected to be as long as the model's answers already in the response cache, on average, or ``max_tokens``
long when there are none; the high end of the range is every answer at ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_medcode.api import Question
from pytest_medcode.asking.engine import Outcome
from pytest_medcode.asking.pricing import Price, PriceTable, TokenCounter, usd

__all__ = ["ModelEstimate", "estimate_lines", "estimate_models"]


@dataclass
class ModelEstimate:
    model: str
    cases: int
    requests: int  # distinct requests (cases that share a prompt are one call)
    cached: int  # requests the response cache already answers
    prompt_tokens: int  # of the requests to make
    expected_per_answer: float
    expected_from: str
    max_tokens: int
    price: Price | None
    tokenizer: str
    batch: bool = False  # asked through the provider's batch API (--medcode-batch): its batch price

    @property
    def to_ask(self) -> int:
        return self.requests - self.cached

    def cost(self, per_answer: float) -> float | None:
        """The same arithmetic a run's cost is made of (Price.cost), on the estimated tokens."""
        if self.price is None:
            return None
        return self.price.cost(self.prompt_tokens, self.to_ask * per_answer, self.batch)

    @property
    def low(self) -> float | None:
        return self.cost(self.expected_per_answer)

    @property
    def high(self) -> float | None:
        return self.cost(self.max_tokens)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "cases": self.cases, "requests": self.requests, "cached": self.cached,
                "to_ask": self.to_ask, "prompt_tokens": self.prompt_tokens,
                "expected_completion_tokens": self.expected_per_answer * self.to_ask,
                "max_completion_tokens": self.max_tokens * self.to_ask, "low_usd": self.low, "high_usd": self.high,
                "price": self.price.to_dict() if self.price else None, "tokenizer": self.tokenizer,
                "batch": self.batch}


def estimate_models(keyed: Mapping[str, tuple[str, Question]], cached: Mapping[str, Outcome],
                    cases: Mapping[str, int], prices: PriceTable, counter: TokenCounter,
                    max_tokens: int, batched: Collection[str] = ()) -> list[ModelEstimate]:
    """Per model: its distinct requests (``keyed``: cache key → model, question), which the cache answers
    (``cached``), and the tokens and cost of the rest (at the batch price for the models in ``batched``)."""
    out = []
    for model, n_cases in cases.items():
        keys = [k for k, (m, _) in keyed.items() if m == model]
        if not keys:
            continue
        answered = [cached[k] for k in keys if k in cached]
        counted = [o.usage.get("completion_tokens") for o in answered if o.text is not None]
        lengths = [n for n in counted if isinstance(n, int)]
        if lengths:
            per_answer = sum(lengths) / len(lengths)
            source = f"mean of {len(lengths):,} cached answers of {model}"
        else:
            per_answer, source = float(max_tokens), f"max_tokens: no cached answers of {model} to take a mean from"
        prompt = sum(counter.count(model, keyed[k][1].chat()) for k in keys if k not in cached)
        out.append(ModelEstimate(model, n_cases, len(keys), len(answered), prompt, per_answer, source,
                                 max_tokens, prices.price(model), counter.note(model), model in batched))
    return out


def estimate_lines(keyed: Mapping[str, tuple[str, Question]], cached: Mapping[str, Outcome],
                   cases: Mapping[str, int], prices: PriceTable, counter: TokenCounter,
                   max_tokens: int, batched: Collection[str] = ()) -> list[str]:
    """The estimate as the terminal shows it."""
    models = estimate_models(keyed, cached, cases, prices, counter, max_tokens, batched)
    lines = ["no model call was made for this estimate"]
    for m in models:
        lines.append(f"{m.model}: {m.cases:,} cases, {m.requests:,} distinct requests, {m.cached:,} answered in "
                     f"the cache, {m.to_ask:,} calls to make")
        if not m.to_ask:
            continue
        lines.append(f"  prompt tokens:     {m.prompt_tokens:,} ({m.tokenizer})")
        lines.append(f"  completion tokens: {round(m.expected_per_answer * m.to_ask):,} expected "
                     f"({m.expected_per_answer:.1f} per answer, {m.expected_from}), "
                     f"{m.max_tokens * m.to_ask:,} at most (max_tokens {m.max_tokens})")
        if m.price is None:
            lines.append(f"  cost:              unknown (no price for {m.model}; give one with --medcode-price "
                         f"{m.model}=IN/OUT, USD per million tokens)")
        else:
            batch = "; asked through its batch API, at the batch price" if m.batch else ""
            lines.append(f"  cost:              {usd(m.low)} expected, {usd(m.high)} at most ({m.price.source} "
                         f"prices: ${m.price.input_per_m:g} in / ${m.price.output_per_m:g} out per million tokens"
                         f"{batch})")
    priced = [m for m in models if m.to_ask]
    if len(priced) > 1:
        lows, highs = [m.low for m in priced], [m.high for m in priced]
        low = None if None in lows else sum(lows)  # type: ignore[arg-type]
        high = None if None in highs else sum(highs)  # type: ignore[arg-type]
        lines.append(f"total: {usd(low)} expected, {usd(high)} at most")
    return lines
