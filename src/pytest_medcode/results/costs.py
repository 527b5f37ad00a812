"""What a run's model calls cost: tokens and USD per model and per model × system, from the records.

Each record carries the usage of the call that answered it (``prompt_tokens``, ``completion_tokens``;
a cache hit carries the usage of the call that first answered it). A call made in this run is spent; a
cache hit is cost avoided — what its answer cost when it was first asked. Cases that share one request
(the same model, wording, temperature and repeat) are one call, counted once. An unknown price makes
the cost None ("unknown"), never 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_medcode.asking.budget import TOTAL
from pytest_medcode.asking.pricing import PriceTable

__all__ = ["BUDGET_WORD", "cost_summary"]

BUDGET_WORD = "budget"  # in the reason of a case the budget left unasked


def _request(r: Mapping[str, Any]) -> tuple[Any, ...]:
    """The fields that make a request distinct within one run (the prompt template and max_tokens are fixed)."""
    asked = r.get("perturbed") if r.get("perturbed") is not None else r.get("description")
    return r.get("model"), r.get("system"), asked, r.get("temperature"), r.get("repeat")


def _blank(model: str, system: str | None) -> dict[str, Any]:
    return {"model": model, "system": system, "calls": 0, "cache_hits": 0, "not_asked_budget": 0,
            "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "avoided_usd": 0.0,
            "cached_prompt_tokens": 0, "cached_completion_tokens": 0, "usage_missing": 0}


def _add(row: dict[str, Any], r: Mapping[str, Any], cost: float | None, fresh: bool) -> None:
    tokens = (r.get("prompt_tokens"), r.get("completion_tokens"))
    if fresh:
        row["calls"] += 1
        if tokens[0] is None or tokens[1] is None:
            if r.get("error") is None:  # an answer without usage: its cost cannot be known
                row["usage_missing"] += 1
                row["cost_usd"] = None
            return
        row["prompt_tokens"] += tokens[0]
        row["completion_tokens"] += tokens[1]
        row["cost_usd"] = None if cost is None or row["cost_usd"] is None else row["cost_usd"] + cost
    else:
        row["cache_hits"] += 1
        if tokens[0] is None or tokens[1] is None:
            return
        row["cached_prompt_tokens"] += tokens[0]
        row["cached_completion_tokens"] += tokens[1]
        row["avoided_usd"] = None if cost is None or row["avoided_usd"] is None else row["avoided_usd"] + cost


def cost_summary(records: Sequence[Mapping[str, Any]], prices: PriceTable,
                 limits: Mapping[str, float] | None = None) -> dict[str, Any] | None:
    """``summary.json`` ``costs``: per model, per model × system, and the run's totals (None: no model
    call was made or read from the cache)."""
    per_model: dict[str, dict[str, Any]] = {}
    per_system: dict[tuple[str, str], dict[str, Any]] = {}
    seen: set[tuple[Any, ...]] = set()
    for r in records:
        if r.get("cache_hit") is None:  # a coder whose answers are not model calls (lookup)
            continue
        model, system = r["model"], r["system"]
        rows = (per_model.setdefault(model, _blank(model, None)),
                per_system.setdefault((model, system), _blank(model, system)))
        if BUDGET_WORD in str(r.get("error") or "") and not r.get("attempts"):
            for row in rows:
                row["not_asked_budget"] += 1
            continue
        if not r["cache_hit"] and not r.get("attempts"):  # never asked (circuit breaker): no call
            continue
        key = _request(r)
        if key in seen:  # a second case of the same request: one call, already counted
            continue
        seen.add(key)
        cost = prices.cost(model, r.get("prompt_tokens"), r.get("completion_tokens"), bool(r.get("batch")))
        for row in rows:
            _add(row, r, cost, fresh=not r["cache_hit"])
    if not per_model:
        return None
    for row in (*per_model.values(), *per_system.values()):
        price = prices.price(row["model"])
        row["price"] = price.to_dict() if price is not None else None
        if price is None:  # no price: unknown, never 0
            row["cost_usd"] = None if row["calls"] else row["cost_usd"]
            row["avoided_usd"] = None if row["cache_hits"] else row["avoided_usd"]
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
