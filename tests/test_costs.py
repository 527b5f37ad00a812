"""Money: what a run cost, what it will cost, and a budget it cannot pass — checked against the bill.

Every run is a real pytest session asking the scripted OpenAI-compatible server through the real litellm
and openai clients. The server's ``usage_per_model`` is the bill: the tokens its answers said they used.
The plugin's figures must equal that bill at the prices (litellm's map for gpt-4, ``--medcode-price`` for
the others), to the cent and below.
"""

from __future__ import annotations

import json
import math
import sys
from fnmatch import fnmatch

import litellm
import pytest

from helpers import cases_of
from pytest_medcode.asking.pricing import PriceTable, usd
from pytest_medcode.codesystems import load_system
from pytest_medcode.dataset.prompts import load_template
from pytest_medcode.results.costs import cost_summary, tally
from pytest_medcode.testing.faults import fixed_latency
from pytest_medcode.testing.responders import mapping_responder
from pytest_medcode.testing.server import ScriptedServer
from test_querying import pairs, setup_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GPT4 = (litellm.model_cost["gpt-4"]["input_cost_per_token"], litellm.model_cost["gpt-4"]["output_cost_per_token"])


def summary(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "reports" / "latest" / "summary.json").read_text())


def bill(server: ScriptedServer, model: str, per_token: tuple[float, float]) -> float:
    """What the server's answers to ``model`` cost at these per-token prices."""
    _, prompt, completion = server.stats.usage_per_model[model]
    return prompt * per_token[0] + completion * per_token[1]


def by_model(costs: dict) -> dict[str, dict]:
    return {row["model"]: row for row in costs["models"]}


def test_a_run_costs_what_the_server_billed_and_a_rerun_avoids_it(pytester: pytest.Pytester) -> None:
    codes = pairs(24, offset=2000)
    base = setup_run(pytester, codes)
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), latency=fixed_latency(0.01)) as server:
        args = [*base, "--medcode-api-base", server.base_url, "--model", "gpt-4", "--model", "openai/priced",
                "--model", "openai/unpriced", "--medcode-price", "openai/priced=2.5/10"]
        result = pytester.runpytest(*args)
        result.assert_outcomes(passed=72)
        costs = summary(pytester)["costs"]
        rows = by_model(costs)
        gpt4, priced = bill(server, "gpt-4", GPT4), bill(server, "priced", (2.5e-6, 10e-6))
        assert gpt4 > 0 and priced > 0
        assert math.isclose(rows["gpt-4"]["cost_usd"], gpt4, rel_tol=1e-12)
        assert math.isclose(rows["openai/priced"]["cost_usd"], priced, rel_tol=1e-12)
        for model, served in (("gpt-4", "gpt-4"), ("openai/priced", "priced"), ("openai/unpriced", "unpriced")):
            answers, prompt, completion = server.stats.usage_per_model[served]
            assert (rows[model]["calls"], rows[model]["prompt_tokens"], rows[model]["completion_tokens"]) == (
                answers, prompt, completion) == (24, prompt, completion)
        assert rows["openai/unpriced"]["cost_usd"] is None and rows["openai/unpriced"]["price"] is None
        assert costs["total_usd"] is None  # one model's cost is unknown: so is the total (never a partial sum)
        assert rows["gpt-4"]["price"]["source"] == "litellm" and rows["openai/priced"]["price"]["source"] == "user"
        systems = [r for r in costs["systems"] if r["model"] == "gpt-4"]
        assert [r["system"] for r in systems] == ["icd10cm"]
        assert math.isclose(systems[0]["cost_usd"], gpt4, rel_tol=1e-12)
        # The block as one text: an entry wider than the terminal is wrapped onto an indented line.
        shown = " ".join(" ".join(result.stdout.lines).split())
        assert fnmatch(shown, "* cost: unknown spent on model calls, $0.00 avoided by the cache gpt-4: 24 calls, * "
                       f"tokens, ${gpt4:.4f}; 0 cache hits, $0.00 avoided (litellm $30/$60 per 1M) *"), shown
        assert fnmatch(shown, "* openai/unpriced: 24 calls, * unknown; * (no price: --medcode-price MODEL=IN/OUT) *")
        report = (pytester.path / "reports" / "latest" / "report.md").read_text()
        assert "## What the run cost" in report and f"${gpt4:.4f}" in report
        assert "What the run cost" in (pytester.path / "reports" / "latest" / "report.html").read_text()

        # A user's price wins over litellm's map; a rerun asks nothing and avoids what the answers cost.
        before = server.stats.total_requests
        again = pytester.runpytest(*args, "--medcode-price", "gpt-4=1/2",
                                              "--medcode-price", "openai/unpriced=1/1")
        again.assert_outcomes(passed=72)
        assert server.stats.total_requests == before
        rows = by_model(summary(pytester)["costs"])
        _, prompt, completion = server.stats.usage_per_model["gpt-4"]
        assert rows["gpt-4"]["calls"] == 0 and rows["gpt-4"]["cache_hits"] == 24
        assert rows["gpt-4"]["cost_usd"] == 0
        assert math.isclose(rows["gpt-4"]["avoided_usd"], (prompt * 1 + completion * 2) / 1e6, rel_tol=1e-12)
        assert rows["gpt-4"]["price"] == {"input_per_m": 1.0, "output_per_m": 2.0, "source": "user"}
        assert math.isclose(rows["openai/priced"]["avoided_usd"], priced, rel_tol=1e-12)
        assert summary(pytester)["costs"]["total_usd"] == 0


def worst_case(description: str, max_tokens: int = 50) -> float:
    """The most one gpt-4 call for ``description`` can cost: its prompt tokens (gpt-4's tokenizer) and a
    ``max_tokens`` answer, at litellm's gpt-4 prices."""
    system = load_system("icd10cm")
    messages = load_template("paper").messages(system.prompt_name, description, system.example)
    return litellm.token_counter(model="gpt-4", messages=messages) * GPT4[0] + max_tokens * GPT4[1]


class Recorder:
    """The scripted model, noting every description it was asked (from the server's threads)."""

    def __init__(self, codes: list[tuple[str, str]]) -> None:
        self.respond = mapping_responder({d: c for c, d in codes})
        self.asked: list[str] = []

    def __call__(self, request):
        self.asked.append(request.description)
        return self.respond(request)


def assert_budget_held(pytester: pytest.Pytester, server: ScriptedServer, limit: float) -> list[dict]:
    """Spend within the limit, equal to the server's bill; the stop is right: the cheapest case left
    unasked would have passed the limit. Returns the unasked records."""
    spent = bill(server, "gpt-4", GPT4)
    costs = summary(pytester)["costs"]
    assert spent <= limit
    assert math.isclose(by_model(costs)["gpt-4"]["cost_usd"], spent, rel_tol=1e-12)
    records = [r for r in cases_of(pytester) if r["model"] == "gpt-4"]
    unasked = [r for r in records if r["outcome"] == "error"]
    assert unasked and all("budget" in r["error"] and r["attempts"] == 0 for r in unasked)
    assert min(worst_case(r["description"]) for r in unasked) + spent > limit
    assert costs["budget"]["not_asked"] >= len(unasked)
    return unasked


def test_a_budget_stops_before_a_call_that_could_pass_it_and_a_rerun_asks_only_the_rest(
        pytester: pytest.Pytester) -> None:
    codes = pairs(40, offset=3000)
    base = setup_run(pytester, codes)
    limit = 0.02
    recorder = Recorder(codes)
    with ScriptedServer(recorder, latency=fixed_latency(0.05)) as server:
        args = [*base, "--medcode-api-base", server.base_url, "--model", "gpt-4", "--medcode-concurrency", "8"]
        result = pytester.runpytest(*args, "--medcode-max-cost", str(limit))
        unasked = assert_budget_held(pytester, server, limit)
        asked = server.stats.total_requests
        assert asked + len(unasked) == 40 and asked >= 4  # calls went out in parallel before the stop
        assert server.stats.max_in_flight > 1
        result.assert_outcomes(passed=asked, failed=len(unasked))
        spent = bill(server, "gpt-4", GPT4)
        result.stdout.fnmatch_lines([f"  budget (run): ${spent:.4f} of ${limit:.4f} spent, ${limit - spent:.4f} left",
                                     f"  {len(unasked)} case(s) not asked: the budget would have been passed*"])

        recorder.asked.clear()
        again = pytester.runpytest(*args, "--medcode-max-cost", "5")
        again.assert_outcomes(passed=40)
        assert sorted(recorder.asked) == sorted(r["description"] for r in unasked)  # exactly the rest
        rows = by_model(summary(pytester)["costs"])
        assert rows["gpt-4"]["calls"] == len(unasked) and rows["gpt-4"]["cache_hits"] == asked
        assert math.isclose(rows["gpt-4"]["cost_usd"] + rows["gpt-4"]["avoided_usd"],
                            bill(server, "gpt-4", GPT4), rel_tol=1e-12)


def test_a_per_model_budget_holds_across_xdist_workers(pytester: pytest.Pytester) -> None:
    codes = pairs(30, offset=4000)
    base = setup_run(pytester, codes)
    limit = 0.015
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), latency=fixed_latency(0.05)) as server:
        result = pytester.runpytest(
            *base, "--medcode-api-base", server.base_url, "--model", "gpt-4", "--model", "openai/cheap",
            "--medcode-price", "openai/cheap=0.1/0.1", "--medcode-max-cost", f"gpt-4={limit}",
            "--medcode-concurrency", "6", "-n", "2")
        unasked = assert_budget_held(pytester, server, limit)
        assert server.stats.usage_per_model["cheap"][0] == 30  # the other model has no limit
        result.assert_outcomes(passed=60 - len(unasked), failed=len(unasked))
        result.stdout.fnmatch_lines(["  budget (gpt-4): $0.0* of $0.0150 spent, $0.00* left"])


def test_an_estimate_asks_nothing_and_counts_the_prompts_with_the_models_tokenizer(
        pytester: pytest.Pytester) -> None:
    codes = pairs(12, offset=5000)
    base = setup_run(pytester, codes)
    first, rest = codes[:4], codes[4:]
    system = load_system("icd10cm")
    template = load_template("paper")
    with ScriptedServer(mapping_responder({d: c for c, d in codes})) as server:
        # Four answers in the cache give the model's mean answer length.
        path = pytester.path / "codes.csv"
        path.write_text("code\n" + "\n".join(c for c, _ in first) + "\n")
        api = ["--medcode-api-base", server.base_url, "--model", "gpt-4"]
        pytester.runpytest(*base, *api).assert_outcomes(passed=4)
        answers, _, completion = server.stats.usage_per_model["gpt-4"]
        path.write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
        before = server.stats.total_requests

        result = pytester.runpytest(*base, *api, "--medcode-estimate", "-n", "2")
        assert result.ret == 0
        assert server.stats.total_requests == before  # not one request
        prompt = sum(litellm.token_counter(model="gpt-4", messages=template.messages(
            system.prompt_name, d, system.example)) for _, d in rest)
        mean = completion / answers
        low = (prompt * GPT4[0] + 8 * mean * GPT4[1])
        high = (prompt * GPT4[0] + 8 * 50 * GPT4[1])
        result.stdout.fnmatch_lines([
            "no model call was made for this estimate",
            "gpt-4: 12 cases, 12 distinct requests, 4 answered in the cache, 8 calls to make",
            f"  prompt tokens:     {prompt:,} (counted with gpt-4's tokenizer (cl100k_base))",
            f"  completion tokens: {round(8 * mean):,} expected ({mean:.1f} per answer, mean of 4 cached answers "
            "of gpt-4), 400 at most (max_tokens 50)",
            f"  cost:              {usd(low)} expected, {usd(high)} at most (litellm prices: $30 in / $60 out*",
        ])
        assert not (pytester.path / "reports" / "latest" / "cases.parquet").exists() or \
            len(cases_of(pytester)) == 4  # the estimate wrote no run folder

        # The medcode command: the same run's arguments; a model with no price is "unknown", not $0.
        cli = pytester.run(sys.executable, "-m", "pytest_medcode.cli", "estimate", *base,
                           "--medcode-api-base", server.base_url, "--model", "openai/m")
        assert cli.ret == 0, cli.stderr.str()
        assert server.stats.total_requests == before
        cli.stdout.fnmatch_lines(["  prompt tokens:     * (approximated with cl100k_base (no tokenizer known for m))",
                                  "  cost: * unknown (no price for openai/m; give one with --medcode-price*"])


def test_a_call_made_through_a_batch_api_is_priced_at_the_batch_discount() -> None:
    """A record whose usage says ``batch`` costs the map's batch price, or half price when the map has none
    (OpenAI's Batch API discount); the same usage asked one by one costs the full price."""
    def record(model: str, batch: bool | None, description: str) -> dict:
        return {"model": model, "system": "icd10cm", "description": description, "perturbed": None,
                "temperature": None, "repeat": None, "cache_hit": False, "attempts": 1, "error": None,
                "prompt_tokens": 1_000, "completion_tokens": 100, "batch": batch}

    records = [record("gpt-4", True, "a"), record("gpt-4", None, "b"), record("gpt-4o", True, "a")]
    rows = by_model(cost_summary(records, PriceTable()))
    full = 1_000 * GPT4[0] + 100 * GPT4[1]
    assert math.isclose(rows["gpt-4"]["cost_usd"], full * 0.5 + full, rel_tol=1e-12)
    gpt4o = litellm.model_cost["gpt-4o"]
    assert math.isclose(rows["gpt-4o"]["cost_usd"], 1_000 * gpt4o["input_cost_per_token_batches"]
                        + 100 * gpt4o["output_cost_per_token_batches"], rel_tol=1e-12)


DOCUMENTS = "def test_document_coding(medcode_document, medcode):\n    medcode.check_document(medcode_document)\n"
MINI = litellm.model_cost["gpt-4o-mini"]
MINI_PRICE = (MINI["input_cost_per_token"], MINI["output_cost_per_token"])
MINI_BATCH = (MINI["input_cost_per_token_batches"], MINI["output_cost_per_token_batches"])


def usage(server: ScriptedServer, batch: bool = False) -> tuple[int, int, int]:
    """(answers, prompt tokens, completion tokens) the server has returned so far, over every model."""
    stats = server.stats
    rows = (stats.batch_usage_per_model if batch else stats.usage_per_model).values()
    return tuple(sum(row[i] for row in rows) for i in range(3))  # type: ignore[return-value]


def billed(before: tuple[int, int, int], after: tuple[int, int, int], per_token: tuple[float, float]) -> float:
    return (after[1] - before[1]) * per_token[0] + (after[2] - before[2]) * per_token[1]


def assert_every_view_shows(pytester: pytest.Pytester, result: pytest.RunResult, spent: float,
                            avoided: float) -> dict:
    """summary.json's totals are ``spent`` and ``avoided`` to 1e-9 USD, every case carries its cost (their tally
    is the total), and report.md, report.html (headline and cost section) and the terminal print them alike."""
    costs = summary(pytester)["costs"]
    assert abs(costs["total_usd"] - spent) < 1e-9 and abs(costs["avoided_usd"] - avoided) < 1e-9, (costs, spent)
    records = cases_of(pytester)
    assert all(r["cost_usd"] is not None for r in records)
    row = tally(records)
    assert abs(row["cost_usd"] - spent) < 1e-9 and abs(row["avoided_usd"] - avoided) < 1e-9
    text = f"{usd(spent)} spent on model calls"
    folder = pytester.path / "reports" / "latest"
    page = (folder / "report.html").read_text()
    headline = page[page.index('<section id="headline">'):]
    headline = headline[:headline.index("</section>")]
    cost_section = page[page.index('<section id="costs">'):]
    assert text in headline and text in cost_section[:cost_section.index("</section>")]
    assert f"{usd(avoided)} avoided" in headline and '<td class="num">unknown' not in headline
    assert text in (folder / "report.md").read_text()
    shown = " ".join(" ".join(result.stdout.lines).split())
    assert f"cost: {text}, {usd(avoided)} avoided by the cache" in shown, shown
    return costs


def test_the_run_total_is_the_providers_bill_for_every_kind_of_call_and_a_rerun_avoids_it(
        pytester: pytest.Pytester) -> None:
    """Code queries in two wordings and two repeats, documents, and rag: (whose prompts are its own) against
    the scripted server: the run's cost is the server's usage at litellm's gpt-4o-mini price; the re-run
    asks nothing, spends nothing and avoids exactly that."""
    codes = pairs(4, offset=6000)
    base = setup_run(pytester, codes)
    pytester.makepyfile(test_document_coding=DOCUMENTS)
    with ScriptedServer(mapping_responder({d: c for c, d in codes})) as server:
        args = [*base, "--medcode-api-base", server.base_url, "--model", "openai/gpt-4o-mini",
                "--model", "rag:openai/gpt-4o-mini", "--medcode-variant", "exact,typo", "--medcode-repeats", "2",
                "--medcode-document-sample", "3", "--medcode-no-similarity"]
        result = pytester.runpytest(*args)
        assert result.ret in (0, 1), result.stdout.str()
        answered = usage(server)
        assert server.stats.total_requests == answered[0] == 4 * 2 * 2 * 2 + 3 * 2  # every case asked once
        spent = billed((0, 0, 0), answered, MINI_PRICE)
        costs = assert_every_view_shows(pytester, result, spent, 0.0)
        rows = by_model(costs)
        assert sum(m["calls"] for m in rows.values()) == answered[0]
        assert sum(m["prompt_tokens"] for m in rows.values()) == answered[1]
        assert sum(m["completion_tokens"] for m in rows.values()) == answered[2]
        assert rows["rag:openai/gpt-4o-mini"]["price"] == rows["openai/gpt-4o-mini"]["price"]
        assert rows["rag:openai/gpt-4o-mini"]["prompt_tokens"] > rows["openai/gpt-4o-mini"]["prompt_tokens"]
        assert len([r for r in cases_of(pytester) if r.get("kind") == "document"]) == 6

        again = pytester.runpytest(*args)
        assert again.ret in (0, 1)
        assert server.stats.total_requests == answered[0]  # nothing asked
        assert_every_view_shows(pytester, again, 0.0, spent)


def test_a_batch_is_billed_at_the_batch_price_and_the_run_total_is_that_bill(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """--medcode-batch: openai/ questions go through the Batch API at its price; rag: and verify: stream at
    the full price (each verify: follow-up a call of its own: the documents' answers name no code, so they
    are asked again), and so does the probe the run starts with; the total is what the server billed."""
    monkeypatch.setenv("MEDCODE_BATCH_POLL_S", "0.1")
    monkeypatch.setenv("MEDCODE_BATCH_POLL_MAX_S", "0.3")
    codes = pairs(5, offset=6100)
    base = setup_run(pytester, codes)
    pytester.makepyfile(test_document_coding=DOCUMENTS)
    with ScriptedServer(mapping_responder({d: c for c, d in codes})) as server:
        result = pytester.runpytest(
            *base, "--medcode-api-base", server.base_url, "--model", "openai/gpt-4o-mini",
            "--model", "rag:openai/gpt-4o-mini", "--model", "verify:openai/gpt-4o-mini", "--medcode-verify-rounds",
            "2", "--medcode-document-sample", "2", "--medcode-no-similarity", "--medcode-batch")
        assert result.ret in (0, 1), result.stdout.str()
        streamed, batched = usage(server), usage(server, batch=True)
        assert batched[0] >= 5 and streamed[0] >= 7 + 7 + 2 * 2  # rag: and verify: stream; 2 follow-ups a document
        assert streamed[0] + batched[0] == server.stats.successes
        rows = by_model(summary(pytester)["costs"])
        assert sum(m["calls"] for m in rows.values()) == server.stats.successes
        assert rows["verify:openai/gpt-4o-mini"]["calls"] == 7 + 2 * 2
        spent = billed((0, 0, 0), streamed, MINI_PRICE) + billed((0, 0, 0), batched, MINI_BATCH)
        assert MINI_BATCH[0] < MINI_PRICE[0]
        assert_every_view_shows(pytester, result, spent, 0.0)
        records = cases_of(pytester)
        assert sum(bool(r["batch"]) for r in records) == batched[0]


def test_a_price_for_a_wrapper_is_the_wrapped_models_and_two_prices_for_it_are_one_line(
        pytester: pytest.Pytester) -> None:
    setup_run(pytester, pairs(1))
    result = pytester.runpytest("-p", "no:cacheprovider", "--model", "rag:openai/x", "--medcode-estimate",
                                "--medcode-price", "openai/x=3/4", "--medcode-price", "rag:openai/x=1/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --medcode-price rag:openai/x=1/2: rag:openai/x asks openai/x, whose tokens "
                                 "the provider bills at one price, and openai/x=3/4 is given too; give one price for "
                                 "openai/x"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
