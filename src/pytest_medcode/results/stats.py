"""Confidence intervals and paired tests for benchmark results.

The paper reports CIs without saying how they were computed, so we choose and say: Wilson score
intervals for proportions (exact match, billable rate), a seeded percentile bootstrap for means
(METEOR, BERTScore, matched digits), and an exact McNemar test for "did the new run get worse than
the baseline on the same cases". Everything here is pure and deterministic for a given seed, so a
report regenerated from the same records shows the same numbers.

No scipy: the normal quantile comes from the standard library and binomial tails are summed in
log space, which stays exact enough and overflow-free for 100k discordant pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "Estimate",
    "PairedResult",
    "bootstrap_mean",
    "mcnemar_exact",
    "mcnemar_min_detectable",
    "paired_bootstrap_delta",
    "paired_exact_match_test",
    "resampled_counts",
    "underpowered",
    "wilson",
]

# Bound on resampled values held at once: 2M float64 + 2M int64 indices is about 32 MB,
# whatever the number of values (75k values -> 26 resamples per chunk).
_CHUNK_ELEMENTS = 2_000_000
#: Resample by counts of distinct values when there are at most n / this many of them (see _bootstrap).
_FEW_LEVELS_FACTOR = 8
# Rates are compared as counts; this absorbs float error in margin * n (0.02 * 1000 -> 20.000000000000004).
_EPS = 1e-9


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval; all None when there was nothing to estimate (n == 0)."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain JSON-able dict, for reports and records."""
        return asdict(self)


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return confidence


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + _check_confidence(confidence) / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """Wilson score interval for ``successes / n``.

    Wilson rather than the normal (Wald) interval because benchmark rates sit near 0 (Llama-2: 1.5%)
    or come from small subsets, where Wald gives bounds below 0 or zero width.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    z = _z(confidence)
    if n == 0:
        return Estimate(None, None, None, 0)
    p = successes / n
    z2n = z * z / n
    denom = 1.0 + z2n
    centre = (p + z2n / 2.0) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # Exact at the edges: rounding must not leave 0/n with a low of 1e-17 or n/n with a high below 1.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(p, low, high, n)


def _as_finite_array(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers")
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _bootstrap(arr: np.ndarray, confidence: float, resamples: int, seed: int) -> Estimate:
    """Percentile bootstrap of the mean of ``arr``, resampling in chunks to bound memory."""
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n = int(arr.size)
    if n == 0:
        return Estimate(None, None, None, 0)
    value = float(arr.mean())
    if n == 1 or bool((arr == arr[0]).all()):
        # Every resample has the same mean; skip the work and avoid quantile float noise.
        return Estimate(value, value, value, n)
    rng = np.random.default_rng(seed)
    levels, counts = np.unique(arr, return_counts=True)
    if levels.size * _FEW_LEVELS_FACTOR <= n:
        # A resample's mean depends only on how often each distinct value was drawn, and those counts are
        # multinomial: the same distribution as drawing n indices, at resamples x levels instead of
        # resamples x n (digit agreement over 75k cases has ~10 levels: ~1 s becomes ~1 ms).
        means = rng.multinomial(n, counts / n, size=resamples) @ levels / n
    else:
        means = _index_resample_means(arr, resamples, rng)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Estimate(value, float(low), float(high), n)


def _index_resample_means(arr: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = int(arr.size)
    means = np.empty(resamples, dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    return means


def resampled_counts(counts: np.ndarray, resamples: int = 2000, seed: int = 0) -> Iterator[np.ndarray]:
    """The seeded case bootstrap for a statistic of category counts: chunks of rows, each row how often each
    category was drawn when ``counts.sum()`` cases are drawn with replacement (a resample of the cases).

    For statistics that are no mean (coverage at a target accuracy, results/selective.py): the caller computes
    its statistic from each row. Few categories: multinomial rows (resamples × categories of work); many: the
    drawn indices counted (resamples × cases), chunked to bound memory either way."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    rng = np.random.default_rng(seed)
    if n == 0:
        return
    few = counts.size * _FEW_LEVELS_FACTOR <= n
    rows = max(1, _CHUNK_ELEMENTS // (counts.size if few else n))
    category = np.repeat(np.arange(counts.size), counts)
    for start in range(0, resamples, rows):
        size = min(resamples, start + rows) - start
        if few:
            yield rng.multinomial(n, counts / n, size=size)
            continue
        drawn = category[rng.integers(0, n, size=(size, n))]
        offsets = (np.arange(size) * counts.size)[:, None]
        yield np.bincount((drawn + offsets).ravel(), minlength=size * counts.size).reshape(size, counts.size)


def bootstrap_mean(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Estimate:
    """Mean with a seeded percentile-bootstrap interval.

    Bootstrap because similarity scores are bounded, skewed and often pile up at 1.0 (identical
    descriptions), so a t interval would misstate the spread. Same values and seed -> same interval.
    """
    return _bootstrap(_as_finite_array(values, "values"), confidence, resamples, seed)


def paired_bootstrap_delta(
    base: Sequence[float],
    new: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Mean of ``new - base`` over paired cases, with a percentile bootstrap that resamples pairs.

    Resampling pairs (not each run separately) keeps the case-to-case correlation, which is what makes
    a paired comparison far tighter than comparing two independent intervals.
    """
    b = _as_finite_array(base, "base")
    w = _as_finite_array(new, "new")
    if b.size != w.size:
        raise ValueError(f"paired sequences differ in length: {b.size} vs {w.size}")
    return _bootstrap(w - b, confidence, resamples, seed)


def _log_cdf_half(n: int, upto: int) -> np.ndarray:
    """log P(X <= k) for k = 0..upto, X ~ Binomial(n, 1/2), without ever forming C(n, k) or 2**n.

    pmf(0) = 2**-n and pmf(k+1) / pmf(k) = (n - k) / (k + 1), so the log pmfs are one cumulative sum;
    ``logaddexp.accumulate`` then gives the log CDF. For n = 100k the relative error is about 1e-9
    (checked against integer arithmetic), ample for a p-value.
    """
    k = np.arange(upto, dtype=np.float64)
    log_pmf = np.empty(upto + 1, dtype=np.float64)
    log_pmf[0] = -n * math.log(2.0)
    log_pmf[1:] = log_pmf[0] + np.cumsum(np.log(n - k) - np.log(k + 1.0))
    return np.logaddexp.accumulate(log_pmf)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for discordant counts ``b`` and ``c``.

    Exact (binomial on the b + c discordant pairs, p = 1/2) rather than the chi-square version, because
    regression tests often have a handful of discordant pairs where the approximation is poor.
    Two-sided p = min(1, 2 * P(X <= min(b, c))).
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    m = min(b, c)
    if 2 * m >= n - 1:
        # min(b, c) >= (n - 1) / 2 means P(X <= m) >= 1/2, so the doubled tail is at least 1.
        return 1.0
    p = 2.0 * math.exp(float(_log_cdf_half(n, m)[m]))
    return min(1.0, p)


def mcnemar_min_detectable(n_pairs: int, discordant: int, alpha: float = 0.05) -> float | None:
    """Smallest net drop ``(lost - gained) / n_pairs`` that McNemar calls significant, or None.

    Conditional on the number of discordant pairs d (the run-to-run churn), the exact test only looks at
    how those d pairs split. The split most in favour of detection is the one with the fewest gains: the
    largest g with 2 * P(X <= g) < alpha, X ~ Bin(d, 1/2), leaves a net drop of d - 2g cases. If even
    g = 0 (every discordant pair a loss, p = 2**(1 - d)) is not below alpha - d <= 5 at alpha = 0.05 -
    nothing is detectable and the answer is None. More churn raises the bar: with d = 100 a net drop
    of 22 cases is needed, with d = 400 one of 42.
    """
    if n_pairs < 1 or not 0 <= discordant <= n_pairs:
        raise ValueError(f"need 0 <= discordant <= n_pairs and n_pairs >= 1, got {discordant}, {n_pairs}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if discordant == 0:
        return None
    half = discordant // 2
    log_cdf = _log_cdf_half(discordant, half)
    # Two-sided p is 2 * CDF(g) (capped at 1); find the largest g with p < alpha.
    ok = np.nonzero(math.log(2.0) + log_cdf < math.log(alpha))[0]
    if ok.size == 0:
        return None
    g = int(ok[-1])
    return (discordant - 2 * g) / n_pairs


def underpowered(n_pairs: int, discordant: int, margin: float, alpha: float = 0.05) -> bool:
    """True when a drop just past ``margin`` could not be significant at ``alpha`` with this churn.

    The smallest drop the gate must catch is k = floor(margin * n) + 1 net lost cases. Such a drop needs
    at least k discordant pairs, and if the runs already disagree on more (d > k), the realistic case is
    the same churn with a net loss of k: lost = k + g, gained = g, g = (d - k) // 2. If that split is
    not significant, a "no regression" verdict means "cannot tell", not "no drop": too few cases (20
    cases can never show a 5% drop) or too much churn. The gate should warn rather than pass silently.
    """
    if n_pairs < 1:
        return True
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    if not 0 <= discordant <= n_pairs:
        raise ValueError(f"need 0 <= discordant <= n_pairs, got {discordant}, {n_pairs}")
    k = math.floor(margin * n_pairs + _EPS) + 1
    if k > n_pairs:
        return True
    d = max(discordant, k)
    gained = (d - k) // 2
    return mcnemar_exact(k + gained, gained) >= alpha


@dataclass(frozen=True)
class PairedResult:
    """Verdict of a paired exact-match comparison of a new run against a baseline on the same cases.

    ``lost`` is McNemar's b (baseline right, new wrong) and ``gained`` is c (baseline wrong, new right).
    Rates are None when there were no paired cases.
    """

    n: int
    base_rate: float | None
    new_rate: float | None
    delta: float | None
    lost: int
    gained: int
    p_value: float
    significant: bool
    exceeds_margin: bool
    regressed: bool
    underpowered: bool
    min_detectable_drop: float | None
    margin: float
    alpha: float

    def to_dict(self) -> dict[str, float | int | bool | None]:
        """Plain JSON-able dict, for reports and the gate's reasons."""
        return asdict(self)


def paired_exact_match_test(
    base: Sequence[bool], new: Sequence[bool], margin: float, alpha: float = 0.05
) -> PairedResult:
    """Did exact match drop by more than ``margin`` (a proportion), significantly by exact McNemar?

    Both conditions, because with 75k cases a 0.1-point drop is "significant" but harmless, and with
    20 cases a 10-point drop is noise. The p-value is two-sided; the direction comes from the margin.
    """
    if len(base) != len(new):
        raise ValueError(f"paired sequences differ in length: {len(base)} vs {len(new)}")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    n = len(base)
    b = np.asarray(base, dtype=bool)
    w = np.asarray(new, dtype=bool)
    lost = int(np.count_nonzero(b & ~w))
    gained = int(np.count_nonzero(~b & w))
    p = mcnemar_exact(lost, gained)
    significant = p < alpha
    if n == 0:
        return PairedResult(0, None, None, None, 0, 0, p, False, False, False, True, None, margin, alpha)
    base_rate = int(np.count_nonzero(b)) / n
    new_rate = int(np.count_nonzero(w)) / n
    exceeds = (lost - gained) > margin * n + _EPS
    return PairedResult(
        n=n,
        base_rate=base_rate,
        new_rate=new_rate,
        delta=new_rate - base_rate,
        lost=lost,
        gained=gained,
        p_value=p,
        significant=significant,
        exceeds_margin=exceeds,
        regressed=exceeds and significant,
        underpowered=underpowered(n, lost + gained, margin, alpha),
        min_detectable_drop=mcnemar_min_detectable(n, lost + gained, alpha),
        margin=margin,
        alpha=alpha,
    )


def bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """``sum(numerators) / sum(denominators)`` with a seeded percentile bootstrap that resamples cases.

    For pooled metrics such as micro F1 (2·TP over 2·TP + FP + FN, added up over documents): the value is
    not a mean of per-case values, so the cases — each with its numerator and denominator — are what is
    resampled. A resample whose denominator is 0 has no ratio and is left out of the quantiles."""
    num = _as_finite_array(numerators, "numerators")
    den = _as_finite_array(denominators, "denominators")
    if num.size != den.size:
        raise ValueError(f"numerators and denominators differ in length: {num.size} vs {den.size}")
    _check_confidence(confidence)
    n = int(num.size)
    total = float(den.sum())
    if n == 0 or total == 0:
        return Estimate(None, None, None, n)
    value = float(num.sum()) / total
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples, dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        d = den[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios[start:stop] = np.where(d > 0, num[idx].sum(axis=1) / np.where(d > 0, d, 1), np.nan)
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(ratios, [tail, 1.0 - tail])
    return Estimate(value, min(value, float(low)), max(value, float(high)), n)
