"""What a model's tokens cost: one price table per run, built in one place.

Prices come from the user (``--medcode-price MODEL=IN/OUT``, USD per million tokens), else from litellm's
offline cost map (``LITELLM_LOCAL_MODEL_COST_MAP=True``: the map shipped with the package, never the
network). A model in neither is *unknown*: its cost is None, never 0, so a total that includes it says
so instead of undercounting. A call made through a provider's batch API (``usage["batch"]``) is priced at
the map's batch prices, or at half price when the map has none (OpenAI's and Anthropic's batch discount).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

USER = "user"
LITELLM = "litellm"
BATCH_DISCOUNT = 0.5  # OpenAI's and Anthropic's batch APIs: half the price of the same tokens asked one by one
_WRAPPERS = ("rag:", "verify:")  # coders that ask the model they wrap: priced as that model


class PriceError(ValueError):
    """A ``--medcode-price`` value that is not MODEL=IN/OUT."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens, and where the numbers came from."""

    input_per_m: float
    output_per_m: float
    source: str
    batch_input_per_m: float | None = None
    batch_output_per_m: float | None = None

    def cost(self, prompt_tokens: float, completion_tokens: float, batch: bool = False) -> float:
        """USD for these tokens (an estimate's may be fractional); no rounding here."""
        inp, out = self.input_per_m, self.output_per_m
        if batch:
            inp = self.batch_input_per_m if self.batch_input_per_m is not None else inp * BATCH_DISCOUNT
            out = self.batch_output_per_m if self.batch_output_per_m is not None else out * BATCH_DISCOUNT
        return (prompt_tokens * inp + completion_tokens * out) / 1_000_000

    def to_dict(self) -> dict[str, Any]:
        return {"input_per_m": self.input_per_m, "output_per_m": self.output_per_m, "source": self.source}


def parse_price(value: str) -> tuple[str, Price]:
    """``MODEL=IN/OUT`` → (model, price); PriceError (one line) for anything else."""
    model, sep, rates = str(value).rpartition("=")
    model = model.strip()
    parts = rates.split("/")
    if not sep or not model or len(parts) != 2:
        raise PriceError(f"{value!r}: expected MODEL=IN/OUT in USD per million tokens, e.g. gpt-4=30/60")
    try:
        numbers = float(parts[0]), float(parts[1])
    except ValueError:
        raise PriceError(f"{value!r}: IN and OUT must be numbers (USD per million tokens), e.g. gpt-4=30/60") \
            from None
    if not all(n >= 0 and math.isfinite(n) for n in numbers):
        raise PriceError(f"{value!r}: prices must be finite and not negative")
    return model, Price(numbers[0], numbers[1], USER)


def parse_prices(values: Iterable[str]) -> dict[str, Price]:
    """Every ``--medcode-price`` value (repeatable; a later one for the same model wins).

    A price given for ``rag:X`` or ``verify:X`` is X's: the wrapper asks X, and the provider bills X's tokens
    at X's price whoever asked. A wrapper's price that differs from another one given for X is a PriceError:
    the same tokens cannot have two prices."""
    out: dict[str, Price] = {}
    given: dict[str, list[tuple[str, Price]]] = {}  # X → every (name given, price) for X's tokens
    for value in values:
        if not str(value).strip():
            continue
        model, price = parse_price(value)
        name = priced_name(model)
        given.setdefault(name, []).append((model, price))
        out[name] = price
    for name, prices in given.items():
        for model, price in prices:
            other = next(((m, p) for m, p in prices if p != price), None)
            if model != name and other is not None:
                raise PriceError(f"{model}={_rates(price)}: {model} asks {name}, whose tokens the provider bills "
                                 f"at one price, and {other[0]}={_rates(other[1])} is given too; give one price "
                                 f"for {name}")
    return out


def usd(value: float | None) -> str:
    """Dollars to the cent, and to a hundredth of a cent under $1 (a small run's cost is not "$0.00");
    None is an unknown price, never $0. Every cost a run shows, estimated or spent, is written this way."""
    if value is None:
        return "unknown"
    if 0 < abs(value) < 1:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def _rates(price: Price) -> str:
    return f"{price.input_per_m:g}/{price.output_per_m:g}"


def litellm_cost_map() -> Mapping[str, Any]:
    """litellm's shipped price map (imported on first use: it costs seconds)."""
    from pytest_medcode.asking.coders.litellm_coder import import_litellm

    return import_litellm().model_cost


def priced_name(model: str) -> str:
    """The model whose tokens a ``--model`` name pays for: ``rag:gpt-4`` and ``verify:gpt-4`` ask gpt-4."""
    while model.startswith(_WRAPPERS):
        model = model.partition(":")[2]
    return model


class PriceTable:
    """Prices per ``--model`` name: the user's first, then litellm's map, else unknown (None)."""

    def __init__(self, user: Mapping[str, Price] | None = None,
                 cost_map: Mapping[str, Any] | None = None) -> None:
        self.user = dict(user or {})
        self._map = cost_map
        self._known: dict[str, Price | None] = {}

    def _cost_map(self) -> Mapping[str, Any]:
        if self._map is None:
            self._map = litellm_cost_map()
        return self._map

    def price(self, model: str) -> Price | None:
        if model not in self._known:
            self._known[model] = self._look_up(model)
        return self._known[model]

    def _look_up(self, model: str) -> Price | None:
        if model in self.user:
            return self.user[model]
        name = priced_name(model)
        if name in self.user:
            return self.user[name]
        if name in ("lookup",) or name.startswith(("python:", "local:")):
            return None  # no API bill: not priced (a user price above still counts)
        cost_map = self._cost_map()
        for key in _map_keys(name):
            entry = cost_map.get(key)
            if not isinstance(entry, Mapping):
                continue
            inp, out = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
            if isinstance(inp, (int, float)) and isinstance(out, (int, float)):
                b_in, b_out = entry.get("input_cost_per_token_batches"), entry.get("output_cost_per_token_batches")
                return Price(inp * 1e6, out * 1e6, LITELLM,
                             b_in * 1e6 if isinstance(b_in, (int, float)) else None,
                             b_out * 1e6 if isinstance(b_out, (int, float)) else None)
        return None

    def cost(self, model: str, prompt_tokens: int | None, completion_tokens: int | None,
             batch: bool = False) -> float | None:
        """USD for one call's usage; None when the price or the usage is unknown."""
        price = self.price(model)
        if price is None or prompt_tokens is None or completion_tokens is None:
            return None
        return price.cost(prompt_tokens, completion_tokens, batch)


def _map_keys(name: str) -> list[str]:
    """``openai/gpt-4`` is ``gpt-4`` in litellm's map; ``gemini/gemini-pro`` is listed with its prefix."""
    keys = [name]
    _provider, sep, rest = name.partition("/")
    if sep and rest:
        keys.append(rest)
    return keys


def _tiktoken_name(model: str) -> str | None:
    """The model's own tiktoken encoding, when tiktoken knows the model (a name lookup: no download)."""
    try:
        import tiktoken

        return tiktoken.encoding_name_for_model(model)
    except (ImportError, KeyError):
        return None


class TokenCounter:
    """Prompt tokens as the API will count them, with litellm's counter (offline: its bundled cl100k_base).

    For a model whose own encoding is cl100k_base (gpt-4, gpt-3.5-turbo) the count is the API's; for any
    other model it is an approximation, and :meth:`note` says so."""

    def __init__(self) -> None:
        from pytest_medcode.asking.coders.litellm_coder import import_litellm

        self._litellm = import_litellm()
        self._litellm.disable_hf_tokenizer_download = True  # offline: never fetch a tokenizer
        self._exact: dict[str, bool] = {}

    def count(self, model: str, messages: Sequence[Mapping[str, str]]) -> int:
        return int(self._litellm.token_counter(model=_map_keys(priced_name(model))[-1], messages=list(messages)))

    def exact(self, model: str) -> bool:
        if model not in self._exact:
            self._exact[model] = _tiktoken_name(_map_keys(priced_name(model))[-1]) == "cl100k_base"
        return self._exact[model]

    def note(self, model: str) -> str:
        name = _map_keys(priced_name(model))[-1]
        if self.exact(model):
            return f"counted with {name}'s tokenizer (cl100k_base)"
        own = _tiktoken_name(name)
        why = f"{name} uses {own}, not bundled" if own else f"no tokenizer known for {name}"
        return f"approximated with cl100k_base ({why})"
