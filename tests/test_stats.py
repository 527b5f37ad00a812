"""Tests for pytest_medcode.results.stats: intervals against known values, exact McNemar against exact arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_medcode.results.stats import (
    Estimate,
    PairedResult,
    bootstrap_mean,
    bootstrap_ratio,
    mcnemar_exact,
    mcnemar_min_detectable,
    paired_bootstrap_delta,
    paired_exact_match_test,
    underpowered,
    wilson,
)


def exact_mcnemar(b: int, c: int) -> float:
    """Reference: two-sided exact binomial tail with rational arithmetic."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(Fraction(math.comb(n, k), 2**n) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), 2 * tail))


# ---------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (3, 5, 0.230724, 0.882379),  # the slide's 3/5 exact-match example
        (0, 10, 0.0, 0.277533),
        (10, 10, 0.722467, 1.0),
        (1, 2, 0.094531, 0.905469),
    ],
)
def test_wilson_known_values(successes: int, n: int, low: float, high: float) -> None:
    est = wilson(successes, n)
    assert est.value == pytest.approx(successes / n)
    assert est.low == pytest.approx(low, abs=1e-6)
    assert est.high == pytest.approx(high, abs=1e-6)
    assert est.n == n


def test_wilson_reproduces_paper_gpt4_icd10() -> None:
    # GPT-4 (Nov), ICD-10-CM: 33.9% (33.2-34.6%) of 15,950 codes.
    est = wilson(round(0.339 * 15950), 15950)
    assert round(est.value * 100, 1) == 33.9
    assert round(est.low * 100, 1) == 33.2
    assert round(est.high * 100, 1) == 34.6


def test_wilson_confidence_widens_interval() -> None:
    narrow, wide = wilson(40, 100, 0.80), wilson(40, 100, 0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_wilson_empty_and_invalid() -> None:
    assert wilson(0, 0) == Estimate(None, None, None, 0)
    assert wilson(0, 0).to_dict() == {"value": None, "low": None, "high": None, "n": 0}
    with pytest.raises(ValueError, match="successes <= n"):
        wilson(6, 5)
    with pytest.raises(ValueError, match="successes <= n"):
        wilson(-1, 5)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        wilson(1, 5, confidence=1.0)


@given(st.integers(1, 100_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_bounds_contain_point_and_stay_in_unit_interval(case: tuple[int, int]) -> None:
    successes, n = case
    est = wilson(successes, n)
    assert 0.0 <= est.low <= est.value <= est.high <= 1.0
    assert est.low < est.high


# ---------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = np.random.default_rng(7).random(500).tolist()
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    assert bootstrap_mean(values, seed=3) != bootstrap_mean(values, seed=4)


def test_bootstrap_matches_normal_theory_on_a_large_sample() -> None:
    values = np.random.default_rng(1).random(10_000)
    est = bootstrap_mean(values.tolist())
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert est.value == pytest.approx(values.mean())
    assert est.low < est.value < est.high
    assert est.high - est.low == pytest.approx(2 * 1.959964 * se, rel=0.1)


def test_bootstrap_coverage_is_near_nominal() -> None:
    # 200 samples of 60 draws from Beta(2, 5) (true mean 2/7): a 90% interval should cover ~180 times.
    rng = np.random.default_rng(11)
    covered = 0
    for seed in range(200):
        est = bootstrap_mean(rng.beta(2, 5, size=60).tolist(), confidence=0.90, resamples=500, seed=seed)
        covered += est.low <= 2 / 7 <= est.high
    assert 160 <= covered <= 196


@pytest.mark.parametrize("levels", [2, 8])
def test_bootstrap_of_few_distinct_values_matches_normal_theory(levels: int) -> None:
    """Digit agreement and similar per-case values take a handful of values; those are resampled by
    counts (multinomial). The interval must still be the bootstrap's: ~mean ± 1.96 SE, and cover."""
    rng = np.random.default_rng(5)
    values = rng.integers(0, levels, size=75_000) / (levels - 1)
    est = bootstrap_mean(values.tolist())
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert est.value == pytest.approx(values.mean())
    assert est.high - est.low == pytest.approx(2 * 1.959964 * se, rel=0.1)
    assert est == bootstrap_mean(values.tolist())  # seeded
    covered = 0
    for seed in range(200):  # 90 % intervals of 400 draws from 0/1 with p = 0.3: ~180 cover 0.3
        sample = (rng.random(400) < 0.3).astype(float)
        est = bootstrap_mean(sample.tolist(), confidence=0.90, resamples=500, seed=seed)
        covered += est.low <= 0.3 <= est.high
    assert 160 <= covered <= 196


def test_bootstrap_handles_75k_values_in_bounded_chunks() -> None:
    values = np.random.default_rng(2).random(75_000)
    est = bootstrap_mean(values, resamples=300)
    assert est.n == 75_000
    assert est.low < values.mean() < est.high
    assert est.high - est.low < 0.01


def test_bootstrap_edge_cases() -> None:
    assert bootstrap_mean([]) == Estimate(None, None, None, 0)
    assert bootstrap_mean([0.4]) == Estimate(0.4, 0.4, 0.4, 1)
    assert bootstrap_mean([1.0] * 50) == Estimate(1.0, 1.0, 1.0, 50)
    with pytest.raises(ValueError, match="NaN or infinite"):
        bootstrap_mean([0.1, float("nan")])
    with pytest.raises(ValueError, match="resamples must be >= 1"):
        bootstrap_mean([0.1, 0.2], resamples=0)


def test_paired_bootstrap_delta() -> None:
    rng = np.random.default_rng(5)
    base = rng.random(2_000)
    new = base - 0.05 + rng.normal(0, 0.01, size=base.size)
    est = paired_bootstrap_delta(base.tolist(), new.tolist())
    assert est.value == pytest.approx(float((new - base).mean()))
    assert est.value == pytest.approx(-0.05, abs=1e-3)
    assert est.low < est.value < est.high
    assert est.high < 0  # a clear drop: the whole interval is below zero
    # Pairing matters: unpaired intervals of these noisy runs would overlap; the paired one is narrow.
    assert est.high - est.low < 0.002
    assert paired_bootstrap_delta(base.tolist(), new.tolist(), seed=9) == paired_bootstrap_delta(
        base.tolist(), new.tolist(), seed=9
    )
    with pytest.raises(ValueError, match="paired sequences differ in length"):
        paired_bootstrap_delta([0.1, 0.2], [0.1])


# ---------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 5, 0.0625),  # 2 * (1/2)^5
        (5, 0, 0.0625),
        (1, 9, 22 / 1024),  # 2 * (1 + 10) / 2^10 ~= 0.0215
        (0, 6, 0.03125),
        (3, 3, 1.0),
        (4, 5, 1.0),
        (0, 0, 1.0),
        (0, 1, 1.0),
    ],
)
def test_mcnemar_exact_hand_computed(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_exact_large_counts_are_finite() -> None:
    assert mcnemar_exact(50_000, 50_000) == 1.0
    p = mcnemar_exact(49_000, 51_000)
    # Normal approximation: z = 2000 / sqrt(100000) = 6.32 -> p ~ 2.5e-10.
    assert 1e-10 < p < 5e-10
    assert mcnemar_exact(1, 99_999) == 0.0  # underflows to zero, no overflow or NaN
    # Exact value by integer arithmetic: 2 * sum(C(100000, k), k <= 49990) / 2**100000.
    assert mcnemar_exact(49_990, 50_010) == pytest.approx(0.9520893498136247, rel=1e-8)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="discordant counts must be >= 0"):
        mcnemar_exact(-1, 3)


@settings(max_examples=200)
@given(st.integers(0, 300), st.integers(0, 300))
def test_mcnemar_matches_exact_rational_arithmetic(b: int, c: int) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(exact_mcnemar(b, c), rel=1e-9, abs=1e-300)


@given(st.integers(0, 100_000), st.integers(0, 100_000))
def test_mcnemar_is_a_symmetric_probability(b: int, c: int) -> None:
    p = mcnemar_exact(b, c)
    assert 0.0 <= p <= 1.0
    assert p == mcnemar_exact(c, b)


@given(st.integers(0, 200), st.integers(0, 200))
def test_mcnemar_more_lopsided_is_more_significant(b: int, c: int) -> None:
    if c >= b:
        assert mcnemar_exact(b, c + 1) <= mcnemar_exact(b, c)


# ---------------------------------------------------------------------------- power helpers


def test_min_detectable_by_hand() -> None:
    # d <= 5 discordant pairs can never give p < 0.05: the best split, 5-0, has p = 0.0625.
    assert mcnemar_min_detectable(100, 5) is None
    assert mcnemar_min_detectable(100, 0) is None
    # d = 6: only 6-0 is significant (p = 0.03125), a net drop of 6 of 100 cases.
    assert mcnemar_min_detectable(100, 6) == pytest.approx(0.06)
    # d = 10: 9-1 has p = 0.0215, 8-2 has p = 0.109 -> net drop 8.
    assert mcnemar_min_detectable(1000, 10) == pytest.approx(0.008)


@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_min_detectable_is_exactly_the_significance_boundary(case: tuple[int, int]) -> None:
    n, d = case
    drop = mcnemar_min_detectable(n, d)
    if drop is None:
        assert mcnemar_exact(d, 0) >= 0.05
        return
    k = round(drop * n)
    g = (d - k) // 2
    assert (k + 2 * g) == d
    assert mcnemar_exact(k + g, g) < 0.05
    if g + 1 <= d - (g + 1):
        assert mcnemar_exact(d - g - 1, g + 1) >= 0.05


def test_underpowered_small_runs_and_heavy_churn() -> None:
    assert underpowered(20, 1, margin=0.02)  # even a 6-0 split of 20 cases is a 30% drop
    assert underpowered(5, 0, margin=0.0)
    assert not underpowered(1000, 0, margin=0.02)  # 21 losses, no gains: p ~ 1e-6
    assert not underpowered(1000, 100, margin=0.02)
    assert underpowered(1000, 400, margin=0.02)  # 210-189 is within noise


# ---------------------------------------------------------------------------- paired exact-match test


def test_identical_runs_do_not_regress() -> None:
    run = [i % 3 == 0 for i in range(1000)]
    res = paired_exact_match_test(run, run, margin=0.02, alpha=0.05)
    assert (res.lost, res.gained, res.delta, res.p_value) == (0, 0, 0.0, 1.0)
    assert not res.regressed and not res.significant and not res.exceeds_margin
    assert not res.underpowered


def test_degraded_run_on_ten_percent_of_cases_regresses() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(1000) < 0.5
    new = base.copy()
    flip = rng.choice(np.flatnonzero(base), size=100, replace=False)  # 10% of cases turn wrong
    new[flip] = False
    res = paired_exact_match_test(base.tolist(), new.tolist(), margin=0.02, alpha=0.05)
    assert res.n == 1000 and res.lost == 100 and res.gained == 0
    assert res.delta == pytest.approx(-0.1)
    assert res.p_value < 0.05 and res.significant and res.exceeds_margin and res.regressed
    assert not res.underpowered


def test_small_run_with_one_extra_error_is_not_regressed_but_underpowered() -> None:
    base = [True] * 15 + [False] * 5
    new = list(base)
    new[0] = False
    res = paired_exact_match_test(base, new, margin=0.02, alpha=0.05)
    assert res.exceeds_margin  # 5 points > 2 points ...
    assert not res.significant  # ... but p = 1
    assert not res.regressed
    assert res.underpowered
    assert res.min_detectable_drop is None


def test_significant_but_within_margin_is_not_a_regression() -> None:
    n = 75_000
    base = [True] * n
    new = [True] * (n - 60) + [False] * 60  # 0.08-point drop, p ~ 1e-18
    res = paired_exact_match_test(base, new, margin=0.02, alpha=0.05)
    assert res.significant and not res.exceeds_margin and not res.regressed


def test_improvement_is_not_a_regression() -> None:
    base = [False] * 500 + [True] * 500
    new = [True] * 1000
    res = paired_exact_match_test(base, new, margin=0.02, alpha=0.05)
    assert res.significant and res.gained == 500 and not res.regressed


def test_margin_boundary_counts_exactly() -> None:
    # A drop of exactly the margin (20 of 1000 at 2%) does not exceed it; 21 does.
    base = [True] * 1000
    at = paired_exact_match_test(base, [True] * 980 + [False] * 20, margin=0.02, alpha=0.05)
    past = paired_exact_match_test(base, [True] * 979 + [False] * 21, margin=0.02, alpha=0.05)
    assert not at.exceeds_margin and not at.regressed
    assert past.exceeds_margin and past.regressed


def test_paired_result_to_dict_and_validation() -> None:
    res = paired_exact_match_test([True, False], [True, True], margin=0.0, alpha=0.05)
    d = res.to_dict()
    assert d["lost"] == 0 and d["gained"] == 1 and d["n"] == 2
    assert set(d) >= {"base_rate", "new_rate", "delta", "p_value", "regressed", "underpowered"}
    empty = paired_exact_match_test([], [], margin=0.02, alpha=0.05)
    assert empty.n == 0 and empty.base_rate is None and not empty.regressed and empty.underpowered
    with pytest.raises(ValueError, match="paired sequences differ in length"):
        paired_exact_match_test([True], [True, False], margin=0.02, alpha=0.05)
    with pytest.raises(ValueError, match=r"margin must be in \[0, 1\)"):
        paired_exact_match_test([True], [True], margin=1.5, alpha=0.05)


# -- edges of the paired tests, hand-computed ---------------------------------------------------


def test_paired_exact_match_test_checks_its_arguments_at_the_edges() -> None:
    with pytest.raises(ValueError, match=r"paired sequences differ in length: 1 vs 2"):
        paired_exact_match_test([True], [True, False], 0.02)
    for margin in (1.0, -0.01):
        with pytest.raises(ValueError, match=r"margin must be in \[0, 1\), got"):
            paired_exact_match_test([True], [True], margin)
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got"):
            paired_exact_match_test([True], [True], 0.02, alpha)
    assert paired_exact_match_test([True], [False], 0.0, 0.999).n == 1  # the open ends are allowed


def test_no_pairs_is_a_result_with_nothing_in_it() -> None:
    assert paired_exact_match_test([], [], 0.02) == PairedResult(
        n=0, base_rate=None, new_rate=None, delta=None, lost=0, gained=0, p_value=1.0, significant=False,
        exceeds_margin=False, regressed=False, underpowered=True, min_detectable_drop=None, margin=0.02, alpha=0.05)


def test_a_p_value_equal_to_alpha_is_not_significant() -> None:
    """6 lost, 0 gained: p = 2 * 0.5**6 = 0.03125 exactly; 'p < alpha' is strict."""
    base, new = [True] * 6, [False] * 6
    assert paired_exact_match_test(base, new, 0.0, alpha=0.03125).significant is False
    assert paired_exact_match_test(base, new, 0.0, alpha=0.0313).significant is True


def test_paired_result_with_its_own_alpha() -> None:
    """100 pairs, 7 lost: p = 2 * 0.5**7 = 0.015625, not below alpha = 0.01. A 5-point margin needs k = 6 lost;
    with d = 7 discordant pairs the realistic split is 6 + 0 lost/gained, p = 0.03125 >= 0.01: underpowered.
    No split of 7 reaches p < 0.01 (the best, 7/0, has 0.0156), so no drop is detectable."""
    base, new = [True] * 100, [False] * 7 + [True] * 93
    assert paired_exact_match_test(base, new, 0.05, alpha=0.01) == PairedResult(
        n=100, base_rate=1.0, new_rate=0.93, delta=pytest.approx(-0.07), lost=7, gained=0,
        p_value=pytest.approx(0.015625), significant=False, exceeds_margin=True, regressed=False, underpowered=True,
        min_detectable_drop=None,
        margin=0.05, alpha=0.01)
    # At alpha = 0.05 the same pairs are a regression, and 7 lost of 7 discordant is the smallest detectable drop.
    at_5 = paired_exact_match_test(base, new, 0.05)
    assert (at_5.regressed, at_5.underpowered, at_5.min_detectable_drop) == (True, False, 0.07)


def test_churn_with_no_net_change_is_underpowered_with_a_smallest_detectable_drop() -> None:
    """3 lost and 3 gained of 100: p = 1. Detectable with 6 discordant pairs: 6 lost, 0 gained (p = 2/64 = 0.031),
    a 6-point drop; a 2-point margin needs k = 3 lost: 4 lost / 1 gained, p = 2 * 6/32 = 0.375, underpowered."""
    base = [False] * 3 + [True] * 97
    new = [True] * 3 + [False] * 3 + [True] * 94
    res = paired_exact_match_test(base, new, 0.02)
    assert (res.lost, res.gained, res.p_value, res.delta) == (3, 3, 1.0, 0.0)
    assert res.underpowered and res.min_detectable_drop == 0.06 and not res.exceeds_margin


def test_underpowered_at_its_edges() -> None:
    assert underpowered(0, 0, 0.02) is True  # no pairs: nothing can be told
    for margin in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"margin must be in \[0, 1\), got"):
            underpowered(10, 0, margin)
    with pytest.raises(ValueError, match=r"need 0 <= discordant <= n_pairs, got 11, 10"):
        underpowered(10, 11, 0.02)
    assert underpowered(10, 10, 0.02) is True  # every pair discordant is allowed; 10 pairs cannot show 1 case
    # k = floor(0.9 * 10) + 1 = 10 = n: a 10/0 split has p = 2/1024, detectable.
    assert underpowered(10, 0, 0.9) is False
    # k = 6 of 100 at a 5-point margin with d = 8: split 7 lost / 1 gained, p = 2 * (1 + 8) / 256 = 0.0703.
    assert underpowered(100, 8, 0.05) is True
    # With d = k = 6 the split is 6/0, p = 0.03125: not underpowered below, underpowered at alpha = p exactly.
    assert underpowered(100, 6, 0.05) is False
    assert underpowered(100, 6, 0.05, alpha=0.03125) is True


def test_paired_bootstrap_delta_defaults_and_messages() -> None:
    base, new = [0.2, 0.9, 0.4, 0.7, 0.1], [0.3, 0.5, 0.4, 0.9, 0.0]
    assert paired_bootstrap_delta(base, new) == paired_bootstrap_delta(base, new, 0.95, 2000, 0)
    assert paired_bootstrap_delta(base, new).value == pytest.approx(-0.04)  # (0.1 - 0.4 + 0 + 0.2 - 0.1) / 5
    with pytest.raises(ValueError, match=r"paired sequences differ in length: 2 vs 3"):
        paired_bootstrap_delta([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"^base contains NaN or infinite values$"):
        paired_bootstrap_delta([float("nan")], [0.1])
    with pytest.raises(ValueError, match=r"^new contains NaN or infinite values$"):
        paired_bootstrap_delta([0.1], [float("inf")])


def test_interval_functions_check_their_arguments() -> None:
    for confidence in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"^confidence must be in \(0, 1\), got"):
            wilson(1, 2, confidence)
    assert wilson(1, 2, 0.999).n == 2
    for successes, n in ((3, 2), (-1, 2), (0, -1)):
        with pytest.raises(ValueError, match=rf"^need 0 <= successes <= n, got successes={successes}, n={n}$"):
            wilson(successes, n)
    with pytest.raises(ValueError, match=r"^values must be a flat sequence of numbers$"):
        bootstrap_mean([[0.1, 0.2]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"^values contains NaN or infinite values$"):
        bootstrap_mean([0.1, float("nan")])
    with pytest.raises(ValueError, match=r"^resamples must be >= 1, got 0$"):
        bootstrap_mean([0.1, 0.2], resamples=0)


def test_bootstrap_edges() -> None:
    """One resample is allowed; two different values are resampled (means 0, 0.5, 1: the interval spans 0-1);
    identical values give a one-point interval at their mean; the defaults are 95 %, 2,000 resamples, seed 0."""
    one = bootstrap_mean([0.0, 1.0], resamples=1)
    assert one.value == 0.5 and one.low == one.high and one.low in (0.0, 0.5, 1.0)
    assert bootstrap_mean([0.0, 1.0]) == Estimate(0.5, 0.0, 1.0, 2)
    same = bootstrap_mean([0.1, 0.1, 0.1])
    assert same.low == same.value == same.high == pytest.approx(0.1)
    values = [0.2, 0.9, 0.4, 0.7, 0.1, 0.3]
    assert bootstrap_mean(values) == bootstrap_mean(values, 0.95, 2000, 0)
    assert bootstrap_mean(values, seed=1) != bootstrap_mean(values)  # the seed is used


def test_arguments_are_checked_even_with_nothing_to_compare() -> None:
    """With no pairs the test returns early, after its own checks: a bad margin or alpha is still an error."""
    with pytest.raises(ValueError, match=r"margin must be in \[0, 1\), got 1.0"):
        paired_exact_match_test([], [], 1.0)
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got"):
            paired_exact_match_test([], [], 0.02, alpha)
    with pytest.raises(ValueError, match=r"^need 0 <= discordant <= n_pairs and n_pairs >= 1, got 0, 0$"):
        mcnemar_min_detectable(0, 0)
    with pytest.raises(ValueError, match=r"^need 0 <= discordant <= n_pairs and n_pairs >= 1, got 3, 2$"):
        mcnemar_min_detectable(2, 3)
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"^alpha must be in \(0, 1\), got"):
            mcnemar_min_detectable(10, 5, alpha)
    with pytest.raises(ValueError, match=r"^discordant counts must be >= 0, got b=-1, c=0$"):
        mcnemar_exact(-1, 0)


# ---------------------------------------------------------------------------- pinned edges


@pytest.mark.parametrize("value", [0.1, 0.7, 0.3])
def test_a_constant_sample_has_a_point_interval_at_exactly_its_mean(value: float) -> None:
    # Resampled means of 30 equal values can differ from their mean in the last bit; the interval must not.
    est = bootstrap_mean([value] * 30)
    assert est.low == est.value == est.high
    assert paired_bootstrap_delta([0.0] * 30, [value] * 30) == est


def test_default_resamples_are_2000() -> None:
    values = [i / 97 for i in range(97)]
    assert bootstrap_mean(values) == bootstrap_mean(values, resamples=2000)
    assert bootstrap_mean(values) != bootstrap_mean(values, resamples=2001)
    assert paired_bootstrap_delta(values, values[::-1]) == paired_bootstrap_delta(values, values[::-1], resamples=2000)
    assert paired_bootstrap_delta(values, values[::-1]) != paired_bootstrap_delta(values, values[::-1], resamples=2001)


def test_booleans_are_read_as_zeros_and_ones() -> None:
    base, new = [True, False, True, True] * 5, [False, False, True, True] * 5
    assert paired_bootstrap_delta(base, new) == paired_bootstrap_delta([float(b) for b in base],
                                                                       [float(w) for w in new])
    assert bootstrap_mean(base).value == 0.75


def test_zero_zero_wilson_bounds_are_exactly_0_and_1() -> None:
    # The closed form leaves 1e-17 instead of 0 for 0/7, 0/9, ...: the bound is pinned at the edge.
    assert all(wilson(0, n).low == 0.0 for n in range(1, 200))
    assert all(wilson(n, n).high == 1.0 for n in range(1, 200))


def test_p_equal_to_alpha_is_not_below_it_in_any_of_the_tests() -> None:
    # 5 losses, no gain: p = 2 * 2**-5 = 0.0625 exactly; "significant" means p < alpha.
    assert mcnemar_exact(5, 0) == 0.0625
    result = paired_exact_match_test([True] * 5 + [False] * 5, [False] * 10, margin=0.0, alpha=0.0625)
    assert result.p_value == 0.0625 and not result.significant and not result.regressed
    assert mcnemar_min_detectable(10, 5, alpha=0.0625) is None
    assert mcnemar_min_detectable(10, 5, alpha=0.0626) == 0.5
    assert underpowered(10, 5, 0.4, alpha=0.0625)  # the smallest drop to catch (5 losses) gives p == alpha


def test_no_pairs_is_underpowered() -> None:
    assert underpowered(0, 0, 0.05) is True


def test_bootstrap_ratio_edges() -> None:
    with pytest.raises(ValueError, match="differ in length: 2 vs 1"):
        bootstrap_ratio([1, 2], [3])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ratio([1], [2], confidence=1.0)
    assert bootstrap_ratio([], []) == Estimate(None, None, None, 0)
    assert bootstrap_ratio([0, 0], [0, 0]) == Estimate(None, None, None, 2)
    assert bootstrap_ratio([1, 2], [2, 4], resamples=50) == Estimate(0.5, 0.5, 0.5, 2)
    num, den = [1, 0, 3, 2, 5], [2, 1, 4, 2, 9]
    est = bootstrap_ratio(num, den, confidence=0.5, resamples=500, seed=2)
    wide = bootstrap_ratio(num, den, confidence=0.99, resamples=500, seed=2)
    assert wide.low < est.low < est.value < est.high < wide.high
    assert est == bootstrap_ratio(num, den, confidence=0.5, resamples=500, seed=2)
    assert est != bootstrap_ratio(num, den, confidence=0.5, resamples=500, seed=3)
    many = bootstrap_ratio(num * 100_000, den * 100_000, resamples=30)  # more than one chunk of draws
    assert many.value == pytest.approx(11 / 18) and many.low < many.value < many.high
