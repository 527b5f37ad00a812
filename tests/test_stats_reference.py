"""Our statistics against well-kept independent implementations (statsmodels, scipy, scikit-learn).

Property-based: hypothesis draws the inputs, the reference library computes the expected value, and each
comparison states its tolerance and why. The references are test-only dependencies (the ``test`` extra);
the plugin keeps its own small implementations (results/stats.py says why: no scipy at run time, a
bootstrap that resamples 75k cases by value counts, a McNemar tail summed in log space for 100k pairs).

Conventions where the libraries and we could differ, stated once:

- Wilson: statsmodels ``proportion_confint(method="wilson")`` is the same formula; we clip to [0, 1] and
  pin the bounds to exactly 0 and 1 at 0/n and n/n.
- McNemar: statsmodels ``mcnemar(exact=True)`` is the two-sided binomial test on the discordant pairs,
  ``min(1, 2 * P(X <= min(b, c)))``, X ~ Bin(b + c, 1/2) — the definition we use.
- Bootstrap: scipy's ``bootstrap(method="percentile")`` draws ``rng.integers(0, n, (resamples, n))`` in one
  batch and takes linear-interpolated quantiles, as we do when the sample has many distinct values, so
  with the same seeded generator the two intervals are the same numbers. Where we resample by value
  counts (few distinct values: a multinomial draw, another random stream) the comparison is to a
  Monte-Carlo tolerance instead.
- Documents: *micro* P/R/F1 pool the (document, code) pairs of the answered documents — scikit-learn's
  ``average="micro"``. Our ``macro_*`` fields are the mean of the per-document values — scikit-learn's
  ``average="samples"``, not its ``"macro"`` (a mean over codes); the per-code table (``per_code_f1``)
  over every gold code is the mean over codes that occur, compared with ``average=None`` restricted to the
  gold codes. Zero division: a document with no gold and no predicted code scores 1 on all three (nothing
  to code, nothing coded); otherwise a 0/0 precision or recall is 0 (scikit-learn's ``zero_division=0``).
  A pooled metric with a zero denominator has no value (None) where scikit-learn would return 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from pytest_medcode.codesystems import load_system
from pytest_medcode.results.document_summary import per_code_f1, pooled, summarize_group
from pytest_medcode.results.stats import (
    bootstrap_mean,
    bootstrap_ratio,
    mcnemar_exact,
    mcnemar_min_detectable,
    paired_bootstrap_delta,
    paired_exact_match_test,
    underpowered,
    wilson,
)
from pytest_medcode.scoring.code_sets import score_document

# CI runs these: a modest number of examples, no per-example deadline (the first call warms numpy/scipy).
FAST = settings(max_examples=60, deadline=None)

# -- Wilson intervals against statsmodels ---------------------------------------------------------------


@FAST
@given(n=st.integers(1, 100_000), share=st.floats(0, 1), confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_equals_statsmodels(n: int, share: float, confidence: float) -> None:
    successes = round(share * n)
    est = wilson(successes, n, confidence)
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    # Tolerance 1e-12: the same closed form; the only difference is the normal quantile (statistics.NormalDist
    # vs scipy's ndtri, both to ~1e-16) and the order of float operations.
    assert est.value == successes / n
    assert est.low == pytest.approx(max(0.0, low), abs=1e-12)
    assert est.high == pytest.approx(min(1.0, high), abs=1e-12)
    if successes == 0:
        assert est.low == 0.0
    if successes == n:
        assert est.high == 1.0


# -- exact McNemar against statsmodels and scipy ------------------------------------------------------


def _statsmodels_mcnemar(b: int, c: int) -> float:
    return float(mcnemar([[0, b], [c, 0]], exact=True).pvalue)


@FAST
@given(b=st.integers(0, 3000), c=st.integers(0, 3000))
def test_mcnemar_exact_equals_statsmodels(b: int, c: int) -> None:
    # Relative 1e-9 (the log-space tail's documented accuracy) and absolute 1e-300 for tails that underflow.
    assert mcnemar_exact(b, c) == pytest.approx(_statsmodels_mcnemar(b, c), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("b", "c"), [(49_000, 51_000), (50_000, 50_600), (10, 90_000), (0, 1), (7, 7)])
def test_mcnemar_exact_equals_scipy_binomtest_at_scale(b: int, c: int) -> None:
    expected = sps.binomtest(min(b, c), b + c, 0.5).pvalue  # two-sided; symmetric at p = 1/2
    # Relative 1e-8: scipy sums the tail with its own incomplete beta; 100k pairs is our stated range.
    assert mcnemar_exact(b, c) == pytest.approx(min(1.0, expected), rel=1e-8, abs=1e-300)


@FAST
@given(n=st.integers(1, 400), share=st.floats(0, 1), alpha=st.sampled_from([0.01, 0.05, 0.1]))
def test_min_detectable_drop_is_the_first_split_statsmodels_calls_significant(n: int, share: float,
                                                                             alpha: float) -> None:
    d = round(share * n)
    got = mcnemar_min_detectable(n, d, alpha)
    # Brute force with statsmodels' p-values: the most gains g a split of d can have and still be significant.
    significant = [g for g in range(d // 2 + 1) if _statsmodels_mcnemar(d - g, g) < alpha]
    if not significant:
        assert got is None
    else:
        assert got == pytest.approx((d - 2 * max(significant)) / n, abs=1e-12)


@FAST
@given(n=st.integers(1, 300), share=st.floats(0, 1), margin=st.sampled_from([0.0, 0.01, 0.02, 0.05, 0.1]),
       alpha=st.sampled_from([0.01, 0.05]))
def test_underpowered_matches_statsmodels_on_the_smallest_drop_to_catch(n: int, share: float, margin: float,
                                                                       alpha: float) -> None:
    d = round(share * n)
    k = math.floor(margin * n + 1e-9) + 1  # the smallest net loss the gate must catch
    if k > n:
        expected = True
    else:
        gained = (max(d, k) - k) // 2
        expected = _statsmodels_mcnemar(k + gained, gained) >= alpha
    assert underpowered(n, d, margin, alpha) is expected


@FAST
@given(pairs=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=300),
       margin=st.sampled_from([0.0, 0.02, 0.05]))
def test_paired_exact_match_test_reads_the_same_table_as_statsmodels(pairs: list[tuple[bool, bool]],
                                                                     margin: float) -> None:
    base, new = [b for b, _ in pairs], [w for _, w in pairs]
    table = [[sum(b and w for b, w in pairs), sum(b and not w for b, w in pairs)],
             [sum(w and not b for b, w in pairs), sum(not b and not w for b, w in pairs)]]
    got = paired_exact_match_test(base, new, margin)
    assert (got.lost, got.gained) == (table[0][1], table[1][0])
    assert got.p_value == pytest.approx(float(mcnemar(table, exact=True).pvalue), rel=1e-9, abs=1e-300)
    assert got.base_rate == pytest.approx(np.mean(base)) and got.new_rate == pytest.approx(np.mean(new))
    assert got.regressed is (got.p_value < 0.05 and got.lost - got.gained > margin * len(pairs) + 1e-9)


# -- bootstraps against scipy.stats.bootstrap --------------------------------------------------------

# Many distinct values (more than n / 8), so we resample by indices: the same draws as scipy's.
_spread = st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=9, max_size=200, unique=True)


@FAST
@given(values=_spread, seed=st.integers(0, 2**32 - 1), confidence=st.sampled_from([0.9, 0.95]))
def test_bootstrap_mean_equals_scipy_percentile_with_the_same_draws(values: list[float], seed: int,
                                                                    confidence: float) -> None:
    ours = bootstrap_mean(values, confidence=confidence, resamples=500, seed=seed)
    ref = sps.bootstrap((np.asarray(values),), np.mean, n_resamples=500, method="percentile",
                        confidence_level=confidence, rng=np.random.default_rng(seed)).confidence_interval
    # Tolerance 1e-9 relative to the values' scale: same resample indices and the same linear quantiles; only
    # the summation order of each resample's mean may differ.
    scale = 1e-9 * max(1.0, max(abs(v) for v in values))
    assert ours.value == pytest.approx(np.mean(values), abs=scale)
    assert ours.low == pytest.approx(ref.low, abs=scale) and ours.high == pytest.approx(ref.high, abs=scale)


@FAST
@given(pairs=st.lists(st.tuples(st.floats(0, 1, width=32), st.floats(0, 1, width=32)), min_size=9, max_size=150),
       seed=st.integers(0, 2**32 - 1))
def test_paired_bootstrap_equals_scipy_paired_percentile(pairs: list[tuple[float, float]], seed: int) -> None:
    base, new = np.array([b for b, _ in pairs]), np.array([w for _, w in pairs])
    delta = new - base
    assume(np.unique(delta).size * 8 > delta.size)  # the index path; the value-count path is tested below
    ours = paired_bootstrap_delta(base, new, resamples=400, seed=seed)
    ref = sps.bootstrap((base, new), lambda b, w, axis: np.mean(w - b, axis=axis), paired=True,
                        n_resamples=400, method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    # Tolerance 1e-12: scipy resamples the pair indices with the same draws; values are in [-1, 1].
    assert ours.value == pytest.approx(delta.mean(), abs=1e-12)
    assert ours.low == pytest.approx(ref.low, abs=1e-12) and ours.high == pytest.approx(ref.high, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(counts=st.lists(st.integers(1, 60), min_size=2, max_size=5), seed=st.integers(0, 2**32 - 1))
def test_bootstrap_by_value_counts_agrees_with_scipy_within_monte_carlo_error(counts: list[int], seed: int) -> None:
    # Few distinct values (digit agreement: 0, 0.2, ..., 1): we draw multinomial counts, scipy draws indices,
    # so the two intervals come from different random streams and agree only to Monte-Carlo error.
    values = np.repeat(np.linspace(0, 1, len(counts)), counts)
    assume(len(counts) * 8 <= values.size)
    resamples = 4000
    ours = bootstrap_mean(values, resamples=resamples, seed=seed)
    ref = sps.bootstrap((values,), np.mean, n_resamples=resamples, method="percentile",
                        rng=np.random.default_rng(seed + 1)).confidence_interval
    # The 2.5 % quantile of R resampled means has a standard error of about sqrt(q(1-q)/R) / phi(z_q) = 2.7/sqrt(R)
    # standard errors of the mean (se = sd / sqrt(n)); two independent estimates differ by sqrt(2) times that.
    # Allow 5 of those (0.21 se at R = 4000) plus one step of the resampled means' grid (1/n of the level gap).
    se = values.std() / math.sqrt(values.size)
    tol = 5 * math.sqrt(2) * 2.7 / math.sqrt(resamples) * se + 1 / (values.size * (len(counts) - 1))
    assert abs(ours.low - ref.low) <= tol and abs(ours.high - ref.high) <= tol


@FAST
@given(parts=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=60),
       seed=st.integers(0, 2**32 - 1))
def test_bootstrap_ratio_equals_a_percentile_bootstrap_of_the_same_index_draws(parts: list[tuple[int, int]],
                                                                              seed: int) -> None:
    num = np.array([min(a, b) for a, b in parts], dtype=float)  # a numerator never exceeds its denominator
    den = np.array([b for _, b in parts], dtype=float)
    got = bootstrap_ratio(num, den, resamples=300, seed=seed)
    if den.sum() == 0:
        assert got.value is None and got.n == len(parts)
        return
    # Brute force: the same seeded draws of case indices, each resample's pooled ratio, resamples with no
    # denominator left out, linear quantiles; the interval then widened to hold the point value.
    idx = np.random.default_rng(seed).integers(0, len(parts), size=(300, len(parts)))
    d = den[idx].sum(axis=1)
    ratios = num[idx].sum(axis=1)[d > 0] / d[d > 0]
    low, high = np.quantile(ratios, [0.025, 0.975])
    value = num.sum() / den.sum()
    # Tolerance 1e-12: the same arithmetic on the same draws (ratios in [0, 1]).
    assert got.value == pytest.approx(value, abs=1e-12)
    assert got.low == pytest.approx(min(value, low), abs=1e-12)
    assert got.high == pytest.approx(max(value, high), abs=1e-12)
    if len(parts) > 1 and (d > 0).all():  # scipy needs two observations
        ref = sps.bootstrap((num, den), lambda a, b, axis: a.sum(axis=axis) / b.sum(axis=axis), paired=True,
                            n_resamples=300, method="percentile", rng=np.random.default_rng(seed))
        assert got.low == pytest.approx(min(value, ref.confidence_interval.low), abs=1e-12)
        assert got.high == pytest.approx(max(value, ref.confidence_interval.high), abs=1e-12)


# -- document metrics against scikit-learn ------------------------------------------------------------

# Real billable ICD-10-CM codes (three share the category E11, so category credit is exercised) and two
# codes that are not in the table: predicted codes the scorer must still count as false positives.
POOL = ("E11.9", "E11.65", "E11.21", "I10", "J20.9", "N39.0", "K21.9", "R51.9", "M54.50", "F32.A")
FABRICATED = ("Q99.99", "E11.99")


@pytest.fixture(scope="module")
def icd10() -> Any:
    return load_system("icd10cm")


_codes = st.lists(st.sampled_from(POOL), max_size=5, unique=True)
_documents = st.lists(
    st.tuples(_codes, st.lists(st.sampled_from(POOL + FABRICATED), max_size=6), st.booleans()),
    min_size=1, max_size=25,
)


def _records(icd10: Any, documents: list[tuple[list[str], list[str], bool]]) -> list[dict[str, Any]]:
    """Document records as the plugin writes them: the scorer reads the answer text (a code repeated in the
    answer counts once); a failed call carries no scores and is left out of every value."""
    out = []
    for gold, answer, failed in documents:
        base = {"kind": "document", "model": "m", "system": "icd10cm", "gold_codes": list(gold)}
        if failed:
            out.append({**base, "outcome": "error", "predicted_codes": [], "n_codes": None})
        else:
            out.append({**base, "outcome": "incorrect", **score_document(icd10, gold, "\n".join(answer))})
    return out


@settings(max_examples=30, deadline=None)  # each example summarises a group: nine bootstraps
@given(documents=_documents)
def test_document_metrics_equal_scikit_learn(icd10: Any, documents: list[tuple[list[str], list[str], bool]]) -> None:
    records = _records(icd10, documents)
    done = [r for r in records if r["outcome"] != "error"]
    assume(done)
    gold = [r["gold_codes"] for r in done]
    predicted = [r["predicted_codes"] for r in done]
    # Two codes nobody uses keep the matrices multilabel (scikit-learn reads a single column as binary); a
    # column of zeros changes no micro, per-document or per-code value.
    mlb = MultiLabelBinarizer(classes=[*sorted({c for row in gold + predicted for c in row}), "~", "~~"])
    y_true, y_pred = mlb.fit_transform(gold), mlb.transform(predicted)
    row = summarize_group(records)
    assert row["n_answered"] == len(done) and row["n_errors"] == len(records) - len(done)

    # Micro: pooled pairs. With a zero denominator (no predicted code for precision, no gold code for recall,
    # neither for F1) our pooled value is None; scikit-learn says 0 (zero_division) or 1 (nothing at all).
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    denominators = {"micro_precision": y_pred.sum(), "micro_recall": y_true.sum(),
                    "micro_f1": y_pred.sum() + y_true.sum()}
    for name, expected in (("micro_precision", p), ("micro_recall", r), ("micro_f1", f)):
        value = row[name]["value"]
        if denominators[name] == 0:
            assert value is None and expected in (0.0, 1.0), name
        else:
            assert value == pytest.approx(expected, abs=1e-12), name

    # Exact-set match: scikit-learn's subset accuracy on the indicator matrices.
    assert row["set_match"]["value"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)

    # Our "macro" is the per-document mean (scikit-learn's "samples"); a document with nothing to code and
    # nothing coded scores 1, which no single zero_division value gives, so those documents are counted apart.
    empty = [not g and not p_ for g, p_ in zip(gold, predicted)]
    rest = [i for i, e in enumerate(empty) if not e]
    if rest:
        sp, sr, sf, _ = precision_recall_fscore_support(y_true[rest], y_pred[rest], average="samples", zero_division=0)
    else:
        sp = sr = sf = 0.0
    for name, expected in (("macro_precision", sp), ("macro_recall", sr), ("macro_f1", sf)):
        mean = (sum(empty) + expected * len(rest)) / len(done)
        assert row[name]["value"] == pytest.approx(mean, abs=1e-12), name

    # Macro over codes that occur: per-code F1 of every gold code, against scikit-learn's per-label values.
    codes = per_code_f1(records, limit=len(mlb.classes_))
    labels = sorted({c for g in gold for c in g})
    assert [c["code"] for c in sorted(codes, key=lambda c: c["code"])] == labels
    if labels:
        columns = [list(mlb.classes_).index(c) for c in labels]  # multilabel labels are column indices
        lp, lr, lf, support = precision_recall_fscore_support(y_true, y_pred, labels=columns, average=None,
                                                              zero_division=0)
        by_code = {c["code"]: c for c in codes}
        for i, code in enumerate(labels):
            got = by_code[code]
            assert got["support"] == support[i]
            assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((lp[i], lr[i], lf[i]), abs=1e-12)
        macro = precision_recall_fscore_support(y_true, y_pred, labels=columns, average="macro", zero_division=0)[2]
        assert np.mean([c["f1"] for c in codes]) == pytest.approx(macro, abs=1e-12)


@FAST
@given(documents=_documents)
def test_pooled_invalid_and_fabricated_rates_count_every_predicted_code(
        icd10: Any, documents: list[tuple[list[str], list[str], bool]]) -> None:
    records = _records(icd10, documents)
    done = [r for r in records if r["outcome"] != "error"]
    predicted = [c for r in done for c in r["predicted_codes"]]
    assume(predicted)
    # Reference: each predicted code looked up in the table (codes not in it are fabricated, hence invalid).
    fabricated = sum(1 for c in predicted if c in FABRICATED)
    assert pooled(records, "fabricated_code_rate").value == pytest.approx(fabricated / len(predicted), abs=1e-12)
    assert pooled(records, "invalid_code_rate").value == pytest.approx(fabricated / len(predicted), abs=1e-12)
