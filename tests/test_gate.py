"""The release gate (results/gate.py): each rule's numbers, the verdict on real records, and gate mode in
real pytest sessions.

Real records come from real runs of the plugin (the offline ``lookup`` coder, and the scripted
OpenAI-compatible server driven through litellm for a model that is wrong on purpose); the only
hand-made change is :func:`gate_helpers.spoil`, which turns a case into a wrong answer the way a model would.
The sentences of a verdict are tested in test_verdict.py, the option parsing in test_rules.py and the
pairing in test_pairing.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gate_helpers import (
    FAST,
    LOOKUP_RIGHT,
    LOOKUP_WRONG,
    TEST_FILE,
    case,
    fail_call,
    last_lines,
    lookup_run_once,
    only,
    regression_of,
    spoil,
)
from pytest_medcode.codesystems import load_system
from pytest_medcode.reports.verdict import (
    all_warnings,
    check_dict,
    check_reason,
    render_verdict,
    verdict_dict,
    verdict_reason,
    verdict_warnings,
)
from pytest_medcode.results.gate import (
    BinaryRegression,
    ErrorRate,
    GateSpec,
    NoCases,
    ThresholdResult,
    evaluate,
    judge_binary,
    judge_continuous,
    judge_errors,
    judge_threshold,
)
from pytest_medcode.results.rules import MaxDrop, Threshold, parse_max_drops, parse_thresholds
from pytest_medcode.results.stats import bootstrap_mean
from pytest_medcode.runs.folder import Run, load_run
from pytest_medcode.testing.responders import degrade, is_corrupted, mapping_responder
from pytest_medcode.testing.server import ScriptedServer


@pytest.fixture(scope="module")
def lookup_run(lookup_run_folder: Callable[..., Path]) -> Run:
    return lookup_run_once(lookup_run_folder)


@pytest.fixture(scope="module")
def icd10_answers() -> dict[str, str]:
    """Description → code for a scripted model that knows ICD-10-CM as the lookup coder does."""
    answers: dict[str, str] = {}
    for code, description in load_system("icd10cm").billable_codes():
        answers.setdefault(description, code)
    return answers


@pytest.fixture(scope="module")
def server():
    with ScriptedServer() as srv:
        yield srv


# -- the pure function on real records -------------------------------------------------------------


def test_a_run_compared_with_itself_passes(lookup_run: Run) -> None:
    verdict = evaluate(lookup_run.records, lookup_run.records, max_drops=parse_max_drops("exact_match=2pp"))
    assert verdict.passed, verdict_reason(verdict)
    check = only(verdict, "regression", "exact_match")
    assert (check.n, check.p_value, check.delta, check.details["lost"]) == (1000, 1.0, 0.0, 0)
    assert json.loads(json.dumps(verdict_dict(verdict)))["passed"] is True


def test_ten_percent_worse_on_1000_cases_fails_with_mcnemar(lookup_run: Run) -> None:
    new = [spoil(r) if i % 10 == 3 else r for i, r in enumerate(lookup_run.records)]
    verdict = evaluate(new, lookup_run.records, max_drops=parse_max_drops("exact_match=2pp"))
    assert not verdict.passed
    check = only(verdict, "regression", "exact_match")
    assert check.details["lost"] == 100 and check.details["gained"] == 0
    assert check.p_value is not None and check.p_value < 0.05
    assert check.delta == pytest.approx(-0.10)
    assert "McNemar exact p" in check_reason(check) and "beyond the allowed 2.0 pp" in check_reason(check)
    assert verdict_reason(verdict).startswith("exact_match lookup / icd10cm: exact match dropped 10.0 pp")


def test_one_extra_error_in_20_cases_passes_with_a_power_warning(lookup_run: Run) -> None:
    base = lookup_run.records[:20]
    new = [spoil(base[0]), *base[1:]]
    verdict = evaluate(new, base, max_drops=parse_max_drops("exact_match=2pp"))
    assert verdict.passed, verdict_reason(verdict)
    check = only(verdict, "regression", "exact_match")
    assert check.details["underpowered"] and check.p_value == 1.0
    assert any("low power" in w and "cannot tell" in w for w in all_warnings(verdict))


def test_a_drop_beyond_the_margin_must_also_be_significant(lookup_run: Run) -> None:
    base = lookup_run.records[:100]
    # 4 lost, 1 gained: a 3-point drop, past a 2-point margin, but p = 0.375.
    base = [spoil(base[0]), *base[1:]]
    new = [lookup_run.records[0], *[spoil(r) for r in base[1:5]], *base[5:]]
    verdict = evaluate(new, base, max_drops=parse_max_drops("exact_match=2pp"))
    check = only(verdict, "regression", "exact_match")
    assert check.passed and check.details["exceeds_margin"] and not check.details["significant"]
    assert "not significant" in check_reason(check)


def test_a_significant_drop_within_the_margin_passes(lookup_run: Run) -> None:
    new = [spoil(r) if i < 30 else r for i, r in enumerate(lookup_run.records)]  # 3 points, p ~ 2e-9
    verdict = evaluate(new, lookup_run.records, max_drops=parse_max_drops("exact_match=5pp"))
    check = only(verdict, "regression", "exact_match")
    assert verdict.passed and check.details["significant"] and "within the allowed 5.0 pp" in check_reason(check)


def test_thresholds_per_group_with_system_overrides(lookup_run: Run) -> None:
    icd9 = [{**r, "system": "icd9cm"} for r in lookup_run.records[:40]]
    records = [spoil(r) if i % 2 else r for i, r in enumerate(lookup_run.records[40:140])] + icd9
    ths = parse_thresholds("exact_match=0.45,icd9cm:exact_match=0.99,valid=0.1", "under")
    verdict = evaluate(records, thresholds=ths)
    icd10 = only(verdict, "threshold", "exact_match", "icd10cm")
    icd9_check = only(verdict, "threshold", "exact_match", "icd9cm")
    assert icd10.passed and icd10.observed == 0.5 and icd10.limit == 0.45
    assert icd9_check.passed and icd9_check.limit == 0.99 and icd9_check.details["limit_scope"] == "icd9cm"
    verdict = evaluate(records, thresholds=parse_thresholds("exact_match=0.55", "under"))
    assert not verdict.passed and "is below the limit 55.0%" in verdict_reason(verdict)


def test_fabricated_is_limited_from_above(lookup_run: Run) -> None:
    records = [{**r, "fabricated": i < 15} for i, r in enumerate(lookup_run.records[:100])]
    over = parse_thresholds("fabricated=0.1", "over")
    check = only(evaluate(records, thresholds=over), "threshold", "fabricated")
    assert not check.passed and check.observed == 0.15 and "above the limit 10.0%" in check_reason(check)
    assert evaluate(records, thresholds=parse_thresholds("fabricated=20%", "over")).passed
    # A rise in fabrication is its "drop": McNemar on "not fabricated".
    base = [{**r, "fabricated": False} for r in records]
    verdict = evaluate(records, base, max_drops=parse_max_drops("fabricated=2pp"))
    check = only(verdict, "regression", "fabricated")
    assert not check.passed and "rose 15.0 pp" in check_reason(check) and check.delta == pytest.approx(0.15)


def test_failed_calls_above_the_error_rate_fail(lookup_run: Run) -> None:
    records = [fail_call(r) if i < 6 else r for i, r in enumerate(lookup_run.records[:100])]
    assert not evaluate(records).passed
    assert "6 of 100 calls failed (6.0%), above the allowed 5.0%" in verdict_reason(evaluate(records))
    assert evaluate(records, max_error_rate=0.1).passed
    # Failed calls never count as regressions: they are not paired.
    check = only(evaluate(records, lookup_run.records[:100], max_error_rate=0.1), "regression", "exact_match")
    assert check.n == 94 and check.passed


def test_similarity_regressions_use_a_paired_bootstrap(lookup_run: Run) -> None:
    base = [{**r, "meteor": 0.6 + 0.3 * ((i * 7) % 10) / 10, "bertscore": 0.9} for i, r in
            enumerate(lookup_run.records[:400])]
    worse = [{**r, "meteor": r["meteor"] - 0.05} for r in base]
    drops = parse_max_drops("meteor=0.02,bertscore=0.01")
    verdict = evaluate(worse, base, max_drops=drops)
    meteor = only(verdict, "regression", "meteor")
    assert not meteor.passed and meteor.delta == pytest.approx(-0.05) and meteor.ci is not None
    assert meteor.ci[1] < 0 and meteor.details["test"] == "paired_bootstrap"
    assert only(verdict, "regression", "bertscore").passed
    # Absent columns (the metrics extra is not installed) fail the check with the reason.
    verdict = evaluate(lookup_run.records[:50], lookup_run.records[:50], max_drops=drops)
    assert not verdict.passed and "no cases with meteor in both runs" in verdict_reason(verdict)
    missing = evaluate(lookup_run.records[:50], thresholds=parse_thresholds("bertscore=0.8", "under"))
    assert not missing.passed and "no bertscore values in the records" in verdict_reason(missing)


def test_digit_match_regression_and_pooled_scope(lookup_run: Run) -> None:
    icd9 = [{**r, "system": "icd9cm"} for r in lookup_run.records[500:700]]
    base = lookup_run.records[:200] + icd9
    new = [spoil(r) if i % 5 == 0 else r for i, r in enumerate(base)]
    verdict = evaluate(new, base, max_drops=parse_max_drops("exact_match=2pp,digit_match=0.01"))
    pooled = only(verdict, "regression", "exact_match", "all systems")
    assert pooled.n == 400 and not pooled.passed
    digits = only(verdict, "regression", "digit_match", "all systems")
    assert digits.delta is not None and digits.delta < -0.01 and not digits.passed


def test_a_run_with_description_variants_is_judged_per_variant(lookup_run: Run) -> None:
    exact = [{**r, "variant": "exact"} for r in lookup_run.records[:100]]
    typo = [{**(spoil(r) if i % 2 else r), "variant": "typo"} for i, r in enumerate(exact)]
    verdict = evaluate(exact + typo, exact + [{**r, "variant": "typo"} for r in exact],
                       thresholds=parse_thresholds("exact_match=0.8", "under"))
    assert {c.scope for c in verdict.checks if c.kind == "threshold"} == {
        "lookup / icd10cm [exact]", "lookup / icd10cm [typo]"}
    assert only(verdict, "threshold", "exact_match", "[exact]").passed
    assert not only(verdict, "threshold", "exact_match", "[typo]").passed
    assert not only(verdict, "regression", "exact_match", "[typo]").passed
    assert only(verdict, "regression", "exact_match", "[exact]").passed
    assert only(verdict, "regression", "exact_match", "all cases").n == 200


def test_the_verdict_is_deterministic_and_renders_last(lookup_run: Run) -> None:
    new = [spoil(r) if i % 7 == 0 else r for i, r in enumerate(lookup_run.records)]
    spec = GateSpec(fail_under=parse_thresholds("exact_match=0.5", "under"),
                    max_drops=parse_max_drops("exact_match=1pp,digit_match=1pp"), active=True)
    one, two = spec.evaluate(new, lookup_run.records), spec.evaluate(new, lookup_run.records)
    assert verdict_dict(one) == verdict_dict(two)
    lines = render_verdict(one)
    assert lines[-1].startswith("medcode gate FAILED: exact_match lookup / icd10cm: exact match dropped")
    assert all(not math.isnan(c.observed or 0.0) for c in one.checks)


# -- gate mode in real pytest sessions -------------------------------------------------------------


@pytest.fixture
def icd9_codes(pytester: pytest.Pytester) -> Path:
    """20 ICD-9-CM cases, 5 of which the lookup coder gets wrong (exact match 75%)."""
    pytester.makepyfile(test_codes=TEST_FILE)
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(LOOKUP_RIGHT + LOOKUP_WRONG) + "\n")
    return path


def gate_run(pytester: pytest.Pytester, codes: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*FAST, "--medcode-report-dir", "reports",
                              "--medcode-system", "icd9cm", "--medcode-codes", str(codes), *args)


def summary_of(pytester: pytest.Pytester) -> dict[str, Any]:
    return json.loads((pytester.path / "reports" / "latest" / "summary.json").read_text())


def test_without_gate_options_each_mismatch_is_a_failing_test(pytester, icd9_codes) -> None:
    result = gate_run(pytester, icd9_codes)
    result.assert_outcomes(passed=15, failed=5)
    assert result.ret == 1
    assert summary_of(pytester)["gate"] is None


def test_threshold_met_exits_0_and_mismatches_are_their_own_outcome(pytester, icd9_codes) -> None:
    result = gate_run(pytester, icd9_codes, "--medcode-fail-under", "exact_match=0.7", "-v")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_code_query?lookup-icd9cm-755.39? MISMATCH*"])
    assert result.parseoutcomes() == {"passed": 15, "mismatched": 5}
    lines = last_lines(result.stdout.str(), 2)
    assert lines[0] == ("medcode gate PASSED: all 2 checks passed, 1 warning")
    assert "15 passed, 5 mismatched" in lines[1]
    gate_data = summary_of(pytester)["gate"]
    assert gate_data["passed"] is True and gate_data["checks"][1]["observed"] == 0.75


def test_threshold_missed_exits_1_with_the_reason_last(pytester, icd9_codes) -> None:
    result = gate_run(pytester, icd9_codes, "--medcode-fail-under", "exact_match=0.5,icd9cm:exact_match=0.8")
    assert result.ret == 1
    assert result.parseoutcomes() == {"passed": 15, "mismatched": 5}
    verdict_line = last_lines(result.stdout.str(), 2)[0]
    assert verdict_line == ("medcode gate FAILED: exact_match lookup / icd9cm: exact match 75.0% "
                            "(95% CI 53.1%–88.8%, n=20) is below the limit 80.0%")
    summary = summary_of(pytester)
    assert summary["gate"]["passed"] is False
    assert summary["config"]["gate"]["fail_under"] == ["exact_match=0.5", "icd9cm:exact_match=0.8"]


def test_gate_mode_under_xdist(pytester, icd9_codes) -> None:
    result = gate_run(pytester, icd9_codes, "-n", "2", "--medcode-fail-under", "exact_match=0.8")
    assert result.ret == 1
    assert result.parseoutcomes() == {"passed": 15, "mismatched": 5}
    assert last_lines(result.stdout.str(), 2)[0].startswith("medcode gate FAILED")
    assert len(summary_of(pytester)["gate"]["checks"]) == 2


def test_a_run_gated_against_itself_passes(pytester, icd9_codes) -> None:
    assert gate_run(pytester, icd9_codes).ret == 1
    baseline = (pytester.path / "reports" / "latest").resolve()
    result = gate_run(pytester, icd9_codes, "--medcode-baseline", str(baseline))
    assert result.ret == 0
    result.stdout.fnmatch_lines(["PASS regression exact_match ?lookup / icd9cm?: *0 worse / 0 better of 20*"])
    assert summary_of(pytester)["gate"]["checks"][1]["p_value"] == 1.0


def test_junit_carries_the_codes_as_properties(pytester, icd9_codes) -> None:
    import xml.etree.ElementTree as ET

    result = gate_run(pytester, icd9_codes, "--medcode-max-error-rate", "0", "--junitxml", "junit.xml")
    assert result.ret == 0
    suite = ET.parse(pytester.path / "junit.xml").getroot()
    assert suite.find("testsuite").get("failures") == "0"
    cases = {tc.get("name"): {p.get("name"): p.get("value") for p in tc.iter("property")}
             for tc in suite.iter("testcase")}
    wrong = cases["test_code_query[lookup-icd9cm-755.39]"]
    assert {k: wrong[k] for k in ("expected_code", "predicted_code", "valid", "fabricated", "outcome")} == {
        "expected_code": "755.39", "predicted_code": "755.29", "valid": "true", "fabricated": "false",
        "outcome": "incorrect"}
    assert cases["test_code_query[lookup-icd9cm-486]"]["outcome"] == "correct"


def test_summary_carries_the_verdict_and_no_secrets(pytester, icd9_codes, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret-123456")
    url = "https://user:pa55word@llm.example/v1?api_key=sk-query-secret"
    result = gate_run(pytester, icd9_codes, "--medcode-fail-under=exact_match=0.7", "--medcode-api-base", url)
    assert result.ret == 0
    run = (pytester.path / "reports" / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["api_base"] == "https://llm.example/v1"
    assert summary["config"]["gate"] == {
        "active": True, "fail_under": ["exact_match=0.7"], "fail_over": [], "baseline": None, "max_drop": [],
        "alpha": 0.05, "max_error_rate": 0.05, "threshold_from_baseline": False, "carried_threshold": None,
        "threshold_accuracy": 0.95, "release_mismatch": "refuse",
    }
    assert summary["gate"]["passed"] is True and summary["gate"]["reason"].startswith("all 2 checks passed")
    for name in ("summary.json", "report.md", "report.html"):
        text = (run / name).read_text()
        for secret in ("sk-env-secret", "pa55word", "sk-query-secret", "user:"):
            assert secret not in text, (name, secret)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--medcode-fail-under", "exact_mtch=0.4"], "--medcode-fail-under 'exact_mtch=0.4': unknown metric"),
        (["--medcode-fail-under", "fabricated=0.1"], "limit it with --medcode-fail-over fabricated=0.1"),
        (["--medcode-max-drop", "exact_match=2pp"], "--medcode-max-drop needs --medcode-baseline RUN"),
        (["--medcode-baseline", "nowhere"], "--medcode-baseline nowhere: no such run folder or file"),
        (["--medcode-alpha", "0"], "--medcode-alpha 0: must be above 0"),
        (["--medcode-alpha", "x"], "--medcode-alpha 'x': expected a"),
        (["--medcode-max-error-rate", "2"], "--medcode-max-error-rate '2': must be between 0.0 and 1.0"),
    ],
)
def test_bad_gate_options_are_one_line_usage_errors(pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(test_codes=TEST_FILE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--medcode-sample", "1", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], result.stderr.lines


def test_a_baseline_of_another_schema_version_is_a_usage_error(pytester, icd9_codes) -> None:
    gate_run(pytester, icd9_codes)
    run = (pytester.path / "reports" / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "schema_version": 99}))
    result = gate_run(pytester, icd9_codes, "--medcode-baseline", str(run))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --medcode-baseline */summary.json: summary schema version 99, this pytest-medcode reads "
        "version 1; re-run the baseline with this version"
    ])


# -- the scripted model through litellm: the done-when runs --------------------------------


def test_a_model_wrong_on_10_percent_of_1000_cases_fails_the_gate(
    pytester: pytest.Pytester, server: ScriptedServer, icd10_answers: dict[str, str], lookup_run: Run
) -> None:
    server.responder = degrade(mapping_responder(icd10_answers), 0.10, seed=7)
    pytester.makepyfile(test_codes=TEST_FILE)
    result = pytester.runpytest(
        *FAST, "--medcode-report-dir", "reports", "--model", "openai/degraded",
        "--medcode-api-base", server.base_url, "--medcode-system", "icd10cm", "--medcode-sample", "1000",
        "--medcode-baseline", str(lookup_run.folder), "--medcode-max-drop", "exact_match=2pp",
    )
    expected_wrong = sum(is_corrupted(r["description"], 0.10, seed=7) for r in lookup_run.records)
    assert result.ret == 1, result.stdout.str()[-3000:]
    assert result.parseoutcomes() == {"passed": 1000 - expected_wrong, "mismatched": expected_wrong}
    verdict_line = last_lines(result.stdout.str(), 2)[0]
    assert verdict_line.startswith(f"medcode gate FAILED: exact_match openai/degraded / icd10cm: exact match "
                                   f"dropped {expected_wrong / 10:.1f} pp")
    assert "McNemar exact p = " in verdict_line and "< 0.05 and beyond the allowed 2.0 pp" in verdict_line
    check = next(c for c in summary_of(pytester)["gate"]["checks"] if c["kind"] == "regression")
    assert check["p_value"] < 0.05 and check["details"]["lost"] == expected_wrong and not check["passed"]
    result.stdout.fnmatch_lines(["warning: baseline model lookup paired with openai/degraded*"])


def test_one_extra_error_in_a_20_case_run_passes_with_a_power_warning(
    pytester: pytest.Pytester, server: ScriptedServer, icd10_answers: dict[str, str], lookup_run: Run
) -> None:
    pytester.makepyfile(test_codes=TEST_FILE)
    gate_args = (*FAST, "--medcode-report-dir", "reports", "--medcode-system", "icd10cm",
                        "--medcode-sample", "20")
    assert pytester.runpytest(*gate_args).ret == 0
    baseline = (pytester.path / "reports" / "latest").resolve()
    victim = load_run(baseline).records[3]
    knows = mapping_responder(icd10_answers)
    hostile = {victim["description"]: "<script>alert(1)</script>"}
    server.responder = lambda request: hostile.get(request.description) or knows(request)
    result = pytester.runpytest(
        *gate_args, "--model", "openai/tiny", "--medcode-api-base", server.base_url,
        "--medcode-baseline", str(baseline),
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert result.parseoutcomes() == {"passed": 19, "mismatched": 1}
    result.stdout.fnmatch_lines([
        "warning: exact_match openai/tiny / icd10cm: low power: 1 discordant pair among 20 cases*cannot tell*"
    ])
    assert last_lines(result.stdout.str(), 2)[0] == "medcode gate PASSED: all 2 checks passed, 2 warnings"


# -- the rules at their boundaries, on hand-built records ------------------------------------------
# Counts are picked so every observed value is exact in binary floating point (3/4, 1/4, 1/20, 6/100
# as a count of cases): an observed value that *equals* its limit must pass, one case more must fail.


def test_exact_match_exactly_at_the_fail_under_limit_passes() -> None:
    """3 of 4 exact = 0.75 = the limit: "at least 0.75" holds (a strict '>' would fail it)."""
    records = [case(i, exact_match=i < 3) for i in range(4)]
    verdict = evaluate(records, thresholds=parse_thresholds("exact_match=0.75", "under"))
    check = only(verdict, "threshold", "exact_match")
    assert check.observed == 0.75 and check.passed, check_reason(check)
    assert "is at least 75.0%" in check_reason(check)
    # Written as a percentage the limit is the same number.
    assert evaluate(records, thresholds=parse_thresholds("exact_match=75%", "under")).passed
    # One case fewer (2/4) is below it.
    fewer = [case(i, exact_match=i < 2) for i in range(4)]
    assert not evaluate(fewer, thresholds=parse_thresholds("exact_match=0.75", "under")).passed


def test_fabricated_exactly_at_the_fail_over_limit_passes() -> None:
    """1 of 4 fabricated = 0.25 = the limit: "at most 0.25" holds; 2 of 4 does not."""
    records = [case(i, fabricated=i < 1) for i in range(4)]
    check = only(evaluate(records, thresholds=parse_thresholds("fabricated=0.25", "over")), "threshold", "fabricated")
    assert check.observed == 0.25 and check.passed, check_reason(check)
    more = [case(i, fabricated=i < 2) for i in range(4)]
    check = only(evaluate(more, thresholds=parse_thresholds("fabricated=0.25", "over")), "threshold", "fabricated")
    assert check.observed == 0.5 and not check.passed and "is above the limit 25.0%" in check_reason(check)


def test_digit_match_mean_exactly_at_the_limit_passes() -> None:
    """Per-case digit agreement 0.5, 1, 1, 0.5: mean 3/4 = the limit 0.75."""
    records = [case(i, digit_match=v) for i, v in enumerate((0.5, 1.0, 1.0, 0.5))]
    verdict = evaluate(records, thresholds=parse_thresholds("digit_match=0.75", "under"))
    check = only(verdict, "threshold", "digit_match")
    assert check.observed == 0.75 and check.passed, check_reason(check)
    assert not evaluate(records, thresholds=parse_thresholds("digit_match=0.76", "under")).passed


def test_error_rate_exactly_at_the_allowed_rate_passes() -> None:
    """1 failed call in 20 = 5 % = the default allowed rate; 2 in 20 (10 %) fails."""
    one = [case(i, exact_match=True) for i in range(19)] + [{**case(19), "outcome": "error"}]
    check = only(evaluate(one), "errors", "error_rate")
    assert check.observed == 0.05 and check.passed and "1 of 20 calls failed (5.0%), within" in check_reason(check)
    two = [case(i, exact_match=True) for i in range(18)] + [{**case(i), "outcome": "error"} for i in (18, 19)]
    assert not only(evaluate(two), "errors", "error_rate").passed


def test_exact_match_drop_exactly_at_the_margin_passes_even_when_significant() -> None:
    """100 paired cases, 6 lost and 0 gained: a 6-point drop, McNemar exact p = 2 * 0.5**6 = 0.03125
    (significant), but a 6pp margin tolerates it; a 7th lost case (p = 2 * 0.5**7) is a regression."""
    base = [case(i, exact_match=True) for i in range(100)]
    at_margin = [case(i, exact_match=i >= 6) for i in range(100)]
    check = only(evaluate(at_margin, base, max_drops=parse_max_drops("exact_match=6pp")), "regression", "exact_match")
    assert check.p_value == pytest.approx(0.03125) and check.details["significant"]
    assert not check.details["exceeds_margin"] and check.passed, check_reason(check)
    past = [case(i, exact_match=i >= 7) for i in range(100)]
    check = only(evaluate(past, base, max_drops=parse_max_drops("exact_match=6pp")), "regression", "exact_match")
    assert check.p_value == pytest.approx(0.015625) and check.details["exceeds_margin"] and not check.passed


def test_continuous_drop_past_the_margin_with_an_interval_that_includes_zero_passes() -> None:
    """10 paired cases; one falls from 1 to 0, nine are unchanged: mean difference -0.1, past a 0.05 margin.
    A resample misses that case with probability 0.9**10 = 0.35 (> 2.5 %), so the interval's upper end is
    exactly 0: not significant, so not a regression."""
    base = [case(i, digit_match=1.0) for i in range(10)]
    new = [case(i, digit_match=0.0 if i == 0 else 1.0) for i in range(10)]
    check = only(evaluate(new, base, max_drops=parse_max_drops("digit_match=0.05")), "regression", "digit_match")
    assert check.delta == pytest.approx(-0.1) and check.ci is not None
    assert check.ci[1] == 0.0 and check.ci[0] < -0.05
    assert check.details["exceeds_margin"] and not check.details["significant"]
    assert check.passed and "the CI includes 0: not significant" in check_reason(check)


def test_continuous_drop_exactly_at_the_margin_passes_and_just_past_it_fails() -> None:
    """Every case drops by the same amount, so the bootstrap interval is that one value (it excludes 0).
    1 - 0.75 = 0.25 exactly = the margin: tolerated; 0.25 + 1/1024 (also exact in binary): a regression."""
    base = [case(i, digit_match=1.0) for i in range(8)]
    drops = parse_max_drops("digit_match=0.25")
    at = only(evaluate([case(i, digit_match=0.75) for i in range(8)], base, max_drops=drops),
              "regression", "digit_match")
    assert at.delta == -0.25 and at.ci == (-0.25, -0.25)
    assert not at.details["exceeds_margin"] and at.passed, check_reason(at)
    past = only(evaluate([case(i, digit_match=1.0 - 0.25 - 1 / 1024) for i in range(8)], base, max_drops=drops),
                "regression", "digit_match")
    assert past.details["exceeds_margin"] and past.details["significant"] and not past.passed
    assert "the drop is beyond the allowed 25.0 pp and the CI excludes 0" in check_reason(past)


def test_threshold_on_a_mean_uses_the_seeded_bootstrap() -> None:
    """Digit agreement 0.5, 1, 1, 0.5: the bootstrap interval lies within [0.5, 1] (a Wilson interval of
    '3 of 4' would reach down to 0.30). With twelve spread values the interval depends on the seed: it is the
    one stats.bootstrap_mean gives for the run's seed."""
    records = [case(i, digit_match=v) for i, v in enumerate((0.5, 1.0, 1.0, 0.5))]
    ths = parse_thresholds("digit_match=0.6", "under")
    check = only(evaluate(records, thresholds=ths, seed=3), "threshold", "digit_match")
    assert check.ci is not None and 0.5 <= check.ci[0] < check.ci[1] <= 1.0
    spread = [i / 11 for i in range(12)]
    records = [case(i, digit_match=v) for i, v in enumerate(spread)]
    check = only(evaluate(records, thresholds=ths, seed=3), "threshold", "digit_match")
    expected = bootstrap_mean(spread, seed=3)
    assert check.ci == (expected.low, expected.high) != (bootstrap_mean(spread, seed=4).low,
                                                         bootstrap_mean(spread, seed=4).high)
    assert only(evaluate(records, thresholds=ths), "threshold", "digit_match").ci == only(
        evaluate(records, thresholds=ths, seed=0), "threshold", "digit_match").ci  # the default seed is 0


def test_evaluate_checks_its_options_and_applies_every_threshold() -> None:
    records = [case(i, exact_match=True, valid=True) for i in range(4)]
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got"):
            evaluate(records, alpha=alpha)
    for rate in (-0.01, 1.01):
        with pytest.raises(ValueError, match=r"max_error_rate must be in \[0, 1\], got"):
            evaluate(records, max_error_rate=rate)
    assert evaluate(records, max_error_rate=0.0).passed and evaluate(records, max_error_rate=1.0).passed
    assert evaluate(records, alpha=0.999).passed
    # A system-specific limit for another system must not stop the next metric's check.
    ths = parse_thresholds("icd9cm:exact_match=0.5,valid=0.9", "under", ["icd9cm", "icd10cm"])
    verdict = evaluate(records, thresholds=ths)
    assert [c.metric for c in verdict.checks if c.kind == "threshold"] == ["valid"]
    assert verdict_warnings(verdict) == ("threshold icd9cm:exact_match=0.5 matched no cases in this run",)
    empty = evaluate([])
    assert verdict_dict(empty) == {
        "passed": False, "reason": "cases run: no benchmark cases ran, so nothing could be checked", "warnings": [],
        "checks": [{"kind": "cases", "metric": "cases", "scope": "run", "passed": False,
                    "reason": "no benchmark cases ran, so nothing could be checked", "observed": None, "limit": None,
                    "n": 0, "p_value": None, "baseline": None, "delta": None, "ci": None, "warnings": [],
                    "details": {}}]}


def test_gate_spec_evaluates_with_its_own_options() -> None:
    """The spec passes every option on: alpha, error rate, margins, thresholds, and the seed (default 0)."""
    base = [case(i, exact_match=True, digit_match=1.0) for i in range(100)]
    new = [case(i, exact_match=i >= 7, digit_match=0.5 if i < 30 else 1.0) for i in range(99)]
    new.append({**case(99), "outcome": "error"})
    spec = GateSpec(fail_under=parse_thresholds("digit_match=0.9", "under"),
                         max_drops=parse_max_drops("exact_match=6pp,digit_match=0.1"), alpha=0.01,
                         max_error_rate=0.0, active=True)
    direct = evaluate(new, base, thresholds=spec.thresholds, max_drops=spec.max_drops, alpha=0.01, max_error_rate=0.0,
                      seed=0)
    assert verdict_dict(spec.evaluate(new, base)) == verdict_dict(direct)
    assert verdict_dict(spec.evaluate(new, base, seed=5)) == verdict_dict(evaluate(
        new, base, thresholds=spec.thresholds, max_drops=spec.max_drops, alpha=0.01, max_error_rate=0.0, seed=5
    ))
    # At alpha = 0.01, 7 lost of 99 (p = 2 * 0.5**7 = 0.0156) is not significant; 1 failed call of 100 > 0 %.
    assert only(direct, "regression", "exact_match").passed
    assert not only(direct, "errors", "error_rate").passed
    assert only(direct, "threshold", "digit_match").observed == pytest.approx(84 / 99)  # (69 + 30 * 0.5) / 99


def test_a_baseline_without_similarity_scores_is_said() -> None:
    base = [case(i, exact_match=True, digit_match=1.0) for i in range(5)]
    verdict = evaluate(base, base, max_drops=parse_max_drops("meteor=0.02,digit_match=0.01"))
    assert verdict_warnings(verdict) == ("the baseline has no meteor values",)
    assert verdict_warnings(evaluate([{**r, "meteor": 0.5} for r in base], [{**r, "meteor": 0.5} for r in base],
                                     max_drops=parse_max_drops("meteor=0.02"))) == ()


def test_the_error_check_records_its_counts() -> None:
    rows = [case(i, exact_match=True) for i in range(3)] + [{**case(3), "outcome": "error"}]
    check = only(evaluate(rows, max_error_rate=0.25), "errors", "error_rate")
    assert check_dict(check) == {
        "kind": "errors", "metric": "error_rate", "scope": "m / icd10cm", "passed": True,
        "reason": "1 of 4 calls failed (25.0%), within the allowed 25.0%", "observed": 0.25, "limit": 0.25, "n": 4,
        "p_value": None, "baseline": None, "delta": None, "ci": None, "warnings": [], "details": {"errors": 1}}


def test_a_continuous_improvement_is_significant_only_when_its_interval_clears_zero() -> None:
    """Every case up by 0.5: a one-point interval at +0.5, significant. One case of ten up from 0 to 1: the
    interval's lower end is exactly 0 (a resample misses that case with probability 0.9**10 = 0.35): not."""
    base = [case(i, digit_match=0.5) for i in range(8)]
    up = regression_of([case(i, digit_match=1.0) for i in range(8)], base, "digit_match=0.05")
    assert up.passed and up.ci == (0.5, 0.5) and up.details["significant"] is True
    base = [case(i, digit_match=0.0) for i in range(10)]
    one = regression_of([case(i, digit_match=1.0 if i == 0 else 0.0) for i in range(10)], base, "digit_match=0.05")
    assert one.ci is not None and one.ci[0] == 0.0 and one.details["significant"] is False


# -- each rule on its own: the numbers it returns, no sentences ---------------------------------
# The rules called directly, on hand-built rows and pairs; what they say is test_verdict.py's.


def pairs_of(base: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return list(zip(base, new, strict=True))


def test_the_threshold_rule_exactly_at_its_limit_and_with_nothing_to_measure() -> None:
    """3 of 4 exact = 0.75: at a 0.75 limit it passes (and the limit is inside the Wilson interval), at
    0.76 it fails; failed calls are not counted; with no answered case, or no value, nothing is measured."""
    rows = [case(i, exact_match=i < 3) for i in range(4)] + [{**case(4), "outcome": "error"}]
    at = judge_threshold(Threshold("exact_match", 0.75, "under"), rows)
    assert (at.passed, at.estimate, at.n, at.missing, at.limit_inside) == (True, 0.75, 4, None, True)
    assert at.low == pytest.approx(0.300642, abs=1e-6) and at.high == pytest.approx(0.954413, abs=1e-6)
    assert not judge_threshold(Threshold("exact_match", 0.76, "under"), rows).passed
    over = [case(i, fabricated=i < 1) for i in range(4)]
    assert judge_threshold(Threshold("fabricated", 0.25, "over"), over).passed
    assert not judge_threshold(Threshold("fabricated", 0.2499, "over"), over).passed
    unanswered = judge_threshold(Threshold("exact_match", 0.5, "under"), [{**case(0), "outcome": "error"}])
    assert (unanswered.passed, unanswered.n, unanswered.estimate, unanswered.missing) == (False, 0, None, "unanswered")
    assert judge_threshold(Threshold("exact_match", 0.5, "under"), []).missing == "unanswered"
    assert judge_threshold(Threshold("meteor", 0.5, "under"), [case(0)]).missing == "not_computed"
    assert judge_threshold(Threshold("digit_match", 0.5, "under"), [case(0)]).missing == "undefined"
    check = at.check("m / icd10cm")
    assert (check.kind, check.observed, check.limit, check.n) == ("threshold", 0.75, 0.75, 4)
    assert check.ci == (at.low, at.high) and check.finding is at
    assert unanswered.check("s").ci is None and unanswered.check("s").details == {}


def test_the_binary_rule_at_the_margin_at_the_alpha_edge_and_with_no_pairs() -> None:
    """100 pairs, 6 lost: p = 2 * 0.5**6 = 0.03125, a 6.0 pp drop. At alpha equal to the p-value the p-value is
    not below alpha, so not significant; just above, it is. 7 lost is past a 6 pp margin: a regression only when
    significant (alpha above 2 * 0.5**7 = 0.015625)."""
    base = [case(i, exact_match=True) for i in range(100)]
    six = pairs_of(base, [case(i, exact_match=i >= 6) for i in range(100)])
    drop = MaxDrop("exact_match", 0.06)
    p = judge_binary(drop, six, alpha=0.05).test.p_value
    assert p == pytest.approx(0.03125)
    edge = judge_binary(drop, six, alpha=p)
    assert not edge.test.significant and edge.passed
    assert judge_binary(drop, six, alpha=0.0313).test.significant
    at_margin = judge_binary(drop, six, alpha=0.05)
    assert at_margin.test.significant and not at_margin.test.exceeds_margin and at_margin.passed
    assert (at_margin.base_value, at_margin.new_value, at_margin.worsening) == (1.0, 0.94, pytest.approx(0.06))
    seven = pairs_of(base, [case(i, exact_match=i >= 7) for i in range(100)])
    p = judge_binary(drop, seven, alpha=0.05).test.p_value
    assert judge_binary(drop, seven, alpha=p).passed  # past the margin, p not below alpha
    caught = judge_binary(drop, seven, alpha=0.0157)
    assert caught.test.regressed and not caught.passed and not caught.low_power
    assert caught.cases_past_margin == 7  # floor(0.06 * 100) + 1
    none = judge_binary(drop, pairs_of(base[:3], [case(i) for i in range(3)]), alpha=0.05)  # no exact_match values
    assert (none.test.n, none.passed, none.low_power, none.base_value, none.new_value) == (0, False, False, None, None)
    check = none.check("s")
    assert (check.n, check.limit, check.p_value, check.details) == (0, 0.06, None, {})


def test_the_binary_rule_reads_a_lower_is_better_metric_upside_down() -> None:
    """4 of 100 new fabrications: 'not fabricated' fell from 100 % to 96 %, shown as fabricated 0 % -> 4 %."""
    base = [case(i, fabricated=False) for i in range(100)]
    rise = judge_binary(MaxDrop("fabricated", 0.02), pairs_of(base, [case(i, fabricated=i < 4) for i in range(100)]),
                        alpha=0.05)
    assert rise.flipped and (rise.base_value, rise.new_value) == (0.0, pytest.approx(0.04))
    assert rise.worsening == pytest.approx(0.04) and rise.test.lost == 4 and rise.test.exceeds_margin
    assert rise.passed and rise.low_power  # p = 2 * 0.5**4 = 0.125: 'cannot tell'
    assert rise.check("s").delta == pytest.approx(0.04)


def test_the_continuous_rule_at_the_margin_at_the_alpha_edge_and_with_no_pairs() -> None:
    """Constant differences give a one-point interval: a drop of exactly the margin passes, 1/1024 more fails.
    One case of ten falling from 1 to 0: the upper end is exactly 0 at any alpha (a resample misses that case
    with probability 0.9**10 = 0.35), so never significant; its interval is wider than a 0.05 margin."""
    drop = MaxDrop("digit_match", 0.25)
    base = [case(i, digit_match=1.0) for i in range(8)]
    at = judge_continuous(drop, pairs_of(base, [case(i, digit_match=0.75) for i in range(8)]), alpha=0.05)
    assert (at.n, at.base_mean, at.new_mean, at.delta, at.low, at.high) == (8, 1.0, 0.75, -0.25, -0.25, -0.25)
    assert at.significant and not at.exceeds_margin and at.passed and not at.low_power
    past = judge_continuous(drop, pairs_of(base, [case(i, digit_match=0.75 - 1 / 1024) for i in range(8)]), 0.05)
    assert past.exceeds_margin and past.regressed and not past.passed
    ten = [case(i, digit_match=1.0) for i in range(10)]
    one_falls = pairs_of(ten, [case(i, digit_match=0.0 if i == 0 else 1.0) for i in range(10)])
    for alpha in (0.5, 0.05, 0.001):
        noisy = judge_continuous(MaxDrop("digit_match", 0.05), one_falls, alpha=alpha, seed=3)
        assert noisy.high == 0.0 and not noisy.significant and noisy.exceeds_margin and noisy.passed
        assert noisy.low_power and noisy.half_width >= 0.05
    assert judge_continuous(MaxDrop("digit_match", 0.0), one_falls, alpha=0.05).low_power is False  # no margin
    none = judge_continuous(MaxDrop("meteor", 0.02), pairs_of(ten, ten), alpha=0.05)  # no meteor values
    assert (none.n, none.delta, none.passed, none.low_power, none.significant) == (0, None, False, False, False)
    assert (none.check("s").n, none.check("s").ci, none.check("s").details) == (0, None, {})


def test_the_error_rule_exactly_at_the_allowed_rate_and_on_no_rows() -> None:
    one = [case(i) for i in range(19)] + [{**case(19), "outcome": "error"}]
    at = judge_errors(one, 0.05)
    assert (at.n, at.errors, at.rate, at.passed) == (20, 1, 0.05, True)
    assert not judge_errors(one, 0.0499).passed
    assert judge_errors([case(0)], 0.0).passed
    empty = judge_errors([], 0.0)
    assert (empty.n, empty.rate, empty.passed) == (0, 0.0, True)
    assert at.check("s").details == {"errors": 1} and at.check("s").observed == 0.05


def test_a_check_carries_the_result_it_was_made_from() -> None:
    """The verdict's checks hold the rules' results: their numbers are the check's, with no sentence needed."""
    records = [case(i, exact_match=i < 3) for i in range(4)]
    verdict = evaluate(records, [case(i, exact_match=True) for i in range(4)],
                       thresholds=parse_thresholds("exact_match=0.75", "under"))
    kinds = {c.kind: type(c.finding) for c in verdict.checks}
    assert kinds == {"errors": ErrorRate, "threshold": ThresholdResult, "regression": BinaryRegression}
    regression = only(verdict, "regression", "exact_match").finding
    assert isinstance(regression, BinaryRegression) and (regression.test.lost, regression.test.n) == (1, 4)
    assert verdict.notes == () and evaluate([]).checks[0].finding == NoCases()
