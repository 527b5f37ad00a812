"""Money, in process: the price table, each case's cost, how calls add up, and the budget's arithmetic.

The fast half of the cost tests (test_costs.py runs real sessions against the scripted server and checks
the figures against its bill). The records here are shaped as results/records.py builds them; the prices
are litellm's shipped map (offline) or the user's.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import litellm
import pytest

from pytest_medcode.api import Question
from pytest_medcode.asking.budget import TOTAL, Budget, parse_limits
from pytest_medcode.asking.pricing import (
    LITELLM,
    USER,
    Price,
    PriceError,
    PriceTable,
    TokenCounter,
    litellm_cost_map,
    parse_price,
    parse_prices,
    priced_name,
    usd,
)
from pytest_medcode.results.costs import call_key, case_cost, cost_summary, price_records, tally

MINI = litellm.model_cost["gpt-4o-mini"]
MINI_IN, MINI_OUT = MINI["input_cost_per_token"], MINI["output_cost_per_token"]


def record(**fields: Any) -> dict[str, Any]:
    """A code query's record after one streamed call that answered with 100 prompt and 10 completion tokens."""
    base = {"model": "openai/gpt-4o-mini", "system": "icd10cm", "description": "Type 2 diabetes", "perturbed": None,
            "temperature": None, "repeat": None, "cache_hit": False, "attempts": 1, "error": None,
            "prompt_tokens": 100, "completion_tokens": 10, "cost_usd": None, "batch": None, "verify_rounds": None}
    return {**base, **fields}


def document(text: str, **fields: Any) -> dict[str, Any]:
    """A document case's record: no description, the text is what was asked."""
    out = record(**{"kind": "document", "document": text[:8], "text": text, **fields})
    del out["description"], out["perturbed"]
    return out


ONE = 100 * MINI_IN + 10 * MINI_OUT  # one call of record() at litellm's gpt-4o-mini price


def summary(records: list[dict[str, Any]], prices: PriceTable | None = None, **kw: Any) -> dict[str, Any]:
    costs = cost_summary(records, prices or PriceTable(), **kw)
    assert costs is not None
    return costs


def model_row(costs: dict[str, Any], model: str = "openai/gpt-4o-mini") -> dict[str, Any]:
    return next(m for m in costs["models"] if m["model"] == model)


# -- pricing ---------------------------------------------------------------------------------------


def test_a_price_is_the_users_then_litellms_map_and_a_wrapper_pays_for_the_model_it_wraps() -> None:
    table = PriceTable({"openai/x": Price(1.0, 2.0, USER), "gpt-4o-mini": Price(3.0, 4.0, USER)})
    assert table.price("openai/x") == Price(1.0, 2.0, USER)
    for wrapped in ("rag:openai/x", "verify:openai/x", "verify:rag:openai/x"):
        assert table.price(wrapped) == Price(1.0, 2.0, USER)
    assert table.price("rag:gpt-4o-mini") == Price(3.0, 4.0, USER)
    mine = PriceTable().price("rag:openai/gpt-4o-mini")
    assert mine is not None and mine.source == LITELLM
    assert math.isclose(mine.input_per_m, MINI_IN * 1e6) and math.isclose(mine.output_per_m, MINI_OUT * 1e6)
    assert mine.batch_input_per_m == MINI["input_cost_per_token_batches"] * 1e6
    assert mine.batch_output_per_m == MINI["output_cost_per_token_batches"] * 1e6
    assert PriceTable().price("anyscale/google/gemma-7b-it") is not None  # listed with its provider prefix
    for free in ("lookup", "python:mod.fn", "local:smollm2", "rag:lookup", "openai/no-such-model"):
        assert PriceTable().price(free) is None, free
    assert PriceTable({"python:mod.fn": Price(1, 1, USER)}).price("python:mod.fn") == Price(1, 1, USER)
    assert priced_name("verify:rag:gpt-4") == "gpt-4" and priced_name("gpt-4") == "gpt-4"
    assert priced_name("rag:python:mod.fn") == "python:mod.fn" and priced_name("verify:local:x") == "local:x"


def test_a_coder_with_no_api_bill_is_not_priced_even_where_the_map_has_its_name() -> None:
    entry = {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}
    table = PriceTable(cost_map={"lookup": entry, "python:mod.fn": entry, "local:smollm2": entry, "lookup2": entry})
    assert [table.price(m) for m in ("lookup", "python:mod.fn", "rag:local:smollm2")] == [None, None, None]
    assert table.price("lookup2") == Price(1.0, 1.0, LITELLM)


def test_a_map_entry_without_usable_prices_is_no_price() -> None:
    cost_map = {"a": "not a mapping", "b": {"input_cost_per_token": "1", "output_cost_per_token": 1e-6},
                "c": {"input_cost_per_token": 1e-6}, "d": {"input_cost_per_token": 2e-6, "output_cost_per_token": 0,
                                                            "input_cost_per_token_batches": "x"}}
    cost_map |= {"x/y": cost_map["d"], "": cost_map["d"]}
    table = PriceTable(cost_map=cost_map)
    assert table.price("p/x/y") == Price(2.0, 0.0, LITELLM)  # the provider is the first part of the name
    assert table.price("p/") is None  # no model after the provider
    assert table.price("a") is None and table.price("b") is None and table.price("c") is None
    assert table.price("d") == Price(2.0, 0.0, LITELLM, None, None)
    assert table.price("p/d") == Price(2.0, 0.0, LITELLM, None, None)  # found by the name after the provider
    assert table.cost("d", 1_000_000, 5) == 2.0 and table.cost("d", None, 5) is None and table.cost("a", 1, 1) is None


def test_a_price_costs_its_tokens_and_a_batch_call_the_batch_price_or_half() -> None:
    price = Price(2.0, 8.0, USER)
    assert price.cost(1_000_000, 0) == 2.0 and price.cost(0, 1_000_000) == 8.0
    assert price.cost(500_000, 250_000) == 3.0
    assert price.cost(1_000_000, 1_000_000, batch=True) == 5.0  # no batch price: half
    listed = Price(2.0, 8.0, LITELLM, batch_input_per_m=0.5, batch_output_per_m=1.0)
    assert listed.cost(1_000_000, 1_000_000, batch=True) == 1.5
    assert listed.cost(1_000_000, 1_000_000) == 10.0
    assert listed.to_dict() == {"input_per_m": 2.0, "output_per_m": 8.0, "source": LITELLM}


@pytest.mark.parametrize(("value", "message"), [
    ("gpt-4", "expected MODEL=IN/OUT"), ("=1/2", "expected MODEL=IN/OUT"), ("gpt-4=12", "expected MODEL=IN/OUT"),
    ("gpt-4=a/2", "must be numbers"), ("gpt-4=1/-2", "finite and not negative"), ("gpt-4=inf/1", "finite"),
    ("gpt-4=1/nan", "finite"), ("gpt-4=1/2/3", "expected MODEL=IN/OUT"),
])
def test_a_bad_price_is_one_line(value: str, message: str) -> None:
    with pytest.raises(PriceError, match=message) as info:
        parse_price(value)
    assert "\n" not in str(info.value) and repr(value) in str(info.value)


def test_prices_given_for_a_wrapper_are_the_wrapped_models_and_two_prices_for_one_model_are_refused() -> None:
    assert parse_price(" my/model = 0.5/1.5") == ("my/model", Price(0.5, 1.5, USER))
    assert parse_price("a=b=0/0") == ("a=b", Price(0.0, 0.0, USER))
    assert parse_prices(["gpt-4=1/2", "", "  ", "gpt-4=3/4"]) == {"gpt-4": Price(3.0, 4.0, USER)}  # the later wins
    assert parse_prices(["rag:openai/x=1/2"]) == {"openai/x": Price(1.0, 2.0, USER)}
    assert parse_prices(["verify:rag:openai/x=1/2", "openai/x=1/2"]) == {"openai/x": Price(1.0, 2.0, USER)}
    with pytest.raises(PriceError) as info:
        parse_prices(["openai/x=3/4", "rag:openai/x=1/2"])
    assert str(info.value) == ("rag:openai/x=1/2: rag:openai/x asks openai/x, whose tokens the provider bills at one "
                               "price, and openai/x=3/4 is given too; give one price for openai/x")
    with pytest.raises(PriceError, match=r"^verify:openai/x=1/2: verify:openai/x asks openai/x.*rag:openai/x=5/6"):
        parse_prices(["verify:openai/x=1/2", "rag:openai/x=5/6"])


def test_dollars_are_shown_to_the_cent_and_under_a_dollar_to_a_hundredth_of_a_cent() -> None:
    assert usd(None) == "unknown"
    assert usd(0) == "$0.00" and usd(0.0) == "$0.00"
    assert usd(0.00384) == "$0.0038" and usd(0.999) == "$0.9990" and usd(-0.5) == "$-0.5000"
    assert usd(1) == "$1.00" and usd(1234.5) == "$1,234.50"


# -- what each case cost ----------------------------------------------------------------------------


def test_each_case_carries_the_cost_of_its_call_whichever_coder_answered() -> None:
    prices = PriceTable({"openai/x": Price(1.0, 2.0, USER)})
    records = [
        record(),
        record(model="openai/x"),
        record(model="rag:openai/x", cost_usd=9.0),  # a coder's own figure does not win over the price
        record(model="openai/x", batch=True),
        record(model="openai/x", cache_hit=True),
        record(model="openai/x", error="500", prompt_tokens=None, completion_tokens=None, attempts=3),
        record(model="openai/x", prompt_tokens=None, completion_tokens=None),  # answered without usage
        record(model="openai/unpriced"),
        record(model="openai/unpriced", error="500", prompt_tokens=None, completion_tokens=None),
        record(model="python:mod.fn", cache_hit=None, cost_usd=0.25),  # a product that says what it cost
        record(model="python:mod.fn", cache_hit=None, cost_usd=True),
        record(model="lookup", cache_hit=None, prompt_tokens=None, completion_tokens=None, cost_usd=0.5),
    ]
    price_records(records, prices)
    costs = [r["cost_usd"] for r in records]
    x = (100 * 1.0 + 10 * 2.0) / 1e6
    assert costs == [pytest.approx(ONE, rel=1e-12), x, x, x / 2, x, 0.0, None, None, None, 0.25, None, 0.5]
    assert case_cost(record(model="openai/x", prompt_tokens=0, completion_tokens=0), prices) == 0.0


def test_a_request_is_its_model_system_wording_temperature_and_repeat() -> None:
    a = record()
    same = [a, {**a, "code": "E11.8", "case_id": "other"}]
    assert call_key(same[0]) == call_key(same[1])
    for change in ({"model": "m"}, {"system": "icd9cm"}, {"description": "x"}, {"perturbed": "Typ 2 diabetes"},
                   {"temperature": 0.6}, {"repeat": 1}, {"kind": "document"}):
        assert call_key({**a, **change}) != call_key(a), change
    assert call_key({**a, "perturbed": "x"}) == call_key({**a, "description": "y", "perturbed": "x"})
    assert call_key(document("note one")) != call_key(document("note two"))
    assert call_key({"model": "m"}) == ("m", None, None, None, None, None)  # nothing asked is recorded
    assert call_key(document("note one")) == call_key({**document("note one"), "document": "other id"})


# -- how calls add up -------------------------------------------------------------------------------


def test_cases_that_share_a_request_are_one_call_and_every_other_case_is_a_call_of_its_own() -> None:
    records = [
        record(), record(code="E11.8"),  # the same description: one request, asked once
        record(repeat=0), record(repeat=1), record(repeat=2),  # --medcode-repeats 3: three calls
        record(temperature=0.2), record(temperature=1.0),
        record(perturbed="Typ 2 diabetes", variant="typo"),
        document("Patient with type 2 diabetes."), document("Essential hypertension, on treatment."),
        document("Essential hypertension, on treatment.", document="dup"),  # the same text: asked once
    ]
    costs = summary(records)
    row = model_row(costs)
    assert row["calls"] == 9 and row["prompt_tokens"] == 900 and row["completion_tokens"] == 90
    assert math.isclose(row["cost_usd"], 9 * ONE, rel_tol=1e-12)
    assert math.isclose(costs["total_usd"], 9 * ONE, rel_tol=1e-12) and costs["avoided_usd"] == 0
    assert [r["cost_usd"] for r in records] == [pytest.approx(ONE, rel=1e-12)] * len(records)
    assert tally(records)["calls"] == 9 and math.isclose(tally(records)["cost_usd"], 9 * ONE, rel_tol=1e-12)


def test_a_cache_hit_is_avoided_not_spent_and_a_verify_follow_up_is_a_call() -> None:
    records = [record(cache_hit=True, attempts=0), record(cache_hit=True, description="b", batch=True),
               record(description="c", verify_rounds=2, prompt_tokens=300, completion_tokens=30),
               record(description="d", verify_rounds=0)]
    row = model_row(summary(records))
    assert (row["calls"], row["cache_hits"]) == (4, 2)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (400, 40)
    assert (row["cached_prompt_tokens"], row["cached_completion_tokens"]) == (200, 20)
    assert math.isclose(row["cost_usd"], 4 * ONE, rel_tol=1e-12)
    batch = 100 * MINI["input_cost_per_token_batches"] + 10 * MINI["output_cost_per_token_batches"]
    assert math.isclose(row["avoided_usd"], ONE + batch, rel_tol=1e-12)
    assert row["usage_missing"] == 0 and row["not_asked_budget"] == 0


def test_cases_never_asked_make_no_call_and_a_failed_call_bills_nothing() -> None:
    breaker = "not asked: stopped asking openai/gpt-4o-mini after 5 identical failures in a row: 401"
    records = [
        record(),
        *[record(description=f"never {i}", attempts=0, error=breaker, prompt_tokens=None, completion_tokens=None)
          for i in range(5)],
        *[record(description=f"budget {i}", attempts=0, error="not asked: the run's budget ($0.01) would be passed",
                 prompt_tokens=None, completion_tokens=None) for i in range(3)],
        record(description="failed", attempts=3, error="500 server error", prompt_tokens=None, completion_tokens=None),
    ]
    costs = summary(records, limits={TOTAL: 0.01})
    row = model_row(costs)
    assert row["calls"] == 2 and row["not_asked_budget"] == 3 and row["usage_missing"] == 0
    assert [s["not_asked_budget"] for s in costs["systems"]] == [3]
    assert math.isclose(row["cost_usd"], ONE, rel_tol=1e-12)
    assert costs["budget"]["not_asked"] == 3
    [limit] = costs["budget"]["limits"]
    assert limit["scope"] is None and limit["limit_usd"] == 0.01
    assert math.isclose(limit["spent_usd"], ONE) and math.isclose(limit["left_usd"], 0.01 - ONE)
    assert [r["cost_usd"] for r in records[1:]] == [0.0] * 9  # priced: nothing billed, not unknown


def test_an_unknown_price_or_usage_makes_the_cost_unknown_never_a_partial_sum() -> None:
    records = [record(), record(model="openai/unpriced"), record(model="openai/unpriced", description="b",
                                                                 cache_hit=True)]
    costs = summary(records)
    unpriced = model_row(costs, "openai/unpriced")
    assert unpriced["cost_usd"] is None and unpriced["avoided_usd"] is None and unpriced["price"] is None
    assert (unpriced["calls"], unpriced["cache_hits"], unpriced["prompt_tokens"]) == (1, 1, 100)
    assert costs["total_usd"] is None and costs["avoided_usd"] is None
    assert costs["unknown_prices"] == ["openai/unpriced"]
    assert model_row(costs)["price"]["source"] == LITELLM
    assert [r["system"] for r in costs["systems"]] == ["icd10cm", "icd10cm"]
    assert costs["budget"] is None

    missing = summary([record(), record(description="b", prompt_tokens=None), record(description="c",
                                                                                       completion_tokens=None)])
    assert model_row(missing)["cost_usd"] is None and model_row(missing)["usage_missing"] == 2
    assert model_row(missing)["prompt_tokens"] == 100
    hit = summary([record(cache_hit=True, prompt_tokens=None)])
    assert model_row(hit)["avoided_usd"] is None and model_row(hit)["cached_prompt_tokens"] == 0


def test_the_totals_are_per_model_and_per_model_and_system() -> None:
    prices = PriceTable({"openai/x": Price(1.0, 2.0, USER)})
    records = [record(), record(system="icd9cm"), record(model="openai/x"), record(model="openai/x", system="icd9cm",
                                                                                    cache_hit=True)]
    costs = summary(records, prices, limits={TOTAL: 1.0, "openai/x": 0.5})
    x = (100 + 20) / 1e6
    assert [(m["model"], m["calls"], m["cache_hits"]) for m in costs["models"]] == [
        ("openai/gpt-4o-mini", 2, 0), ("openai/x", 1, 1)]
    assert [(s["model"], s["system"], s["calls"]) for s in costs["systems"]] == [
        ("openai/gpt-4o-mini", "icd10cm", 1), ("openai/gpt-4o-mini", "icd9cm", 1), ("openai/x", "icd10cm", 1),
        ("openai/x", "icd9cm", 0)]
    assert all(s["price"] is not None for s in costs["systems"])
    assert math.isclose(costs["total_usd"], 2 * ONE + x) and math.isclose(costs["avoided_usd"], x)
    run, one = costs["budget"]["limits"]
    assert math.isclose(run["spent_usd"], 2 * ONE + x) and math.isclose(run["left_usd"], 1.0 - 2 * ONE - x)
    assert one["scope"] == "openai/x" and math.isclose(one["spent_usd"], x) and math.isclose(one["left_usd"], 0.5 - x)
    assert costs["budget"]["not_asked"] == 0
    assert summary([record(model="openai/unpriced")], limits={"openai/unpriced": 1.0})["budget"]["limits"][0][
        "spent_usd"] == 0.0
    assert summary([record()], limits={"other": 1.0})["budget"]["limits"][0]["spent_usd"] == 0.0


def test_a_coder_that_makes_no_model_call_has_no_cost_and_an_uncached_one_pays_each_case() -> None:
    lookup = [record(model="lookup", cache_hit=None, prompt_tokens=None, completion_tokens=None)]
    assert cost_summary(lookup, PriceTable()) is None
    both = summary([*lookup, record()])  # a lookup case first: the model's calls after it still count
    assert [m["model"] for m in both["models"]] == ["openai/gpt-4o-mini"] and both["models"][0]["calls"] == 1
    assert tally(lookup)["calls"] == 0 and tally(lookup)["cost_usd"] == 0.0
    product = [record(model="python:mod.fn", cache_hit=None), record(model="python:mod.fn", cache_hit=None)]
    costs = summary(product, PriceTable({"python:mod.fn": Price(1.0, 2.0, USER)}))
    assert model_row(costs, "python:mod.fn")["calls"] == 2  # asked in each test: no request is shared
    assert math.isclose(costs["total_usd"], 2 * 120 / 1e6)


def test_tally_adds_a_rows_calls_as_the_run_total_does() -> None:
    records = [record(), record(description="b", cache_hit=True), record(description="c", attempts=0, error="x",
                                                                         prompt_tokens=None, completion_tokens=None)]
    price_records(records, PriceTable())
    row = tally(records)
    assert (row["calls"], row["cache_hits"]) == (1, 1)
    assert math.isclose(row["cost_usd"], ONE) and math.isclose(row["avoided_usd"], ONE)
    assert row["model"] is None and row["system"] is None
    assert tally([]) == {"model": None, "system": None, "calls": 0, "cache_hits": 0, "not_asked_budget": 0,
                         "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "avoided_usd": 0.0,
                         "cached_prompt_tokens": 0, "cached_completion_tokens": 0, "usage_missing": 0}


# -- the budget ---------------------------------------------------------------------------------------


def question(max_tokens: int = 10, description: str = "d") -> Question:
    return Question(system="icd10cm", description=description, messages=(("user", description),),
                    temperature=0.0, max_tokens=max_tokens)


def budget(limits: dict[str, float], prompt: int = 1_000_000, **prices: Price) -> Budget:
    """A budget whose every prompt of model m, n or free counts ``prompt`` tokens (a question "big" counts
    twice that), at 1 USD per million in and 1 per million out."""
    table = PriceTable({"m": Price(1.0, 1.0, USER), "n": Price(1.0, 1.0, USER), **prices}, cost_map={})
    return Budget(table, limits, lambda model, q: {"m": 1, "n": 1, "free": 1}[model] * prompt
                  * (2 if q.description == "big" else 1))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_call_holds_its_worst_case_and_is_settled_at_what_it_cost(tmp_path: Path) -> None:
    b = budget({TOTAL: 3.0})
    b.load(tmp_path / "budget.json")

    async def go() -> None:
        held, why = await b.reserve("m", question(max_tokens=1_000_000))  # 1 M in + 1 M out = $2
        assert (held, why) == (2.0, None) and b.held == {"m": 2.0}
        await b.settle("m", held, {"prompt_tokens": 1_000_000, "completion_tokens": 500_000})
        assert b.held == {"m": 0.0} and b.spent == {"m": 1.5}
        held, why = await b.reserve("m", question(max_tokens=500_000))  # $1.5 more: exactly the limit
        assert (held, why) == (1.5, None)
        await b.settle("m", held, {"prompt_tokens": 1_000_000, "completion_tokens": 500_000})
        assert b.spent == {"m": 3.0}
        held, why = await b.reserve("m", question(max_tokens=1))
        assert held == 0.0 and why == ("not asked: the run's budget ($3.00) would be passed: $3.0000 spent, a call "
                                       "may cost up to $1.0000; a rerun with a higher --medcode-max-cost asks it")
        assert await b.reserve("n", question()) == (0.0, why)  # the run's limit stopped: every model stops
        assert b.stopped == {TOTAL: why}

    run(go())
    saved = json.loads((tmp_path / "budget.json").read_text())
    assert saved == {"spent": {"m": 3.0}, "stopped": {TOTAL: b.stopped[TOTAL]}, "limits": {TOTAL: 3.0}}
    again = budget({TOTAL: 3.0})
    again.spent = {"m": 1.0, "n": 5.0}
    again.load(tmp_path / "budget.json")  # another process of the run goes on from the larger spend
    assert again.spent == {"m": 3.0, "n": 5.0} and again.stopped == b.stopped
    assert again.path == tmp_path / "budget.json"
    (tmp_path / "other.json").write_text(json.dumps({"spent": {"n": 4.0, "o": 0.5}}))
    again.load(tmp_path / "other.json")
    assert again.spent == {"m": 3.0, "n": 5.0, "o": 0.5}


def test_a_models_own_limit_stops_only_that_model_and_a_free_or_unlimited_model_is_not_held() -> None:
    b = budget({"m": 1.5}, free=Price(0, 0, USER))

    async def go() -> None:
        assert await b.reserve("n", question(max_tokens=10_000_000)) == (0.0, None)  # no limit of its own
        assert await b.reserve("lookup", question()) == (0.0, None)
        held, why = await b.reserve("m", question(max_tokens=1_000_000))  # $2 > $1.50
        assert held == 0.0 and why.startswith("not asked: the budget for m ($1.50) would be passed: $0.0000 spent")
        assert "n" not in b.stopped and b.stopped == {"m": why}

    run(go())
    assert b.held == {} and b.spent == {}


def test_a_budget_with_no_price_for_the_model_holds_nothing() -> None:
    b = Budget(PriceTable({}, cost_map={}), {TOTAL: 1.0}, lambda model, q: 10)

    async def go() -> None:
        assert await b.reserve("openai/unknown", question()) == (0.0, None)
        await b.settle("openai/unknown", 0.0, {"prompt_tokens": 10, "completion_tokens": 10})

    run(go())
    assert b.spent == {} and b.held == {}


def test_a_call_waits_for_calls_in_flight_to_settle_when_only_they_stand_in_the_way() -> None:
    b = budget({TOTAL: 3.0})
    order: list[str] = []

    async def second() -> None:
        held, why = await b.reserve("m", question(max_tokens=1_000_000))
        order.append(f"second {held} {why}")

    async def go() -> None:
        held, _ = await b.reserve("m", question(max_tokens=1_000_000))  # $2 held of $3
        task = asyncio.ensure_future(second())  # $2 more does not fit beside it: waits
        await asyncio.sleep(0.01)
        assert order == [] and b.held == {"m": 2.0}
        order.append("first settled")
        await b.settle("m", held, {"prompt_tokens": 500_000, "completion_tokens": 0})  # $0.5 spent
        await task

    run(go())
    assert order == ["first settled", "second 2.0 None"] and b.spent == {"m": 0.5} and b.held == {"m": 2.0}


def test_settling_adds_a_batch_calls_batch_price_and_nothing_without_usage(tmp_path: Path) -> None:
    b = budget({TOTAL: 10.0})
    b.path = tmp_path / "state" / "run" / "budget.json"

    async def go() -> None:
        held, _ = await b.reserve("m", question())
        await b.settle("m", held, {})
        assert b.spent == {} and b.held == {"m": 0.0}
        held, _ = await b.reserve("m", question())
        await b.settle("m", held, {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "batch": True})
        assert b.spent == {"m": 1.0}
        await b.settle("m", 0.0, {"prompt_tokens": 1_000_000, "completion_tokens": 0})  # held nothing: not settled

    run(go())
    assert b.spent == {"m": 1.0}
    assert json.loads(b.path.read_text())["spent"] == {"m": 1.0}


def test_a_budget_file_that_cannot_be_written_does_not_stop_the_count(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    b = budget({TOTAL: 10.0})
    b.path = blocker / "budget.json"  # a folder that is a file

    async def go() -> None:
        held, _ = await b.reserve("m", question())
        await b.settle("m", held, {"prompt_tokens": 1_000_000, "completion_tokens": 0})

    run(go())
    assert b.spent == {"m": 1.0}
    b.load(tmp_path / "absent.json")
    assert b.spent == {"m": 1.0}
    (tmp_path / "odd.json").write_text(json.dumps([1, 2]))
    b.load(tmp_path / "odd.json")
    assert b.spent == {"m": 1.0} and b.stopped == {}


@pytest.mark.parametrize(("values", "limits"), [
    (["25"], {TOTAL: 25.0}), ([" 2.5 ", "gpt-4=10"], {TOTAL: 2.5, "gpt-4": 10.0}), (["a=b=1"], {"a=b": 1.0}),
    (["1", "2"], {TOTAL: 2.0}), ([], {}),
])
def test_budget_limits_are_the_run_and_one_model(values: list[str], limits: dict[str, float]) -> None:
    assert parse_limits(values) == limits


@pytest.mark.parametrize(("value", "message"), [
    ("=5", "expected USD or MODEL=USD"), ("gpt-4=", "expected an amount in USD"), ("lots", "expected an amount"),
    ("0", "above 0 USD"), ("-1", "above 0 USD"), ("inf", "above 0 USD"), ("gpt-4=nan", "above 0 USD"),
])
def test_a_bad_budget_is_one_line(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_limits([value])
    assert str(info.value).startswith(repr(value))


def test_prompt_tokens_are_counted_with_the_models_tokenizer_or_said_to_be_approximated() -> None:
    counter = TokenCounter()
    assert litellm.disable_hf_tokenizer_download is True  # offline: a tokenizer is never fetched
    messages = [{"role": "user", "content": "Type 2 diabetes mellitus without complications, übermäßig"}]
    mini = litellm.token_counter(model="gpt-4o-mini", messages=messages)
    assert counter.count("rag:openai/gpt-4o-mini", messages) == mini != litellm.token_counter(messages=messages)
    expected = litellm.token_counter(model="gpt-4", messages=messages)
    assert counter.count("gpt-4", messages) == expected
    assert counter.count("verify:rag:openai/gpt-4", messages) == expected  # the wrapped model's tokens
    assert counter.exact("gpt-4") and counter.exact("rag:openai/gpt-3.5-turbo")
    assert not counter.exact("openai/gpt-4o-mini") and not counter.exact("openai/m")
    assert counter.note("rag:gpt-4") == "counted with gpt-4's tokenizer (cl100k_base)"
    assert counter.note("openai/gpt-4o-mini") == (
        "approximated with cl100k_base (gpt-4o-mini uses o200k_base, not bundled)")
    assert counter.note("openai/m") == "approximated with cl100k_base (no tokenizer known for m)"
    assert litellm_cost_map() is litellm.model_cost


def test_a_models_limit_counts_that_models_spend_and_calls_in_flight_not_the_others() -> None:
    b = budget({TOTAL: 100.0, "m": 2.5})

    async def go() -> None:
        held, _ = await b.reserve("n", question(max_tokens=1_000_000))  # $2 of n in flight, under the run's limit
        assert b.held == {"n": 2.0}
        assert await asyncio.wait_for(b.reserve("m", question(max_tokens=1_000_000)), 1) == (2.0, None)
        another = asyncio.ensure_future(b.reserve("m", question(max_tokens=0)))  # $1 beside m's $2 held: waits
        await asyncio.sleep(0.05)
        assert not another.done()
        another.cancel()
        await b.settle("n", held, {"prompt_tokens": 2_000_000, "completion_tokens": 0})
        assert b.spent == {"n": 2.0} and b.held == {"n": 0.0, "m": 2.0}
        await b.settle("m", 2.0, {"prompt_tokens": 1_000_000, "completion_tokens": 0})
        held, why = await b.reserve("m", question(max_tokens=1_000_000))  # $1 spent + $2 > $2.50
        assert held == 0.0 and why.startswith("not asked: the budget for m ($2.50) would be passed: $1.0000 spent, "
                                              "a call may cost up to $2.0000")

    run(go())


def test_calls_in_flight_of_one_model_add_up_and_each_settles_its_own_part() -> None:
    b = budget({TOTAL: 10.0})

    async def go() -> None:
        first, _ = await b.reserve("m", question(max_tokens=1_000_000))
        second, _ = await b.reserve("m", question(max_tokens=1_000_000, description="big"))  # 2 M prompt tokens
        assert (first, second) == (2.0, 3.0) and b.held == {"m": 5.0}
        await b.settle("m", first, {"prompt_tokens": 1, "completion_tokens": 0})
        assert b.held == {"m": 3.0}

    run(go())


def test_a_call_waits_while_what_is_spent_and_held_leaves_no_room_for_it() -> None:
    b = budget({TOTAL: 3.0})

    async def go() -> None:
        held, _ = await b.reserve("m", question(max_tokens=0))  # $1
        await b.settle("m", held, {"prompt_tokens": 1_000_000, "completion_tokens": 0})  # $1 spent
        held, _ = await b.reserve("m", question(max_tokens=500_000))  # $1.5 held: $2.5 of $3
        third = asyncio.ensure_future(b.reserve("m", question(max_tokens=0)))  # $1 more: waits
        await asyncio.sleep(0.05)
        assert not third.done()
        await b.settle("m", held, {"prompt_tokens": 0, "completion_tokens": 0})
        assert await asyncio.wait_for(third, 1) == (1.0, None)

    run(go())
