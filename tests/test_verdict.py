"""The gate's verdict as text (reports/verdict.py): each check's reason and warnings, the verdict's reason,
the terminal's lines and a report's table cells. Verdicts come from the gate on hand-built cases; the
same sentences are what summary.json stores."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gate_helpers import case, only, regression_of
from pytest_medcode.reports.verdict import (
    all_warnings,
    check_cells,
    check_dict,
    check_reason,
    check_warnings,
    note_text,
    render_verdict,
    verdict_dict,
    verdict_reason,
    verdict_warnings,
)
from pytest_medcode.results.gate import (
    BinaryRegression,
    ContinuousRegression,
    ErrorRate,
    GateSpec,
    NoCases,
    Note,
    PairingFailed,
    ThresholdResult,
    Verdict,
    evaluate,
)
from pytest_medcode.results.rules import MaxDrop, Threshold, parse_max_drops, parse_thresholds
from pytest_medcode.results.stats import PairedResult, paired_bootstrap_delta, paired_exact_match_test
from pytest_medcode.vocabulary import metric


def test_report_rows_and_the_saved_options_of_the_gate() -> None:
    """What report.md/report.html and summary.json show of a verdict, on hand-made checks."""
    records = [case(i, exact_match=i < 3) for i in range(4)] + [{**case(4), "outcome": "error"}]
    verdict = evaluate(records, [case(i, exact_match=True) for i in range(5)],
                       thresholds=parse_thresholds("exact_match=0.8", "under"),
                       max_drops=parse_max_drops("exact_match=50pp"), max_error_rate=0.25)
    rows = [check_cells(check_dict(c)) for c in verdict.checks]
    by_kind = {r["check"]: r for r in rows}
    # 1 failed call of 5 = 20.0 %, within 25 %; 3 of 4 answered exact = 75.0 %, below 80 %.
    assert by_kind["errors"] == {"result": "pass", "check": "errors", "metric": "error_rate", "scope": "m / icd10cm",
                                 "observed": "20.0%", "baseline": "-", "p": "-",
                                 "reason": "1 of 5 calls failed (20.0%), within the allowed 25.0%"}
    assert by_kind["threshold"]["result"] == "FAIL" and by_kind["threshold"]["observed"] == "75.0%"
    # Paired on the 4 answered cases: 1 lost, 0 gained, p = 1.0 (McNemar, one discordant pair).
    regression = by_kind["regression"]
    assert (regression["result"], regression["observed"], regression["baseline"], regression["p"]) == (
        "pass", "75.0%", "100.0%", "1")
    meteor = check_cells({"kind": "regression", "metric": "meteor", "scope": "s", "passed": False,
                               "observed": 0.61234, "baseline": 0.7, "p_value": 0.000123456, "reason": "r"})
    assert (meteor["observed"], meteor["baseline"], meteor["p"], meteor["result"]) == ("0.612", "0.700", "0.000123",
                                                                                      "FAIL")
    spec = GateSpec(fail_under=parse_thresholds("icd10cm:exact_match=0.3", "under"),
                         fail_over=parse_thresholds("fabricated=15%", "over"), baseline=Path("ci/base"),
                         max_drops=parse_max_drops("exact_match=2pp,meteor=0.02"), alpha=0.01, max_error_rate=0.1,
                         active=True)
    assert spec.to_dict() == {
        "active": True, "fail_under": ["icd10cm:exact_match=0.3"], "fail_over": ["fabricated=0.15"],
        "baseline": "ci/base", "max_drop": ["exact_match=2pp", "meteor=0.02"], "alpha": 0.01, "max_error_rate": 0.1,
        "threshold_from_baseline": False, "carried_threshold": None, "threshold_accuracy": 0.95,
        "release_mismatch": "refuse",
    }
    assert GateSpec().to_dict()["baseline"] is None


def test_render_verdict_lines() -> None:
    """Error-rate checks that pass fold into one line (0 % and 1 in 20 = 5 %, at the limit); then the threshold
    checks, the warnings, and the verdict last. Wilson for 19 of 19: low = 0.8318 (z²/n = 0.20218, centre
    0.91591, half 0.08409), above the 80 % limit, so no warning there."""
    records = [case(i, exact_match=i < 3) for i in range(4)]
    records += [{**case(i, exact_match=True), "system": "icd9cm"} for i in range(19)]
    records += [{**case(19), "system": "icd9cm", "outcome": "error"}]
    verdict = evaluate(records, thresholds=parse_thresholds("exact_match=0.8", "under"))
    failing = "exact match 75.0% (95% CI 30.1%–95.4%, n=4) is below the limit 80.0%"
    assert render_verdict(verdict) == [
        f"FAIL threshold exact_match [m / icd10cm]: {failing}",
        "PASS threshold exact_match [m / icd9cm]: exact match 100.0% (95% CI 83.2%–100.0%, n=19) is at least 80.0%",
        "PASS errors: failed calls within the allowed 5.0% in 2 groups (worst 5.0%)",
        "warning: exact_match m / icd10cm: the limit 80.0% lies inside the 95% CI (30.1%–95.4%): a re-run could flip "
        "this check",
        f"medcode gate FAILED: exact_match m / icd10cm: {failing}",
    ]
    one_group = evaluate(records[4:], thresholds=parse_thresholds("exact_match=0.8", "under"))
    assert render_verdict(one_group)[-2:] == [
        "PASS errors: failed calls within the allowed 5.0% in 1 group (worst 5.0%)",
        "medcode gate PASSED: all 2 checks passed",
    ]


def test_value_formats() -> None:
    assert [metric("exact_match").format(v) for v in (None, float("nan"), 0.1234)] == ["-", "-", "12.3%"]
    assert metric("bertscore").format(0.91234) == "0.912"
    errors = {"kind": "errors", "metric": "error_rate", "scope": "s", "passed": True, "reason": "r"}
    assert check_cells({**errors, "observed": None})["observed"] == "0.0%"
    assert check_cells({**errors, "observed": 0.0})["observed"] == "0.0%"
    expected = "'exact_match=2%': write percentage points, e.g. 2pp, or a fraction, e.g. 0.02"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        parse_max_drops("exact_match=2%")
    with pytest.raises(ValueError, match=r"^direction must be 'under' or 'over', got 'sideways'$"):
        parse_thresholds("exact_match=0.5", "sideways")


# -- each rule's full account, hand-computed -------------------------------------------------------
# What summary.json, report.md and the terminal say is part of the product: these pin every field and the
# reason's wording for each branch, with p-values and intervals worked out by hand in the comments.

NOTE = "this pass means 'cannot tell', not 'no drop'"


def test_binary_regression_caught_reads_and_records_everything() -> None:
    """100 pairs, 7 lost: 7.0 pp past a 6 pp margin, McNemar p = 2 * 0.5**7 = 0.015625 -> '0.016'."""
    base = [case(i, exact_match=True) for i in range(100)]
    new = [case(i, exact_match=i >= 7) for i in range(100)]
    check = regression_of(new, base, "exact_match=6pp")
    assert check_dict(check) == {
        "kind": "regression", "metric": "exact_match", "scope": "m / icd10cm", "passed": False,
        "reason": "exact match dropped 7.0 pp (93.0% vs 100.0% in the baseline; 7 worse / 0 better of 100 paired "
                  "cases); McNemar exact p = 0.016 < 0.05 and beyond the allowed 6.0 pp",
        "observed": 0.93, "limit": 0.06, "n": 100, "p_value": pytest.approx(0.015625), "baseline": 1.0,
        "delta": pytest.approx(-0.07), "ci": None, "warnings": [],
        "details": {"test": "mcnemar_exact", "lost": 7, "gained": 0, "alpha": 0.05, "significant": True,
                    "exceeds_margin": True, "underpowered": False, "min_detectable_drop": 0.07},
    }


def test_binary_regression_beyond_the_margin_on_one_pair_is_a_low_power_pass() -> None:
    """10 pairs, 1 lost: 10 pp past 2 pp, but one discordant pair has p = 1 and no split of 1 pair can be
    significant; a 2 pp margin on 10 cases means k = 1 case."""
    base = [case(i, exact_match=True) for i in range(10)]
    check = regression_of([case(i, exact_match=i > 0) for i in range(10)], base, "exact_match=2pp")
    assert check.passed and check.p_value == 1.0
    assert check_reason(check) == (
        "exact match dropped 10.0 pp (90.0% vs 100.0% in the baseline; 1 worse / 0 better of 10 "
        "paired cases); beyond the allowed 2.0 pp but not significant (McNemar exact p = 1.000 "
        "≥ 0.05)")
    assert check_warnings(check) == (
        "low power: 1 discordant pair among 10 cases; a worsening of 1 case (just past the "
        f"allowed 2.0 pp) could not reach p < 0.05 — no drop could reach significance; {NOTE}",)


def test_binary_regression_low_power_warning_in_the_plural_and_with_a_detectable_drop() -> None:
    """50 pairs, 2 lost: p = 2 * 0.25 = 0.5; k = floor(0.02 * 50) + 1 = 2 cases; 2 pairs can never reach p < 0.05.
    Then 100 pairs, 3 lost and 3 gained: no net change, p = 1; 6 discordant pairs can show 6 lost / 0 gained
    (p = 2/64 = 0.031), a 6.0 pp drop; a 2 pp margin's k = 3 cases cannot (4/1, p = 0.375)."""
    base = [case(i, exact_match=True) for i in range(50)]
    check = regression_of([case(i, exact_match=i >= 2) for i in range(50)], base, "exact_match=2pp")
    assert check_warnings(check) == (
        "low power: 2 discordant pairs among 50 cases; a worsening of 2 cases (just past the "
        f"allowed 2.0 pp) could not reach p < 0.05 — no drop could reach significance; {NOTE}",)
    assert "McNemar exact p = 0.500 ≥ 0.05" in check_reason(check)
    base = [case(i, exact_match=i >= 3) for i in range(100)]
    new = [case(i, exact_match=not 3 <= i < 6) for i in range(100)]
    check = regression_of(new, base, "exact_match=2pp")
    assert check.passed and (check.details["lost"], check.details["gained"]) == (3, 3)
    assert check_reason(check) == (
        "exact match 97.0% vs 97.0% in the baseline (3 worse / 3 better of 100 paired cases); "
        "McNemar exact p = 1.000; allowed 2.0 pp")
    assert check_warnings(check) == (
        "low power: 6 discordant pairs among 100 cases; a worsening of 3 cases (just past the "
        "allowed 2.0 pp) could not reach p < 0.05 — the smallest drop this churn could show is "
        f"6.0 pp; {NOTE}",)


def test_binary_regression_significant_but_within_the_margin_and_a_fabrication_rise() -> None:
    """1,000 pairs, 10 lost: p = 2 * 0.5**10 = 0.00195 -> '0.002', a 1.0 pp drop within 2 pp. Then fabricated:
    4 of 100 new fabrications is a 4.0 pp rise, p = 2 * 0.5**4 = 0.125."""
    base = [case(i, exact_match=True) for i in range(1000)]
    check = regression_of([case(i, exact_match=i >= 10) for i in range(1000)], base, "exact_match=2pp")
    assert check.passed and check_warnings(check) == ()
    assert check_reason(check) == (
        "exact match dropped 1.0 pp (99.0% vs 100.0% in the baseline; 10 worse / 0 better of "
        "1000 paired cases); significant (McNemar exact p = 0.002) but within the allowed 2.0 pp")
    base = [case(i, fabricated=False) for i in range(100)]
    check = regression_of([case(i, fabricated=i < 4) for i in range(100)], base, "fabricated=2pp")
    assert check_reason(check).startswith(
        "fabricated rose 4.0 pp (4.0% vs 0.0% in the baseline; 4 worse / 0 better of 100")
    assert (check.observed, check.baseline, check.delta) == (pytest.approx(0.04), 0.0, pytest.approx(0.04))
    # Cases with the metric missing on either side are left out of the pairs; none left is a failed check.
    holes = [case(i, fabricated=None) if i < 30 else case(i, fabricated=False) for i in range(100)]
    assert regression_of(holes, base, "fabricated=2pp").n == 70
    none = regression_of([case(i, fabricated=None) for i in range(5)], base[:5], "fabricated=2pp")
    assert check_dict(none) == {
        "kind": "regression", "metric": "fabricated", "scope": "m / icd10cm", "passed": False,
        "reason": "no cases in common with the baseline to compare", "observed": None, "limit": 0.02, "n": 0,
        "p_value": None, "baseline": None, "delta": None, "ci": None, "warnings": [], "details": {}}


def test_continuous_regression_accounts_for_every_branch() -> None:
    """Constant differences give a one-point interval (every resample has the same mean)."""
    base = [case(i, digit_match=1.0) for i in range(8)]
    caught = regression_of([case(i, digit_match=0.5) for i in range(8)], base, "digit_match=0.25")
    assert check_dict(caught) == {
        "kind": "regression", "metric": "digit_match", "scope": "m / icd10cm", "passed": False,
        "reason": "digit match 50.0% vs 100.0% in the baseline (Δ -50.0 pp, 95% paired bootstrap CI -50.0 pp to "
                  "-50.0 pp, 8 paired cases); the drop is beyond the allowed 25.0 pp and the CI excludes 0",
        "observed": 0.5, "limit": 0.25, "n": 8, "p_value": None, "baseline": 1.0, "delta": -0.5,
        "ci": [-0.5, -0.5], "warnings": [],
        "details": {"test": "paired_bootstrap", "alpha": 0.05, "significant": True, "exceeds_margin": True, "seed": 0},
    }
    within = regression_of([case(i, digit_match=0.875) for i in range(8)], base, "digit_match=0.25")
    assert within.passed and check_reason(within).endswith("8 paired cases); allowed 25.0 pp")
    # One case of ten falls from 1 to 0: Δ -0.1, upper end 0 (see above); the interval is wider than the margin.
    base = [case(i, digit_match=1.0) for i in range(10)]
    noisy = regression_of([case(i, digit_match=0.0 if i == 0 else 1.0) for i in range(10)], base, "digit_match=0.05")
    assert noisy.ci is not None and noisy.ci[1] == 0.0
    assert check_reason(noisy).endswith("; beyond the allowed 5.0 pp but the CI includes 0: not significant")
    half = (noisy.ci[1] - noisy.ci[0]) / 2
    assert check_warnings(noisy) == (
        f"low power: the CI half-width {100 * half:.1f} pp is not below the allowed drop 5.0 pp,"
        " so a drop just past it could not be told from noise",)
    # METEOR is on its own scale (3 decimals), and its interval follows --medcode-alpha and the seed.
    base = [case(i, meteor=v) for i, v in enumerate((0.9, 0.8, 0.7, 0.6, 0.5, 0.4))]
    new = [case(i, meteor=v) for i, v in enumerate((0.7, 0.8, 0.4, 0.6, 0.1, 0.4))]  # Δ -(0.2+0.3+0.4)/6 = -0.15
    check = regression_of(new, base, "meteor=0.02", alpha=0.2, seed=7)
    expected = paired_bootstrap_delta([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.7, 0.8, 0.4, 0.6, 0.1, 0.4],
                                      confidence=0.8, seed=7)
    assert check.delta == pytest.approx(-0.15) and check.ci == (expected.low, expected.high)
    assert "(Δ -0.150, 80% paired bootstrap CI " in check_reason(check) and "allowed 0.020" in check_reason(check)
    assert (check.details["alpha"], check.details["seed"]) == (0.2, 7)
    missing = regression_of([case(i) for i in range(3)], base[:3], "meteor=0.02")
    assert check_reason(missing) == (
        "no cases with meteor in both runs (the metric was not computed; install the 'metrics' "
        "extra)") and (missing.n, missing.limit, missing.passed) == (0, 0.02, False)
    missing = regression_of([case(i) for i in range(3)], [case(i) for i in range(3)], "digit_match=0.02")
    assert check_reason(missing) == "no cases in common with the baseline to compare"


def test_threshold_check_records_its_wilson_interval_and_warns_when_the_limit_is_inside() -> None:
    """3 of 4 exact. Wilson 95 %: z = 1.959964, z²/n = 0.960365, centre = (0.75 + 0.480183) / 1.960365 = 0.627528,
    half = z / 1.960365 * sqrt(0.75 * 0.25 / 4 + z² / 64) = 0.999796 * 0.326952 = 0.326885
    -> 0.300642 to 0.954413 (30.1 %-95.4 %); 75 % lies inside."""
    records = [case(i, exact_match=i < 3) for i in range(4)]
    verdict = evaluate(records, thresholds=parse_thresholds("exact_match=0.75", "under"))
    check = only(verdict, "threshold", "exact_match")
    assert check.ci is not None and check.ci == pytest.approx((0.300642, 0.954413), abs=1e-6)
    assert check_reason(check) == "exact match 75.0% (95% CI 30.1%–95.4%, n=4) is at least 75.0%"
    assert check_warnings(check) == (
        "the limit 75.0% lies inside the 95% CI (30.1%–95.4%): a re-run could flip this check",)
    assert (check.n, check.limit, check.details) == (4, 0.75, {"direction": "under", "limit_scope": "all systems"})
    # At an end of the interval the limit is not inside it: 4 of 4 has a Wilson upper bound of exactly 1.
    full = [case(i, exact_match=True) for i in range(4)]
    check = only(evaluate(full, thresholds=parse_thresholds("exact_match=1", "under")), "threshold", "exact_match")
    assert check.passed and check_warnings(check) == () and check.ci is not None and check.ci[1] == 1.0
    # 0 of 4 fabricated has a lower bound of exactly 0: a limit of 0 is not inside either.
    clean = [case(i, fabricated=False) for i in range(4)]
    check = only(evaluate(clean, thresholds=parse_thresholds("fabricated=0", "over")), "threshold", "fabricated")
    assert check.passed and check_warnings(check) == () and check_reason(check).endswith("is at most 0.0%")
    assert check.details == {"direction": "over", "limit_scope": "all systems"}


def test_threshold_without_values_fails_and_says_why() -> None:
    errors = [{**case(i), "outcome": "error"} for i in range(3)]
    check = only(evaluate(errors, thresholds=parse_thresholds("exact_match=0.5", "under"), max_error_rate=1.0),
                 "threshold", "exact_match")
    assert check_dict(check) == {
        "kind": "threshold", "metric": "exact_match", "scope": "m / icd10cm", "passed": False,
        "reason": "no answered cases to measure", "observed": None, "limit": 0.5, "n": 0, "p_value": None,
        "baseline": None, "delta": None, "ci": None, "warnings": [], "details": {}}
    check = only(evaluate(errors, thresholds=parse_thresholds("meteor=0.5", "under"), max_error_rate=1.0),
                 "threshold", "meteor")
    assert check_reason(check) == "no answered cases to measure"
    answered = [case(i, exact_match=True) for i in range(3)]
    check = only(evaluate(answered, thresholds=parse_thresholds("meteor=0.5", "under")), "threshold", "meteor")
    assert check_reason(check) == (
        "no meteor values in the records (the metric was not computed; install the 'metrics' "
        "extra)")
    check = only(evaluate(answered, thresholds=parse_thresholds("digit_match=0.5", "under")), "threshold",
                 "digit_match")
    assert check_reason(check) == ("no digit_match values: not defined for this system (scope the limit, e.g. "
                            "SYSTEM:digit_match)")  # a core metric: not the install hint
    check = only(evaluate([{**r, "closeness": None} for r in answered],
                          thresholds=parse_thresholds("closeness=0.5", "under")), "threshold", "closeness")
    assert not check.passed and "closeness values: not defined for this system" in check_reason(check)


def test_similarity_thresholds_read_on_their_own_scale_and_odd_values_are_left_out() -> None:
    """METEOR 0.5 and 0.7 (mean 0.6) against 0.65: shown with 3 decimals, not as percentages; a NaN score is
    no score; a tiny p-value is written in scientific notation (2 * 0.5**30 = 1.9e-09)."""
    records = [case(0, meteor=0.5), case(1, meteor=0.7), case(2, meteor=float("nan"))]
    check = only(evaluate(records, thresholds=parse_thresholds("meteor=0.65", "under")), "threshold", "meteor")
    assert check.n == 2 and check.observed == pytest.approx(0.6)
    assert check_reason(check) == "meteor 0.600 (95% CI 0.500–0.700, n=2) is below the limit 0.650"
    assert check_warnings(check) == (
        "the limit 0.650 lies inside the 95% CI (0.500–0.700): a re-run could flip this check",)
    base = [case(i, exact_match=True) for i in range(1000)]
    drop = regression_of([case(i, exact_match=i >= 30) for i in range(1000)], base, "exact_match=5pp")
    assert check_reason(drop).endswith("; significant (McNemar exact p = 1.9e-09) but within the allowed 5.0 pp")
    better = regression_of(base, [case(i, exact_match=i >= 30) for i in range(1000)], "exact_match=2pp")
    assert check_reason(better) == (
        "exact match 100.0% vs 97.0% in the baseline (0 worse / 30 better of 1000 paired cases); "
        "McNemar exact p = 1.9e-09; allowed 2.0 pp")


# -- the sentences from hand-made results: wording apart from the statistics -----------------------


def paired(n: int, lost: int, gained: int, p: float, *, margin: float = 0.02, alpha: float = 0.05,
           min_detectable: float | None = None) -> PairedResult:
    """A McNemar result of the rule's shape, made by hand (its flags set simply from the counts and p)."""
    exceeds = lost - gained > margin * n
    return PairedResult(n, 1.0, 1.0 + (gained - lost) / n, (gained - lost) / n, lost, gained, p,
                        p < alpha, exceeds, exceeds and p < alpha, p >= alpha, min_detectable, margin, alpha)


def test_a_threshold_result_is_worded_from_its_numbers_alone() -> None:
    """No records: the result's estimate, interval and n are all the sentence needs."""
    th = Threshold("exact_match", 0.8, "under")
    result = ThresholdResult(th, n=50, estimate=0.9, low=0.78, high=0.96)
    check = result.check("m / icd10cm")
    assert check_reason(check) == "exact match 90.0% (95% CI 78.0%–96.0%, n=50) is at least 80.0%"
    assert check_warnings(check) == (
        "the limit 80.0% lies inside the 95% CI (78.0%–96.0%): a re-run could flip this check",)
    below = ThresholdResult(th, n=50, estimate=0.7, low=0.56, high=0.81).check("s")
    assert check_reason(below) == "exact match 70.0% (95% CI 56.0%–81.0%, n=50) is below the limit 80.0%"
    over = ThresholdResult(Threshold("fabricated", 0.1, "over"), n=10, estimate=0.0, low=0.0, high=0.28)
    assert check_reason(over.check("s")) == "fabricated 0.0% (95% CI 0.0%–28.0%, n=10) is at most 10.0%"
    assert check_reason(ThresholdResult(Threshold("micro_f1", 0.5, "under"), n=3, missing="no_codes").check("s")) == (
        "no codes to measure micro_f1 on")


def test_regression_results_are_worded_from_their_numbers_alone() -> None:
    drop = MaxDrop("exact_match", 0.02)
    caught = BinaryRegression(drop, paired(200, 12, 2, 0.0129))
    assert check_reason(caught.check("s")) == (
        "exact match dropped 5.0 pp (95.0% vs 100.0% in the baseline; 12 worse / 2 better of 200 paired cases); "
        "McNemar exact p = 0.013 < 0.05 and beyond the allowed 2.0 pp")
    assert check_warnings(caught.check("s")) == ()
    noisy = BinaryRegression(drop, paired(40, 2, 0, 0.5, min_detectable=0.125))
    assert check_warnings(noisy.check("s")) == (
        "low power: 2 discordant pairs among 40 cases; a worsening of 1 case (just past the allowed 2.0 pp) could "
        "not reach p < 0.05 — the smallest drop this churn could show is 12.5 pp; this pass means 'cannot tell', "
        "not 'no drop'",)
    assert check_reason(BinaryRegression(drop, paired_exact_match_test([], [], 0.02)).check("s")) == (
        "no cases in common with the baseline to compare")
    score = ContinuousRegression(MaxDrop("meteor", 0.02), alpha=0.1, seed=0, n=12, base_mean=0.7, new_mean=0.65,
                                 delta=-0.05, low=-0.08, high=-0.02)
    assert check_reason(score.check("s")) == (
        "meteor 0.650 vs 0.700 in the baseline (Δ -0.050, 90% paired bootstrap CI -0.080 to -0.020, 12 paired "
        "cases); the drop is beyond the allowed 0.020 and the CI excludes 0")
    assert check_reason(ContinuousRegression(MaxDrop("digit_match", 0.02), 0.05, 0).check("s")) == (
        "no cases in common with the baseline to compare")


def test_notes_and_the_verdict_reason_are_worded_here() -> None:
    assert [note_text(Note(kind, "x")) for kind in ("pairing", "unmatched_threshold", "not_in_baseline",
                                                    "baseline_lacks_metric")] == [
        "x", "threshold x matched no cases in this run", "x: not in the baseline, so not checked for regressions",
        "the baseline has no x values"]
    failing = ErrorRate(10, 5, 0.05)
    verdict = Verdict(False, (failing.check("a"), failing.check("b"), ErrorRate(10, 0, 0.05).check("c")),
                      (Note("pairing", "same"), Note("pairing", "same")))
    assert verdict_reason(verdict) == (
        "error_rate a: 5 of 10 calls failed (50.0%), above the allowed 5.0% (and 1 more failed check)")
    assert verdict_warnings(verdict) == ("same",) and all_warnings(verdict) == ("same",)
    assert verdict_dict(verdict)["reason"] == verdict_reason(verdict)
    passing = Verdict(True, (ErrorRate(10, 0, 0.05).check("c"),), (Note("unmatched_threshold", "valid=0.9"),))
    assert verdict_reason(passing) == "all 1 check passed, 1 warning"
    assert check_reason(NoCases().check("run")) == "no benchmark cases ran, so nothing could be checked"
    assert check_reason(PairingFailed("two cases with model=m").check("run")) == "two cases with model=m"


def test_the_gate_alone_has_its_numbers_and_no_words() -> None:
    """results/ sits below reports/: the gate judges on its own, loads no reports module, and its verdict holds
    numbers and notes only; the sentences are this module's functions of it."""
    script = (
        "import sys\n"
        "from pytest_medcode.results.gate import evaluate\n"
        "v = evaluate([])\n"
        "print(v.passed, v.checks[0].kind, v.checks[0].finding)\n"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_medcode.reports')))\n"
        "words = ('reason', 'warnings', 'all_warnings', 'to_dict')\n"
        "print([a for a in words if hasattr(v, a) or hasattr(v.checks[0], a)])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == ["False cases NoCases()", "[]", "[]"], proc.stderr
    assert verdict_reason(evaluate([])) == "cases run: no benchmark cases ran, so nothing could be checked"
