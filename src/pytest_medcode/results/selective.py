"""Straight-through coding: how much a product may code on its own at a target accuracy.

A coding product codes the cases it is sure of and sends the rest to people; the bar is the accuracy on
what it codes. Per (model, system, and each varied dimension) group of code queries:

- **coverage at a target** (``coverage@95``): the largest share of the group's cases that can be taken in
  decreasing confidence with exact-match accuracy at or above the target, the implied threshold (the
  lowest confidence admitted), and a seeded case-bootstrap interval (results/stats.py). No share reaches
  the target: coverage 0, no threshold;
- the **risk–coverage curve** (risk = 1 - accuracy of what is admitted) and its area (**AURC**: the
  curve's risk integrated over coverage as a step function, lower is better);
- **accuracy at a fixed coverage**: of the smallest admitted set that covers at least that share;
- **expected calibration error** over 10 equal-width confidence bins and the bins themselves
  (the reliability diagram);
- **abstention**: the share the product declined, and exact match on answered vs declined cases.

Which cases count: every answered code query (a failed call is left out, as in every rate). A case the
product declined, or one without a confidence, is never auto-coded but stays in the denominator: coverage
is a share of all the work. Ties are explicit: a threshold admits every case of its confidence or none, so
the candidate thresholds are the distinct confidences. A group where no case has a confidence has no
numbers ("no confidence"), never coverage read off a confidence of 1.0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_medcode.results.stats import resampled_counts, wilson
from pytest_medcode.vocabulary import GROUP_KEYS, answered

__all__ = [
    "BINS",
    "DEFAULT_COVERAGES",
    "DEFAULT_TARGETS",
    "Coverage",
    "Levels",
    "accuracy_at_coverage",
    "aurc",
    "calibration",
    "coverage_at",
    "coverage_interval",
    "coverage_intervals",
    "curve_points",
    "fill_repeat_agreement",
    "levels",
    "paired_coverage_delta",
    "percentile_intervals",
    "risk_coverage",
    "selective_rows",
    "target_label",
]

DEFAULT_TARGETS = (0.95, 0.99)
DEFAULT_COVERAGES = (0.5, 0.8)
BINS = 10
#: Resamples of the coverage interval (a statistic with a search in it: fewer than a mean's 2,000).
RESAMPLES = 1000
#: Points of the risk-coverage curve kept in summary.json and the reports (the curve's shape, not every tie).
CURVE_POINTS = 101
#: Thresholds a bootstrap resample tries at most (see coverage_intervals).
BOOTSTRAP_LEVELS = 2000
_EPS = 1e-9  # accuracy is compared as counts: correct >= target * admitted, up to float error


def target_label(target: float) -> str:
    """0.95 → ``95`` (as in ``coverage@95``), 0.999 → ``99.9``."""
    return f"{round(target * 100, 6):g}"


@dataclass(frozen=True)
class Levels:
    """A group's cases as the thresholds see them: the distinct confidences of the cases that can be auto-coded,
    highest first, how many cases each has and how many of those are correct; ``n`` counts every case."""

    confidence: np.ndarray  # float, descending, distinct
    cases: np.ndarray  # int, per level
    correct: np.ndarray  # int, per level
    n: int

    @property
    def admitted(self) -> np.ndarray:
        """Cases admitted at each level's threshold (that level and every higher one)."""
        return np.cumsum(self.cases)

    @property
    def admitted_correct(self) -> np.ndarray:
        return np.cumsum(self.correct)


def levels(confidence: Sequence[float | None], correct: Sequence[bool],
           abstained: Sequence[bool] | None = None) -> Levels:
    """The tie levels of a group: cases with a confidence and not declined can be auto-coded."""
    conf = np.array([np.nan if c is None else float(c) for c in confidence], dtype=np.float64)
    hit = np.asarray(correct, dtype=bool)
    eligible = ~np.isnan(conf)
    if abstained is not None:
        eligible &= ~np.asarray(abstained, dtype=bool)
    values, inverse = np.unique(-conf[eligible], return_inverse=True)  # ascending of -conf: highest first
    cases = np.bincount(inverse, minlength=values.size)
    right = np.bincount(inverse, weights=hit[eligible], minlength=values.size).astype(np.int64)
    return Levels(-values, cases.astype(np.int64), right, int(conf.size))


@dataclass(frozen=True)
class Coverage:
    """Coverage at a target: the share auto-coded, the threshold (None: nothing reaches the target) and the
    accuracy on the auto-coded cases."""

    target: float
    coverage: float
    threshold: float | None
    accuracy: float | None
    auto_coded: int
    n: int


def _best_level(admitted: np.ndarray, right: np.ndarray, target: float) -> int:
    """The deepest level whose admitted set is at least ``target`` accurate; -1 for none (rows: resamples)."""
    ok = (right >= target * admitted - _EPS) & (admitted > 0)
    if not ok.any():
        return -1
    return int(np.flatnonzero(ok)[-1])


def coverage_at(lv: Levels, target: float) -> Coverage:
    """The largest share of cases, taken in decreasing confidence (ties whole), at ``target`` accuracy or more."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target accuracy must be in (0, 1], got {target!r}")
    admitted, right = lv.admitted, lv.admitted_correct
    k = _best_level(admitted, right, target)
    if k < 0 or lv.n == 0:
        return Coverage(target, 0.0, None, None, 0, lv.n)
    return Coverage(target, float(admitted[k]) / lv.n, float(lv.confidence[k]), float(right[k]) / float(admitted[k]),
                    int(admitted[k]), lv.n)


def coverage_interval(lv: Levels, target: float, confidence: float = 0.95, resamples: int = RESAMPLES,
                      seed: int = 0) -> tuple[float, float] | None:
    """A percentile interval of coverage at ``target`` from the seeded case bootstrap (results/stats.py)."""
    return coverage_intervals(lv, (target,), confidence, resamples, seed)[target]


def coverage_intervals(lv: Levels, targets: Sequence[float], confidence: float = 0.95, resamples: int = RESAMPLES,
                       seed: int = 0) -> dict[float, tuple[float, float] | None]:
    """Percentile intervals of coverage at each target, from one set of seeded case resamples."""
    if lv.n == 0:
        return dict.fromkeys(targets)
    # Categories: (level, correct), (level, wrong), and one for the cases never auto-coded. Past
    # BOOTSTRAP_LEVELS levels, runs of consecutive levels are one category each: a resample then tries the
    # thresholds at the runs' edges only (a coverage resolution of 1/BOOTSTRAP_LEVELS of the levels), and
    # drawing counts of those categories is drawing the cases (their sum over a run is what they add up to).
    right, cases = lv.correct, lv.cases
    if cases.size > BOOTSTRAP_LEVELS:
        starts = np.unique(np.linspace(0, cases.size, BOOTSTRAP_LEVELS + 1).round().astype(np.int64))[:-1]
        right, cases = np.add.reduceat(right, starts), np.add.reduceat(cases, starts)
    size = cases.size
    counts = np.concatenate([right, cases - right, [lv.n - int(cases.sum())]])
    values: dict[float, list[np.ndarray]] = {t: [] for t in targets}
    for chunk in resampled_counts(counts, resamples, seed):
        for target in targets:
            values[target].append(_taken(chunk, size, target) / lv.n)
    return percentile_intervals(values, confidence)


def percentile_intervals(values: dict[float, list[np.ndarray]], confidence: float
                         ) -> dict[float, tuple[float, float] | None]:
    """Per target, the percentile interval at ``confidence`` of its resampled values (drawn in chunks)."""
    tail = (1.0 - confidence) / 2.0
    out: dict[float, tuple[float, float] | None] = {}
    for target, parts in values.items():
        low, high = np.quantile(np.concatenate(parts), [tail, 1.0 - tail])
        out[target] = (float(low), float(high))
    return out


def _taken(chunk: np.ndarray, size: int, target: float) -> np.ndarray:
    """Per row of resampled (level, correct) and (level, wrong) counts: the cases admitted at the deepest
    level still at ``target`` accuracy (0 where none is)."""
    hits = np.cumsum(chunk[:, :size], axis=1)
    admitted = hits + np.cumsum(chunk[:, size:2 * size], axis=1)
    ok = (hits >= target * admitted - _EPS) & (admitted > 0)
    deepest = size - 1 - np.argmax(ok[:, ::-1], axis=1)
    return np.where(ok.any(axis=1), admitted[np.arange(len(chunk)), deepest], 0)


def _categories(lv: Levels, confidence: Sequence[float | None], correct: Sequence[bool],
                abstained: Sequence[bool]) -> np.ndarray:
    """Each case's category among (level, correct), (level, wrong) and never auto-coded (2 × levels)."""
    size = lv.confidence.size
    position = {float(c): i for i, c in enumerate(lv.confidence)}
    out = np.full(len(confidence), 2 * size, dtype=np.int64)
    for i, (c, ok, declined) in enumerate(zip(confidence, correct, abstained, strict=True)):
        if c is not None and not declined:
            out[i] = position[float(c)] + (0 if ok else size)
    return out


Case = tuple[float | None, bool, bool]  # (confidence, correct, declined)


def paired_coverage_delta(base: Sequence[Case], new: Sequence[Case], target: float, confidence: float = 0.95,
                          resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float, float, float]:
    """Coverage at ``target`` of the new run minus the baseline's on the same paired cases ((confidence,
    correct, declined) each), with a percentile interval from resampling the pairs together (seeded):
    ``(base coverage, new coverage, delta, low, high)``."""
    n = len(base)
    if n == 0 or len(new) != n:
        raise ValueError(f"need the same positive number of paired cases, got {len(base)} and {len(new)}")
    runs = []
    for cases in (base, new):
        conf, hit, declined = zip(*cases, strict=True)
        lv = levels(conf, hit, declined)
        runs.append((lv, _categories(lv, conf, hit, declined), coverage_at(lv, target).coverage))
    rng = np.random.default_rng(seed)
    rows = max(1, 2_000_000 // n)
    deltas = []
    for start in range(0, resamples, rows):
        size = min(resamples, start + rows) - start
        idx = rng.integers(0, n, size=(size, n))
        taken = []
        for lv, category, _ in runs:
            width = 2 * lv.confidence.size + 1
            drawn = category[idx] + (np.arange(size) * width)[:, None]
            counts = np.bincount(drawn.ravel(), minlength=size * width).reshape(size, width)
            taken.append(_taken(counts, lv.confidence.size, target) / n)
        deltas.append(taken[1] - taken[0])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.concatenate(deltas), [tail, 1.0 - tail])
    return runs[0][2], runs[1][2], runs[1][2] - runs[0][2], float(low), float(high)


def risk_coverage(lv: Levels) -> list[tuple[float, float, float]]:
    """``(coverage, risk, threshold)`` at each distinct threshold, highest threshold first."""
    if lv.n == 0:
        return []
    admitted, right = lv.admitted, lv.admitted_correct
    return [(float(a) / lv.n, 1.0 - float(r) / float(a), float(t))
            for a, r, t in zip(admitted, right, lv.confidence, strict=True)]


def aurc(lv: Levels) -> float | None:
    """Area under the risk–coverage curve: each level's risk times the coverage it adds (a step function)."""
    if lv.n == 0 or lv.cases.size == 0:
        return None
    admitted, right = lv.admitted, lv.admitted_correct
    risk = 1.0 - right / admitted
    return float((risk * lv.cases).sum() / lv.n)


def accuracy_at_coverage(lv: Levels, coverage: float) -> float | None:
    """Accuracy of the smallest admitted set (ties whole) that covers at least ``coverage``; None when the
    cases that can be auto-coded cover less."""
    if lv.n == 0:
        return None
    admitted = lv.admitted
    reach = np.flatnonzero(admitted >= coverage * lv.n - _EPS)
    if reach.size == 0:
        return None
    k = int(reach[0])
    return float(lv.admitted_correct[k]) / float(admitted[k]) if admitted[k] else None


def calibration(confidence: Sequence[float], correct: Sequence[bool], bins: int = BINS) -> dict[str, Any]:
    """Expected calibration error over ``bins`` equal-width bins ([0, 0.1), ..., [0.9, 1.0]) and the bins:
    ``{"ece": ..., "bins": [{"low", "high", "n", "confidence", "accuracy"}, ...]}`` (empty bins have n 0)."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    n = np.bincount(which, minlength=bins)
    mean_conf = np.bincount(which, weights=conf, minlength=bins)
    mean_hit = np.bincount(which, weights=hit, minlength=bins)
    out = []
    ece = 0.0
    for b in range(bins):
        if n[b]:
            c, a = mean_conf[b] / n[b], mean_hit[b] / n[b]
            ece += n[b] / conf.size * abs(a - c)
        out.append({"low": b / bins, "high": (b + 1) / bins, "n": int(n[b]),
                    "confidence": float(mean_conf[b] / n[b]) if n[b] else None,
                    "accuracy": float(mean_hit[b] / n[b]) if n[b] else None})
    return {"ece": float(ece) if conf.size else None, "bins": out}


def curve_points(points: list[tuple[float, float, float]]) -> list[list[float]]:
    """At most CURVE_POINTS points of the curve, evenly spread over its levels, the last always kept."""
    if len(points) <= CURVE_POINTS:
        chosen = points
    else:
        step = (len(points) - 1) / (CURVE_POINTS - 1)
        chosen = [points[round(i * step)] for i in range(CURVE_POINTS)]
    return [[round(c, 6), round(r, 6), round(t, 6)] for c, r, t in chosen]


def _accuracy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return wilson(sum(bool(r.get("exact_match")) for r in rows), len(rows)).to_dict()


def group_row(rows: list[dict[str, Any]], targets: Sequence[float], seed: int,
              coverages: Sequence[float] = DEFAULT_COVERAGES, resamples: int = RESAMPLES) -> dict[str, Any]:
    """The selective numbers of one group's answered code queries."""
    conf = [r.get("confidence") for r in rows]
    hit = [bool(r.get("exact_match")) for r in rows]
    declined = [bool(r.get("abstained")) for r in rows]
    given = sum(c is not None for c in conf)
    row: dict[str, Any] = {
        "n": len(rows), "with_confidence": given, "abstained": wilson(sum(declined), len(rows)).to_dict(),
        "accuracy_answered": _accuracy([r for r, d in zip(rows, declined, strict=True) if not d]),
        "accuracy_abstained": _accuracy([r for r, d in zip(rows, declined, strict=True) if d]),
        "sources": sorted({r.get("confidence_source") for r in rows if r.get("confidence_source")}),
    }
    if not given:
        return {**row, "coverage": None, "aurc": None, "accuracy_at_coverage": None, "ece": None,
                "reliability": None, "curve": None}
    lv = levels(conf, hit, declined)
    coverage = {}
    intervals = coverage_intervals(lv, targets, resamples=resamples, seed=seed)
    for target in targets:
        at = coverage_at(lv, target)
        interval = intervals[target]
        coverage[target_label(target)] = {
            "target": target, "value": at.coverage, "low": interval[0] if interval else None,
            "high": interval[1] if interval else None, "threshold": at.threshold, "accuracy": at.accuracy,
            "auto_coded": at.auto_coded, "n": at.n}
    known = [(c, h) for c, h in zip(conf, hit, strict=True) if c is not None]
    cal = calibration([c for c, _ in known], [h for _, h in known])
    return {**row, "coverage": coverage, "aurc": aurc(lv),
            "accuracy_at_coverage": {target_label(c): accuracy_at_coverage(lv, c) for c in coverages},
            "ece": cal["ece"], "reliability": cal["bins"], "curve": curve_points(risk_coverage(lv))}


def selective_rows(records: Iterable[dict[str, Any]], seed: int = 0, targets: Sequence[float] = DEFAULT_TARGETS,
                   by: Sequence[str] = GROUP_KEYS, resamples: int = RESAMPLES) -> list[dict[str, Any]]:
    """One row per group of answered code queries (``by``: model, system and any varied dimension), in the
    order the groups first appear; [] when no case of the run has a confidence."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    any_confidence = False
    for record in answered(records):
        groups.setdefault(tuple(record.get(f) for f in by), []).append(record)
        any_confidence = any_confidence or record.get("confidence") is not None or bool(record.get("abstained"))
    if not any_confidence:
        return []
    return [{**dict(zip(by, key, strict=True)), **group_row(rows, targets, seed, resamples=resamples)}
            for key, rows in groups.items()]


def fill_repeat_agreement(records: Iterable[dict[str, Any]]) -> int:
    """``--medcode-repeats``: a case whose coder gave no confidence gets the share of its question's answered
    repeats that agree with its answer (the majority's share for a majority answer, less for a stray one; no
    code is an answer of its own), source ``repeats``. Returns how many records it filled, in place."""
    cases: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in answered(records):
        if record.get("repeat") is not None:
            key = (record["model"], record["system"], record.get("variant"), record.get("temperature"),
                   record["code"])
            cases.setdefault(key, []).append(record)
    filled = 0
    for rows in cases.values():
        votes = Counter(r.get("predicted_code") for r in rows)
        for r in rows:
            if r.get("confidence") is None:
                r["confidence"], r["confidence_source"] = votes[r.get("predicted_code")] / len(rows), "repeats"
                filled += 1
    return filled
