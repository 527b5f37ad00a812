"""What a run's model calls cost: tokens and USD per model and per model × system, from the records.

One computation behind every cost figure (summary.json, report.md, report.html's headline and cost
section, the terminal): :func:`price_records` gives each case the cost of the call that answered it —
its usage at the run's price (:class:`~pytest_medcode.asking.pricing.PriceTable`), the batch price for a
call made through a batch API — whichever coder answered; :func:`tally` adds up the calls.

A call made in this run is spent; a cache hit is cost avoided — what its answer cost when it was first
asked. Cases that share one request (the same model, prompt, temperature and repeat) were one call,
counted once; a ``verify:`` case made one call more for each follow-up. A case that was never asked
(the budget, the circuit breaker) made no call. An unknown price makes the cost None ("unknown"), never 0;
a failed call is billed nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pytest_medcode.asking.budget import TOTAL
from pytest_medcode.asking.pricing import PriceTable

__all__ = ["BUDGET_WORD", "call_key", "cost_summary", "price_records", "tally"]

BUDGET_WORD = "budget"  # in the reason of a case the budget left unasked


def call_key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    """The fields that make a request distinct within one run (the prompt template and max_tokens are fixed
    per kind of case): what was asked — a variant's wording, the description, or a document's text."""
    asked = next((r.get(k) for k in ("perturbed", "description", "text") if r.get(k) is not None), None)
    return r.get("model"), r.get("system"), r.get("kind"), asked, r.get("temperature"), r.get("repeat")


def _tokens(r: Mapping[str, Any]) -> tuple[int, int] | None:
    prompt, completion = r.get("prompt_tokens"), r.get("completion_tokens")
    return None if prompt is None or completion is None else (int(prompt), int(completion))


def case_cost(r: Mapping[str, Any], prices: PriceTable) -> float | None:
    """What the call that answered this case cost: its usage at the model's price (a coder's own figure
    when no price is known), 0 for a call that failed or never went out, None when unknown."""
    price = prices.price(r["model"])
    tokens = _tokens(r)
    if tokens is None:
        answered = r.get("error") is None
        return None if answered or price is None else 0.0  # an answer without usage: unknown
    if price is None:
        own = r.get("cost_usd")  # a python: product may say what its call cost
        return float(own) if isinstance(own, (int, float)) and not isinstance(own, bool) else None
    return price.cost(*tokens, batch=bool(r.get("batch")))


def price_records(records: Sequence[dict[str, Any]], prices: PriceTable) -> None:
    """Each record's ``cost_usd``: :func:`case_cost` (a cache hit's is what its answer cost when first
    asked). Records of coders whose answers are no model calls (lookup) stay without one."""
    for r in records:
        if _is_call(r):
            r["cost_usd"] = case_cost(r, prices)


def _is_call(r: Mapping[str, Any]) -> bool:
    """A model call's record: a cached coder's (cache_hit set), or an uncached one that reported usage."""
    return r.get("cache_hit") is not None or _tokens(r) is not None


def _never_asked(r: Mapping[str, Any]) -> bool:
    """A case that made no call: the budget or the circuit breaker stopped it before it went out."""
    return not r.get("cache_hit") and not r.get("attempts")


def _calls(records: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """One record per call of the run (or per cache hit), in order; cases that share a request once."""
    seen: set[tuple[Any, ...]] = set()
    for r in records:
        if not _is_call(r) or _never_asked(r):
            continue
        if r.get("cache_hit") is not None:  # an uncached coder asked every case itself: no sharing
            key = call_key(r)
            if key in seen:
                continue
            seen.add(key)
        yield r


def _blank(model: str | None, system: str | None) -> dict[str, Any]:
    return {"model": model, "system": system, "calls": 0, "cache_hits": 0, "not_asked_budget": 0,
            "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "avoided_usd": 0.0,
            "cached_prompt_tokens": 0, "cached_completion_tokens": 0, "usage_missing": 0}


def _plus(total: float | None, cost: Any) -> float | None:
    return None if total is None or cost is None else total + cost


def _add(row: dict[str, Any], r: Mapping[str, Any]) -> None:
    tokens, cost = _tokens(r), r.get("cost_usd")
    if r.get("cache_hit"):
        row["cache_hits"] += 1
        if tokens is not None:
            row["cached_prompt_tokens"] += tokens[0]
            row["cached_completion_tokens"] += tokens[1]
        row["avoided_usd"] = _plus(row["avoided_usd"], cost)
        return
    row["calls"] += 1 + (r.get("verify_rounds") or 0)  # each verify: follow-up is a call of its own
    if tokens is None:
        row["usage_missing"] += r.get("error") is None  # an answer without usage: its cost cannot be known
    else:
        row["prompt_tokens"] += tokens[0]
        row["completion_tokens"] += tokens[1]
    row["cost_usd"] = _plus(row["cost_usd"], cost)


def tally(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Calls, tokens, spent and avoided over priced records (:func:`price_records`): the figures of one
    row of any table, the run's totals when given every record."""
    row = _blank(None, None)
    for r in _calls(records):
        _add(row, r)
    return row


def cost_summary(records: Sequence[dict[str, Any]], prices: PriceTable,
                 limits: Mapping[str, float] | None = None) -> dict[str, Any] | None:
    """``summary.json`` ``costs``: per model, per model × system, and the run's totals (None: no model
    call was made or read from the cache). Prices the records first (:func:`price_records`), so each case's
    ``cost_usd`` in cases.parquet is the figure these totals add up."""
    price_records(records, prices)
    per_model: dict[str, dict[str, Any]] = {}
    per_system: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        if not _is_call(r):
            continue
        model, system = r["model"], r["system"]
        per_model.setdefault(model, _blank(model, None))
        per_system.setdefault((model, system), _blank(model, system))
        if BUDGET_WORD in str(r.get("error")) and _never_asked(r):
            per_model[model]["not_asked_budget"] += 1
            per_system[(model, system)]["not_asked_budget"] += 1
    if not per_model:
        return None
    for call in _calls(records):
        _add(per_model[call["model"]], call)
        _add(per_system[(call["model"], call["system"])], call)
    for row in (*per_model.values(), *per_system.values()):
        price = prices.price(row["model"])
        row["price"] = price.to_dict() if price is not None else None
    models = list(per_model.values())
    return {
        "models": models,
        "systems": list(per_system.values()),
        "total_usd": _total(models, "cost_usd"),
        "avoided_usd": _total(models, "avoided_usd"),
        "unknown_prices": sorted(m["model"] for m in models if m["price"] is None),
        "budget": _budget(models, limits) if limits else None,
    }


def _budget(models: Sequence[Mapping[str, Any]], limits: Mapping[str, float]) -> dict[str, Any]:
    """Each limit (scope None: the run), what this run's calls spent under it and what is left."""
    spent = {m["model"]: m["cost_usd"] or 0.0 for m in models}
    out = []
    for scope, limit in limits.items():
        used = sum(spent.values()) if scope == TOTAL else spent.get(scope, 0.0)
        out.append({"scope": None if scope == TOTAL else scope, "limit_usd": limit, "spent_usd": used,
                    "left_usd": limit - used})
    return {"limits": out, "not_asked": sum(m["not_asked_budget"] for m in models)}


def _total(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows]
    return None if any(v is None for v in values) else sum(values)
