"""A confidence per answer: where each coder's comes from, how it travels (engine, cache, batch, records), and a
real run against the scripted server whose log-probabilities follow correctness (real openai/litellm clients)."""

from __future__ import annotations

import asyncio
import json
import math
import re

import pytest

from conftest import BENCHMARK
from helpers import cases_of, summary_of
from pytest_medcode.api import Question, Reply
from pytest_medcode.asking.batch import BatchRoute, read_result, request_line
from pytest_medcode.asking.cache import request_key
from pytest_medcode.asking.coders import CoderOptions, resolve_coder
from pytest_medcode.asking.coders.litellm_coder import LiteLLMCoder
from pytest_medcode.asking.coders.logprobs import code_probability, confidence_of
from pytest_medcode.asking.coders.lookup import Candidate, LookupCoder
from pytest_medcode.asking.coders.openai_compat import OpenAICompatibleCoder
from pytest_medcode.asking.coders.rag import chosen_confidence
from pytest_medcode.asking.coders.verify import verified_confidence
from pytest_medcode.asking.engine import CONFIDENCE, CONFIDENCE_INVALID, Call, confidence_usage
from pytest_medcode.codesystems import load_system
from pytest_medcode.results import rules
from pytest_medcode.testing.responders import (
    Request,
    degrade,
    is_corrupted,
    mapping_responder,
    scripted_confidence,
    token_logprobs,
)
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DIABETES = "Type 2 diabetes mellitus without complications"
_KEYED = {"messages": (("user", f"Code: <{DIABETES}>"),), "temperature": 0.2, "max_tokens": 50, "repeat": 0}


def _question(description: str = DIABETES, system: str = "icd10cm") -> Question:
    return Question(system, description, (("user", f"Which code fits: <{description}>?"),), 0.2, 50)


# -- cache keys: a run that asks for no confidence keeps every key -----------------------------------------------


def test_cache_keys_stay_byte_identical_unless_a_confidence_is_asked_for():
    """The keys of these two requests as the cache has always had them (computed before confidences existed)."""
    plain = OpenAICompatibleCoder("openai/m", "http://127.0.0.1:9/v1", 30)
    assert request_key({**plain.identity(), **_KEYED}) == \
        "5c2e9fab0bd6241be756584cf28771944850c18100a2a8d7919c7c0e5fac1414"
    assert request_key({**LiteLLMCoder("gpt-4o", None, 30).identity(), **_KEYED}) == \
        "28e88e3d5082287298cbf7a1e5c7667b1c4895d4d801f276329f2fe4cf1ded9f"
    asked = resolve_coder("openai/m", CoderOptions(api_base="http://127.0.0.1:9/v1", confidence=True))
    assert request_key({**asked.identity(), **_KEYED}) != request_key({**plain.identity(), **_KEYED})
    assert resolve_coder("gpt-4o", CoderOptions(confidence=True)).identity()["logprobs"] is True


# -- where a confidence comes from ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Code: E11.9", "The code is E11.9.", "Code: 0DT70ZZ", "I cannot say."])
def test_log_probabilities_of_the_code_tokens_give_back_the_scripted_probability(text):
    tokens = [(t["token"], t["logprob"]) for t in token_logprobs(text, 0.37)]
    assert "".join(t for t, _ in tokens) == text
    assert code_probability(tokens) == pytest.approx(0.37)
    # Tokens outside the code do not count: an uncertain "Code" label leaves the code's probability alone.
    shaky = [(t, -2.0 if t == "Code" else lp) for t, lp in tokens]
    if text.startswith("Code: "):
        assert code_probability(shaky) == pytest.approx(0.37)


def test_a_choice_without_log_probabilities_has_no_confidence():
    assert confidence_of({"logprobs": None}) is None
    assert confidence_of({"logprobs": {"content": [{"token": "x", "logprob": "high"}]}}) is None
    assert confidence_of({"logprobs": {"content": [{"token": "E11.9", "logprob": math.log(0.5)}]}}) == \
        pytest.approx(0.5)


def test_lookup_confidence_is_its_match_score():
    coder = LookupCoder()
    exact = asyncio.run(coder.answer(_question()))
    fuzzy = asyncio.run(coder.answer(_question("Type 2 diabetis melitus without complicatons")))
    assert exact.confidence == 1.0
    assert fuzzy.text == "Code: E11.9" and 0.5 < fuzzy.confidence < 1.0


def test_rag_takes_the_chosen_candidates_score_and_verify_whether_it_changed_the_answer():
    candidates = [Candidate("E11.9", DIABETES, 100.0), Candidate("E11.8", "Type 2 ... complications", 80.0)]
    assert chosen_confidence(Reply("Code: E11.8"), candidates) == pytest.approx(0.8)
    assert chosen_confidence(Reply("Code: E11.8", confidence=0.5), candidates) == pytest.approx(0.4)
    assert chosen_confidence(Reply("Code: E10.9"), candidates) == 0.0  # not one of the candidates
    assert chosen_confidence(Reply("Code: E11.81"), candidates) == 0.0  # E11.8 inside E11.81 is not E11.8
    assert verified_confidence(0, None) == 1.0
    assert verified_confidence(2, None) == pytest.approx(1 / 3)
    assert verified_confidence(1, 0.8) == pytest.approx(0.4)


@pytest.mark.parametrize("bad", [1.5, -0.01, math.nan, math.inf, "0.9", True])
def test_a_confidence_that_is_no_probability_is_dropped_and_noted(bad):
    usage = confidence_usage(Reply("Code: E11.9", {"prompt_tokens": 3}, confidence=bad))
    assert CONFIDENCE not in usage and usage[CONFIDENCE_INVALID] and usage["prompt_tokens"] == 3


def test_a_reply_without_confidence_keeps_its_usage_as_it_was():
    usage = {"prompt_tokens": 3}
    assert confidence_usage(Reply("x", usage)) is usage
    assert confidence_usage(Reply("x", confidence=0.0)) == {CONFIDENCE: 0.0}
    assert confidence_usage(Reply("", abstained=True)) == {"abstained": True}


def test_batch_request_bodies_ask_for_log_probabilities_only_when_asked_and_the_output_gives_them_back():
    call = Call("openai/m", _question())
    assert "logprobs" not in json.loads(request_line("k", "m", call))["body"]
    assert json.loads(request_line("k", "m", call, logprobs=True))["body"]["logprobs"] is True
    route = resolve_coder("openai/m", CoderOptions(api_base="http://127.0.0.1:9/v1", confidence=True))
    from pytest_medcode.asking.batch import batch_route

    assert batch_route(route) == BatchRoute("http://127.0.0.1:9/v1", "m", True)
    body = {"choices": [{"message": {"content": "Code: E11.9"},
                         "logprobs": {"content": token_logprobs("Code: E11.9", 0.6)}}], "usage": {}}
    outcome = read_result({"response": {"status_code": 200, "body": body}})
    assert outcome is not None and outcome.usage[CONFIDENCE] == pytest.approx(0.6)


def test_real_clients_request_log_probabilities_only_when_asked():
    seen: list[dict] = []

    def respond(request: Request) -> str:
        seen.append(dict(request.body))
        return "Code: E11.9"

    with ScriptedServer(respond, confidence=lambda _r, _t: 0.42) as server:
        for cls in (OpenAICompatibleCoder, LiteLLMCoder):
            plain = asyncio.run(cls("openai/m", server.base_url, 10).answer(_question()))
            asked = asyncio.run(cls("openai/m", server.base_url, 10, logprobs=True).answer(_question()))
            assert plain.confidence is None and asked.confidence == pytest.approx(0.42)
    assert ["logprobs" in body for body in seen] == [False, True, False, True]


def test_targets_outside_zero_one_are_refused_in_one_line():
    for bad in ("0", "1.5", "-0.2", "nan", "abc", "150%"):
        with pytest.raises(ValueError, match="above 0 and at most 1"):
            rules.parse_target(bad)
    assert rules.parse_target("95%") == pytest.approx(0.95)
    with pytest.raises(ValueError, match="coverage@T takes a target"):
        rules.parse_thresholds("coverage@0=0.5", "under")
    with pytest.raises(ValueError, match="coverage@T takes a target"):
        rules.parse_thresholds("coverage@101=0.5", "under")
    (th,) = rules.parse_thresholds("icd10cm:coverage@95=0.6", "under")
    assert (th.metric, th.limit, rules.coverage_target(th.metric)) == ("coverage@95", 0.6, 0.95)


# -- a real run ----------------------------------------------------------------------------------------------

PRODUCT = '''
from pytest_medcode.api import Reply

def code(question):
    """A product that is sure of nothing it says: confidences that are no probability."""
    return Reply("Code: E11.9", confidence=1.7)
'''


def test_a_run_against_the_scripted_server_reports_and_gates_on_coverage(pytester: pytest.Pytester) -> None:
    pairs = load_system("icd10cm").billable_codes()[:80]
    responder = degrade(mapping_responder({d: c for c, d in pairs}), 0.15, seed=4)
    pytester.makepyfile(test_code_query=BENCHMARK, product=PRODUCT)
    codes = pytester.path / "codes.csv"
    codes.write_text("code\n" + "\n".join(c for c, _ in pairs) + "\n")
    base = ["--medcode-system", "icd10cm", "--medcode-codes", str(codes), "-p", "no:cacheprovider",
            "--medcode-no-similarity", "--medcode-cache", str(pytester.path / "cache.sqlite3")]
    with ScriptedServer(responder, confidence=scripted_confidence(0.15, seed=4)) as server:
        models = ["--model", "openai/m", "--medcode-api-base", server.base_url, "--model", "python:product:code"]
        gated = pytester.runpytest_subprocess(*base, *models, "-n", "2", "--medcode-fail-under",
                                              "coverage@95=0.5,coverage@99.5=0.99")
        first = cases_of(pytester)
        summary = summary_of(pytester)
        again = pytester.runpytest_subprocess(*base, *models, "--medcode-confidence", "--medcode-max-error-rate", "0")
        cached = cases_of(pytester)
        asked = server.stats.total_requests
    wrong = {d for _, d in pairs if is_corrupted(d, 0.15, 4)}
    scripted = [r for r in first if r["model"] == "openai/m"]
    assert all(r["confidence"] is not None and r["confidence_source"] == "coder" for r in scripted)
    right = [r["confidence"] for r in scripted if r["description"] not in wrong]
    assert min(right) >= 0.7 - 1e-9 and any(r["confidence"] < 0.7 for r in scripted if r["description"] in wrong)
    rows = {r["model"]: r for r in summary["selective"]}
    at95 = rows["openai/m"]["coverage"]["95"]
    assert at95["accuracy"] >= 0.95 and 0.5 < at95["value"] < 1.0 and 0.2 < at95["threshold"] < 1.0
    assert rows["python:product:code"]["coverage"] is None  # every confidence it gave was refused
    shown = " ".join(gated.stdout.str().split())  # as read, whatever the terminal's width wrapped
    assert re.search(r"openai/m / icd10cm: auto-codes \d+\.\d % \(\d+\.\d–\d+\.\d\) of cases at ≥ 95 % accuracy, "
                     r"threshold 0\.\d\d", shown)
    assert ("warning: python:product:code gave 80 confidence(s) outside [0, 1] or not a number (first: 1.7); "
            "those cases are recorded as no confidence") in shown
    checks = {(c["metric"], c["scope"]): c for c in summary["gate"]["checks"]}
    assert checks[("coverage@95", "openai/m / icd10cm")]["passed"]
    assert not checks[("coverage@99.5", "openai/m / icd10cm")]["passed"]
    assert "no confidence" in checks[("coverage@95", "python:product:code / icd10cm")]["reason"]
    assert gated.ret == 1
    # Resumed from the cache (with --medcode-confidence, the same requests): the same confidences, nothing asked.
    assert again.ret == 0
    assert [r["confidence"] for r in cached if r["model"] == "openai/m"] == [r["confidence"] for r in scripted]
    assert all(r["cache_hit"] for r in cached if r["model"] == "openai/m")
    assert asked == len(pairs)  # each question once (the preflight probe is the first of them, kept)


# -- the gate at a carried threshold ---------------------------------------------------------------------------


def _records(model: str, pairs: list[tuple[float, bool]]) -> list[dict]:
    return [{"model": model, "system": "icd10cm", "code": f"C{i}", "outcome": "correct" if ok else "incorrect",
             "exact_match": ok, "confidence": c} for i, (c, ok) in enumerate(pairs)]


def test_the_baselines_threshold_carried_fails_when_accuracy_on_what_it_auto_codes_falls():
    from pytest_medcode.reports.verdict import check_reason
    from pytest_medcode.results.gate import evaluate, judge_carried_threshold

    # Baseline: 20 sure and right at 0.9, then 0.8 with one wrong in 10: its threshold at 95 % is 0.8 (29/30).
    base = _records("m", [(0.9, True)] * 20 + [(0.8, True)] * 9 + [(0.8, False)] + [(0.5, False)] * 10)
    worse = _records("m", [(0.9, True)] * 18 + [(0.9, False)] * 2 + [(0.8, False)] * 5 + [(0.8, True)] * 5)
    result = judge_carried_threshold(worse, 0.95, baseline=base)
    assert (result.threshold, result.auto_coded, result.correct) == (0.8, 30, 23)
    assert result.base_accuracy == pytest.approx(29 / 30) and not result.passed
    verdict = evaluate(worse, base, threshold_from_baseline=True, max_drops=rules.parse_max_drops("exact_match=0.99"))
    (carried,) = [c for c in verdict.checks if c.kind == "carried_threshold"]
    assert not verdict.passed and carried.scope == "m / icd10cm"
    assert check_reason(carried) == ("at the baseline's threshold 0.80, accuracy on auto-coded cases fell from "
                                     "96.7 % to 76.7 % (auto-codes 100.0 % of 30), below 95 %")
    fixed = judge_carried_threshold(worse, 0.95, threshold=0.85)
    assert (fixed.auto_coded, fixed.correct, fixed.passed) == (20, 18, False)
    assert judge_carried_threshold(worse, 0.95, threshold=0.95).passed  # nothing auto-coded, nothing wrong
    plain = [{**r, "confidence": None} for r in worse]
    assert judge_carried_threshold(plain, 0.95, baseline=base).missing == "no_confidence"
    assert judge_carried_threshold(worse, 0.95, baseline=[{**r, "exact_match": False} for r in base]).missing == \
        "baseline_no_threshold"



def test_a_group_the_baseline_lacks_has_no_threshold_to_carry_and_is_said_not_failed():
    from pytest_medcode.reports.verdict import verdict_warnings
    from pytest_medcode.results.gate import evaluate

    base = _records("m", [(0.9, True)] * 30)
    run = base + _records("new", [(0.9, True)] * 30)
    verdict = evaluate(run, base, threshold_from_baseline=True)
    assert verdict.passed and [c.scope for c in verdict.checks if c.kind == "carried_threshold"] == ["m / icd10cm"]
    assert "new / icd10cm: not in the baseline, so not checked for regressions" in verdict_warnings(verdict)
    fixed = evaluate(run, base, carried_threshold=0.85)  # a fixed threshold judges every group
    assert sorted(c.scope for c in fixed.checks if c.kind == "carried_threshold") == ["m / icd10cm", "new / icd10cm"]

def test_a_coverage_drop_against_the_baseline_is_a_paired_bootstrap_over_cases():
    from pytest_medcode.reports.verdict import check_reason
    from pytest_medcode.results.gate import evaluate
    from pytest_medcode.results.selective import paired_coverage_delta

    base = _records("m", [(0.9, True)] * 300 + [(0.5, True)] * 150 + [(0.2, False)] * 50)
    same = paired_coverage_delta([(r["confidence"], r["exact_match"], False) for r in base],
                                 [(r["confidence"], r["exact_match"], False) for r in base], 0.95, seed=1)
    assert same == (0.9, 0.9, 0.0, 0.0, 0.0)
    # The new run is as accurate but less sure of a third of its right answers: they fall below its wrong ones
    # (500 cases: with 100 the resamples that draw few wrong ones let the interval reach 0, as they should).
    worse = _records("m", [(0.9, True)] * 150 + [(0.1, True)] * 150 + [(0.5, True)] * 150 + [(0.2, False)] * 50)
    drops = rules.parse_max_drops("coverage@95=5pp")
    verdict = evaluate(worse, base, max_drops=drops)
    (check,) = [c for c in verdict.checks if c.metric == "coverage@95"]
    assert (check.baseline, check.observed, check.delta) == pytest.approx((0.9, 0.6, -0.3))
    assert check.ci[1] < -0.05 and not check.passed
    assert "coverage@95" in check_reason(check)
    assert evaluate(base, base, max_drops=drops).passed
