"""The release gate: a pure function from records (and a baseline's records) to a verdict.

``evaluate(records, baseline, thresholds=..., max_drops=..., alpha=..., max_error_rate=...)``
returns a :class:`Verdict`: ``passed``, one :class:`Check` per rule and scope, and notes. Each rule is
a small function that returns its numbers as a result object (:class:`ThresholdResult`,
:class:`BinaryRegression`, :class:`ContinuousRegression`, :class:`ErrorRate`) so the statistics can
be tested apart from the sentences; the sentences a person reads, and the verdict as ``summary.json``
stores it, live in ``reports/verdict.py``. No I/O, no pytest: the plugin sets the session's exit status
from it and ``medcode compare`` prints it, so both always agree.

The rules (README, "Use it as a CI gate"):

- **Thresholds** (``--medcode-fail-under exact_match=0.45``, ``icd10cm:exact_match=0.3``): each
  (model, system) group's rate must reach the limit. A system-scoped limit replaces the unscoped one
  for that system. ``fabricated`` is the one lower-is-better metric: it takes
  ``--medcode-fail-over fabricated=0.1``, and ``fail-under`` refuses it (and ``fail-over`` refuses
  the others) so a limit can never silently point the wrong way.
- **Regression against a baseline** (``--medcode-max-drop exact_match=2pp``): cases pair by
  (model, system, code) (plus ``variant``/``temperature``/``repeat`` when both runs have them). Yes/no
  metrics use the exact McNemar test, continuous ones (digit_match, meteor, bertscore) a paired
  bootstrap CI of the mean difference. A check fails only when the drop exceeds the margin AND is
  significant at ``alpha``; when the runs disagree on too few cases for a drop just past the margin
  to reach significance, the check passes with a power warning ("cannot tell", not "no drop").
  Checked per (model, system) and, for a model run on several systems, pooled over them. A run that
  varies the description (``--medcode-variant``) or the temperature is judged per value of those too.
- **Coverage against a baseline** (``--medcode-max-drop coverage@95=5pp``): coverage at the target on the
  paired cases, new minus baseline, with a paired bootstrap interval over the cases; fails when the drop is
  past the margin and the interval excludes 0.
- **A carried threshold** (``--medcode-threshold-from-baseline``, or ``--medcode-threshold 0.83``): the
  accuracy on the cases the threshold auto-codes must stay at ``--medcode-threshold-accuracy`` (95 %); the
  baseline's threshold is the one that kept its coverage at that accuracy, per group.
- **Releases**: a baseline scored against another release of a code system than the run is refused (a
  failed check), or with ``pair-common`` (``--medcode-baseline-release-mismatch``) paired on the codes both
  releases have (results/releases.py).
- **Errors**: failed calls are left out of every rate, so a gate could be dodged by an outage; each
  (model, system) group fails when its share of failed calls exceeds ``max_error_rate``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_medcode.results.document_summary import pooled as pooled_metric
from pytest_medcode.results.pairing import Pairing, PairingError, pair_records
from pytest_medcode.results.releases import PAIR_COMMON, REFUSE, common_codes, mismatches, run_releases
from pytest_medcode.results.rules import (
    DEFAULT_ALPHA,
    DEFAULT_DOCUMENT_MAX_DROP,
    DEFAULT_MAX_DROP,
    DEFAULT_MAX_ERROR_RATE,
    MaxDrop,
    Threshold,
    coverage_target,
    parse_max_drops,
)
from pytest_medcode.results.selective import coverage_at, coverage_interval, levels, paired_coverage_delta
from pytest_medcode.results.stats import (
    Estimate,
    PairedResult,
    bootstrap_mean,
    paired_bootstrap_delta,
    paired_exact_match_test,
    wilson,
)
from pytest_medcode.vocabulary import (
    ERROR,
    GROUP_KEYS,
    METRICS,
    POOLED,
    RATE,
    Metric,
    answered,
    document_records,
    group_fields,
    group_label,
    query_records,
)

__all__ = [
    "AutoCoded",
    "BinaryRegression",
    "CarriedThreshold",
    "Check",
    "ContinuousRegression",
    "ErrorRate",
    "GateSpec",
    "NoCases",
    "NoCommonCases",
    "Note",
    "PairingFailed",
    "ReleaseMismatch",
    "ThresholdResult",
    "Verdict",
    "evaluate",
    "judge_binary",
    "judge_carried_threshold",
    "judge_continuous",
    "judge_coverage_drop",
    "judge_errors",
    "judge_threshold",
]

_EPS = 1e-9
_Pair = tuple[dict[str, Any], dict[str, Any]]  # (baseline record, new record)


@dataclass(frozen=True)
class GateSpec:
    """Everything the gate options say; ``active`` when any of them was given (gate mode)."""

    fail_under: tuple[Threshold, ...] = ()
    fail_over: tuple[Threshold, ...] = ()
    baseline: Path | None = None
    max_drops: tuple[MaxDrop, ...] = ()
    alpha: float = DEFAULT_ALPHA
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    #: --medcode-threshold-from-baseline / --medcode-threshold T: a confidence threshold the accuracy on the
    #: auto-coded cases is judged at (``threshold_accuracy``); see :func:`judge_carried_threshold`.
    threshold_from_baseline: bool = False
    carried_threshold: float | None = None
    threshold_accuracy: float = 0.95
    release_mismatch: str = REFUSE  # a baseline of another release: refuse, or pair the codes of both
    active: bool = False

    @property
    def thresholds(self) -> tuple[Threshold, ...]:
        return self.fail_under + self.fail_over

    @property
    def needs_confidence(self) -> bool:
        """A rule on coverage at a target accuracy or on a threshold: every answer needs a confidence."""
        return (any(coverage_target(m) is not None for m in (*(t.metric for t in self.thresholds),
                                                                *(d.metric for d in self.max_drops)))
                or self.threshold_from_baseline or self.carried_threshold is not None)

    def evaluate(
        self, records: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]] | None, seed: int = 0
    ) -> Verdict:
        return evaluate(
            records,
            baseline,
            thresholds=self.thresholds,
            max_drops=self.max_drops,
            alpha=self.alpha,
            max_error_rate=self.max_error_rate,
            seed=seed,
            threshold_from_baseline=self.threshold_from_baseline,
            carried_threshold=self.carried_threshold,
            threshold_accuracy=self.threshold_accuracy,
            release_mismatch=self.release_mismatch,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "fail_under": [t.text for t in self.fail_under],
            "fail_over": [t.text for t in self.fail_over],
            "baseline": str(self.baseline) if self.baseline else None,
            "max_drop": [d.text for d in self.max_drops],
            "alpha": self.alpha,
            "max_error_rate": self.max_error_rate,
            "threshold_from_baseline": self.threshold_from_baseline,
            "carried_threshold": self.carried_threshold,
            "threshold_accuracy": self.threshold_accuracy,
            "release_mismatch": self.release_mismatch,
        }


# -- what each rule found: the numbers, no sentences ---------------------------------------------


@dataclass(frozen=True)
class ThresholdResult:
    """A limit on one group's rate or mean: the estimate and its 95% interval. With nothing to measure,
    ``estimate`` is None and ``missing`` says why: ``unanswered``, ``not_computed`` (an optional metric
    without the extra), ``undefined`` (a metric this system lacks) or ``no_codes`` (a pooled metric)."""

    threshold: Threshold
    n: int = 0
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    missing: str | None = None

    @property
    def passed(self) -> bool:
        if self.estimate is None:
            return False
        limit = self.threshold.limit
        return self.estimate >= limit - _EPS if self.threshold.direction == "under" else self.estimate <= limit + _EPS

    @property
    def limit_inside(self) -> bool:
        """The limit lies strictly inside the interval: a re-run could flip the check."""
        return self.low is not None and self.high is not None and self.low < self.threshold.limit < self.high

    def check(self, scope: str) -> Check:
        th = self.threshold
        if self.estimate is None:
            return Check("threshold", th.metric, scope, False, self, limit=th.limit, n=self.n)
        assert self.low is not None and self.high is not None
        return Check("threshold", th.metric, scope, self.passed, self, observed=self.estimate, limit=th.limit,
                     n=self.n, ci=(self.low, self.high),
                     details={"direction": th.direction, "limit_scope": th.system or "all systems"})


@dataclass(frozen=True)
class BinaryRegression:
    """McNemar's exact test of a yes/no metric on paired cases, read in the metric's direction (a rise
    of ``fabricated`` is its drop). ``test.n == 0``: no pairs had the metric on both sides."""

    drop: MaxDrop
    test: PairedResult

    @property
    def flipped(self) -> bool:
        return METRICS[self.drop.metric].lower_is_better

    def _in_direction(self, rate: float | None) -> float | None:
        return None if rate is None else (1 - rate if self.flipped else rate)

    @property
    def base_value(self) -> float | None:
        return self._in_direction(self.test.base_rate)

    @property
    def new_value(self) -> float | None:
        return self._in_direction(self.test.new_rate)

    @property
    def worsening(self) -> float:
        """How much worse the new run is (> 0 worse, whatever the metric's direction)."""
        return -(self.test.delta or 0.0)

    @property
    def passed(self) -> bool:
        return self.test.n > 0 and not self.test.regressed

    @property
    def low_power(self) -> bool:
        """A drop just past the margin could not reach significance (a caught regression needs no caveat)."""
        return self.test.n > 0 and self.test.underpowered and not self.test.regressed

    @property
    def cases_past_margin(self) -> int:
        """The fewest cases lost (net) that exceed the margin."""
        return math.floor(self.drop.margin * self.test.n + _EPS) + 1

    def check(self, scope: str) -> Check:
        t = self.test
        if t.n == 0:
            return Check("regression", self.drop.metric, scope, False, self, limit=self.drop.margin)
        assert self.new_value is not None and self.base_value is not None
        return Check("regression", self.drop.metric, scope, self.passed, self, observed=self.new_value,
                     limit=self.drop.margin, n=t.n, p_value=t.p_value, baseline=self.base_value,
                     delta=self.new_value - self.base_value,
                     details={"test": "mcnemar_exact", "lost": t.lost, "gained": t.gained, "alpha": t.alpha,
                              "significant": t.significant, "exceeds_margin": t.exceeds_margin,
                              "underpowered": t.underpowered, "min_detectable_drop": t.min_detectable_drop})


@dataclass(frozen=True)
class ContinuousRegression:
    """A paired bootstrap interval (at ``1 - alpha``) of a score's mean difference, new minus baseline.
    ``n == 0``: no pairs had the score on both sides, and the numbers are None."""

    drop: MaxDrop
    alpha: float
    seed: int
    n: int = 0
    base_mean: float | None = None
    new_mean: float | None = None
    delta: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def exceeds_margin(self) -> bool:
        return self.delta is not None and self.delta < -self.drop.margin - _EPS

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (either way)."""
        return self.low is not None and self.high is not None and (self.high < 0 or self.low > 0)

    @property
    def regressed(self) -> bool:
        return self.exceeds_margin and self.high is not None and self.high < 0

    @property
    def passed(self) -> bool:
        return self.n > 0 and not self.regressed

    @property
    def half_width(self) -> float:
        return 0.0 if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def low_power(self) -> bool:
        """The interval is too wide to tell a drop just past the margin from noise."""
        return self.n > 0 and self.drop.margin > 0 and self.half_width >= self.drop.margin and not self.regressed

    def check(self, scope: str) -> Check:
        if self.n == 0:
            return Check("regression", self.drop.metric, scope, False, self, limit=self.drop.margin)
        assert self.low is not None and self.high is not None
        return Check("regression", self.drop.metric, scope, self.passed, self, observed=self.new_mean,
                     limit=self.drop.margin, n=self.n, baseline=self.base_mean, delta=self.delta,
                     ci=(self.low, self.high),
                     details={"test": "paired_bootstrap", "alpha": self.alpha, "significant": self.significant,
                              "exceeds_margin": self.exceeds_margin, "seed": self.seed})


@dataclass(frozen=True)
class ErrorRate:
    """One group's share of failed calls against the allowed share."""

    n: int
    errors: int
    max_error_rate: float

    @property
    def rate(self) -> float:
        return self.errors / self.n if self.n else 0.0

    @property
    def passed(self) -> bool:
        return self.rate <= self.max_error_rate + _EPS

    def check(self, scope: str) -> Check:
        return Check("errors", "error_rate", scope, self.passed, self, observed=self.rate,
                     limit=self.max_error_rate, n=self.n, details={"errors": self.errors})


@dataclass(frozen=True)
class AutoCoded:
    """What a threshold takes of one run's group: its answered cases, those auto-coded, the correct ones."""

    n: int = 0
    taken: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.taken if self.taken else None


@dataclass(frozen=True)
class CarriedThreshold:
    """The accuracy on the cases a confidence threshold auto-codes, against the accuracy they must keep.

    ``from_baseline``: the threshold is the baseline's (the one that kept its coverage at ``target``), and the
    baseline's own accuracy and coverage at it are given; else a fixed one. ``missing``: nothing to judge —
    ``no_confidence`` (this run's answers carry none), ``baseline_no_threshold`` (the baseline auto-codes
    nothing at the target), ``unanswered``. A run that auto-codes nothing at the threshold codes nothing
    wrong: it passes, with its coverage 0 said."""

    threshold: float | None
    target: float
    from_baseline: bool
    run: AutoCoded = field(default_factory=lambda: AutoCoded())
    base: AutoCoded = field(default_factory=lambda: AutoCoded())  # the baseline's, at the carried threshold
    missing: str | None = None

    @property
    def n(self) -> int:
        return self.run.n

    @property
    def auto_coded(self) -> int:
        return self.run.taken

    @property
    def correct(self) -> int:
        return self.run.correct

    @property
    def accuracy(self) -> float | None:
        return self.run.accuracy

    @property
    def base_accuracy(self) -> float | None:
        return self.base.accuracy

    @property
    def coverage(self) -> float:
        return self.run.taken / self.run.n if self.run.n else 0.0

    @property
    def passed(self) -> bool:
        if self.missing is not None:
            return False
        return self.auto_coded == 0 or self.correct >= self.target * self.auto_coded - _EPS

    def check(self, scope: str) -> Check:
        metric = f"accuracy@threshold {self.threshold:.3g}" if self.threshold is not None else "accuracy@threshold"
        interval = wilson(self.correct, self.auto_coded) if self.auto_coded else None
        return Check("carried_threshold", metric, scope, self.passed, self, observed=self.accuracy,
                     limit=self.target, n=self.auto_coded, baseline=self.base_accuracy,
                     delta=(self.accuracy - self.base_accuracy
                            if self.accuracy is not None and self.base_accuracy is not None else None),
                     ci=(interval.low, interval.high) if interval is not None else None,  # type: ignore[arg-type]
                     details={"threshold": self.threshold, "from_baseline": self.from_baseline,
                              "coverage": self.coverage, "cases": self.n})


@dataclass(frozen=True)
class NoCases:
    """The run had no cases at all."""

    def check(self, scope: str) -> Check:
        return Check("cases", "cases", scope, False, self)


@dataclass(frozen=True)
class PairingFailed:
    """The baseline could not be paired with the run (``message``: pairing.py's one line)."""

    message: str

    def check(self, scope: str) -> Check:
        return Check("regression", "pairing", scope, False, self)


@dataclass(frozen=True)
class ReleaseMismatch:
    """The baseline was scored against other releases: (system, baseline release, run release) each."""

    systems: tuple[tuple[str, str, str], ...]

    def check(self, scope: str) -> Check:
        return Check("regression", "release", scope, False, self)


@dataclass(frozen=True)
class NoCommonCases:
    """Pairing found no case in both runs; ``same_groups``: every group of the run is in the baseline."""

    documents: bool
    key_columns: tuple[str, ...]
    same_groups: bool

    def check(self, scope: str) -> Check:
        return Check("regression", "pairing", scope, False, self)


#: What a rule found, the numbers a check is made of.
Finding = (ThresholdResult | BinaryRegression | ContinuousRegression | ErrorRate | NoCases | PairingFailed
           | NoCommonCases | CarriedThreshold | ReleaseMismatch)


@dataclass(frozen=True)
class Note:
    """Something a reader of the verdict should know that is no check. ``kind``: ``pairing`` (``subject``
    is pairing.py's line), ``unmatched_threshold`` (a limit's text), ``unshared_scope`` and
    ``not_in_baseline`` (a scope), ``baseline_lacks_metric`` (a metric)."""

    kind: str
    subject: str


# -- the verdict -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One rule applied to one scope. ``observed``/``limit``/``baseline``/``delta`` are in the
    metric's units (rates as fractions); ``ci`` is the interval of ``observed`` (thresholds) or of
    ``delta`` (regressions); ``finding`` is the rule's result the numbers come from."""

    kind: str  # "threshold" | "regression" | "errors" | "cases"
    metric: str
    scope: str
    passed: bool
    finding: Finding
    observed: float | None = None
    limit: float | None = None
    n: int = 0
    p_value: float | None = None
    baseline: float | None = None
    delta: float | None = None
    ci: tuple[float, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """Every check, and the notes that are no check (how the runs paired, what was left unchecked)."""

    passed: bool
    checks: tuple[Check, ...]
    notes: tuple[Note, ...] = ()

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)


# -- the rules ---------------------------------------------------------------------------------


def _value(record: dict[str, Any], metric: str) -> float | None:
    value = record.get(metric)
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _values(records: Iterable[dict[str, Any]], metric: str) -> list[float]:
    return [v for v in (_value(r, metric) for r in records) if v is not None]


def _missing(m: Metric, done: Sequence[dict[str, Any]]) -> str:
    if not done:
        return "unanswered"
    return "not_computed" if m.optional else "undefined"


def _estimate(th: Threshold, n: int, est: Estimate) -> ThresholdResult:
    return ThresholdResult(th, n, est.value, est.low, est.high)


def judge_threshold(th: Threshold, rows: Sequence[dict[str, Any]], seed: int = 0) -> ThresholdResult:
    """One group against a limit: a Wilson interval for a rate, a seeded bootstrap for a mean, a bootstrap
    over the cases for a pooled metric (every answered case counts). Failed calls are left out."""
    target = coverage_target(th.metric)
    if target is not None:
        return judge_coverage(th, target, rows, seed)
    m = METRICS[th.metric]
    done = answered(rows)
    if m.kind == POOLED:
        if not done:
            return ThresholdResult(th, missing="unanswered")
        est = pooled_metric(done, th.metric, seed)
        if est.value is None:
            return ThresholdResult(th, n=len(done), missing="no_codes")
        return _estimate(th, len(done), est)
    values = _values(done, th.metric)
    if not values:
        return ThresholdResult(th, missing=_missing(m, done))
    if m.kind == RATE:
        return _estimate(th, len(values), wilson(int(sum(values)), len(values)))
    return _estimate(th, len(values), bootstrap_mean(values, seed=seed))


def judge_coverage(th: Threshold, target: float, rows: Sequence[dict[str, Any]], seed: int = 0) -> ThresholdResult:
    """The share auto-coded at ``target`` accuracy with its bootstrap interval (results/selective.py); a group
    whose answers carry no confidence has nothing to measure (``no_confidence``)."""
    done = answered(rows)
    if not done:
        return ThresholdResult(th, missing="unanswered")
    if all(r.get("confidence") is None for r in done):
        return ThresholdResult(th, n=len(done), missing="no_confidence")
    lv = levels([r.get("confidence") for r in done], [bool(r.get("exact_match")) for r in done],
                [bool(r.get("abstained")) for r in done])
    interval = coverage_interval(lv, target, seed=seed)
    assert interval is not None
    return ThresholdResult(th, len(done), coverage_at(lv, target).coverage, *interval)


def _auto_coded(rows: Sequence[dict[str, Any]], threshold: float) -> AutoCoded:
    """What ``threshold`` auto-codes of the answered cases: declined cases are never auto-coded."""
    done = answered(rows)
    taken = [r for r in done if r.get("confidence") is not None and not r.get("abstained")
             and float(r["confidence"]) >= threshold]
    return AutoCoded(len(done), len(taken), sum(bool(r.get("exact_match")) for r in taken))


def judge_carried_threshold(rows: Sequence[dict[str, Any]], target: float, threshold: float | None = None,
                            baseline: Sequence[dict[str, Any]] | None = None) -> CarriedThreshold:
    """The accuracy on what ``threshold`` auto-codes in ``rows``; without a threshold, the baseline's: the one
    that keeps its coverage at ``target`` (results/selective.py)."""
    from_baseline = threshold is None
    base = AutoCoded()
    if from_baseline:
        done = answered(baseline or ())
        threshold = coverage_at(levels([r.get("confidence") for r in done],
                                       [bool(r.get("exact_match")) for r in done],
                                       [bool(r.get("abstained")) for r in done]), target).threshold
        if threshold is None:
            return CarriedThreshold(None, target, True, missing="baseline_no_threshold")
        base = _auto_coded(done, threshold)
    assert threshold is not None
    done = answered(rows)
    if not done:
        return CarriedThreshold(threshold, target, from_baseline, missing="unanswered")
    if all(r.get("confidence") is None for r in done):
        return CarriedThreshold(threshold, target, from_baseline, AutoCoded(len(done)), missing="no_confidence")
    return CarriedThreshold(threshold, target, from_baseline, _auto_coded(done, threshold), base)


def judge_binary(drop: MaxDrop, pairs: Sequence[_Pair], alpha: float) -> BinaryRegression:
    """The exact McNemar test on the pairs where both runs have the metric."""
    metric = drop.metric
    flip = METRICS[metric].lower_is_better

    def good(r: dict[str, Any]) -> bool:
        return (not r.get(metric)) if flip else bool(r.get(metric))

    usable = [(b, w) for b, w in pairs if b.get(metric) is not None and w.get(metric) is not None]
    test = paired_exact_match_test([good(b) for b, _ in usable], [good(w) for _, w in usable], drop.margin, alpha)
    return BinaryRegression(drop, test)


def judge_continuous(drop: MaxDrop, pairs: Sequence[_Pair], alpha: float, seed: int = 0) -> ContinuousRegression:
    """The paired bootstrap interval of the mean difference on the pairs where both runs have the score."""
    both = [(b, w) for b, w in ((_value(b, drop.metric), _value(w, drop.metric)) for b, w in pairs)
            if b is not None and w is not None]
    if not both:
        return ContinuousRegression(drop, alpha, seed)
    base, new = [b for b, _ in both], [w for _, w in both]
    est = paired_bootstrap_delta(base, new, confidence=1.0 - alpha, seed=seed)
    return ContinuousRegression(drop, alpha, seed, len(both), sum(base) / len(base), sum(new) / len(new),
                                est.value, est.low, est.high)


def judge_errors(rows: Sequence[dict[str, Any]], max_error_rate: float) -> ErrorRate:
    """The share of failed calls in one group."""
    return ErrorRate(len(rows), sum(1 for r in rows if r.get("outcome") == ERROR), max_error_rate)


def judge_coverage_drop(drop: MaxDrop, target: float, pairs: Sequence[_Pair], alpha: float,
                        seed: int = 0) -> ContinuousRegression:
    """Coverage at ``target`` on the paired cases, new minus baseline, with a paired bootstrap interval (at
    ``1 - alpha``) resampling the pairs; no pairs with a confidence on both sides: nothing to compare."""
    def case(r: dict[str, Any]) -> tuple[float | None, bool, bool]:
        return r.get("confidence"), bool(r.get("exact_match")), bool(r.get("abstained"))

    if not pairs or all(b.get("confidence") is None for b, _ in pairs) or \
            all(w.get("confidence") is None for _, w in pairs):
        return ContinuousRegression(drop, alpha, seed)
    base, new, delta, low, high = paired_coverage_delta([case(b) for b, _ in pairs], [case(w) for _, w in pairs],
                                                        target, confidence=1.0 - alpha, seed=seed)
    return ContinuousRegression(drop, alpha, seed, len(pairs), base, new, delta, low, high)


def _judge_regression(drop: MaxDrop, pairs: Sequence[_Pair], alpha: float, seed: int) -> Finding:
    target = coverage_target(drop.metric)
    if target is not None:
        return judge_coverage_drop(drop, target, pairs, alpha, seed)
    if METRICS[drop.metric].kind == RATE:
        return judge_binary(drop, pairs, alpha)
    return judge_continuous(drop, pairs, alpha, seed)


# -- evaluation --------------------------------------------------------------------------------


_Key = tuple[Any, ...]  # the values of a group's fields: (model, system, *the dimensions the run varies)


def _key(record: dict[str, Any], fields: Sequence[str]) -> _Key:
    return tuple(str(record[f]) if f in GROUP_KEYS else record.get(f) for f in fields)


def _columns(records: Iterable[dict[str, Any]]) -> set[str]:
    """Every field some record has (a baseline recorded before a dimension existed lacks its column)."""
    return {f for r in records for f in r}


def _groups(records: Iterable[dict[str, Any]], fields: Sequence[str]) -> dict[_Key, list[dict[str, Any]]]:
    out: dict[_Key, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(_key(r, fields), []).append(r)
    return out


def _has_metric(records: Iterable[dict[str, Any]], metric: str) -> bool:
    return any(_value(r, metric) is not None for r in records)


def _kept(pairs: Iterable[_Pair]) -> list[_Pair]:
    """The pairs where both calls answered (failed calls are never regressions)."""
    return [(b, w) for b, w in pairs if b.get("outcome") != ERROR and w.get("outcome") != ERROR]


@dataclass(frozen=True)
class _Rules:
    """The gate's options for one kind of case (code queries, or documents)."""

    thresholds: tuple[Threshold, ...]
    max_drops: tuple[MaxDrop, ...]
    alpha: float
    max_error_rate: float
    seed: int
    documents: bool

    @property
    def drops(self) -> tuple[MaxDrop, ...]:
        """The margins, or the default one when a baseline came without any."""
        return self.max_drops or parse_max_drops(DEFAULT_DOCUMENT_MAX_DROP if self.documents else DEFAULT_MAX_DROP)

    @property
    def suffix(self) -> str:
        return " documents" if self.documents else ""


@dataclass(frozen=True)
class _Part:
    """One kind of case grouped by the dimensions its run varies."""

    records: Sequence[dict[str, Any]]
    dims: tuple[str, ...]
    groups: dict[_Key, list[dict[str, Any]]]
    suffix: str

    def scope(self, key: _Key) -> str:
        return group_label(dict(zip(self.dims, key, strict=True))) + self.suffix


@dataclass(frozen=True)
class _Judged:
    """What judging one kind of case (or its regressions) returns, in place of lists filled as it goes."""

    checks: tuple[Check, ...] = ()
    notes: tuple[Note, ...] = ()
    used: frozenset[tuple[str | None, str]] = frozenset()  # the (system, metric) of each threshold applied
    baseline: Sequence[dict[str, Any]] | None = None  # the baseline as the releases let it be paired


def evaluate(
    records: Sequence[dict[str, Any]],
    baseline: Sequence[dict[str, Any]] | None = None,
    *,
    thresholds: Sequence[Threshold] = (),
    max_drops: Sequence[MaxDrop] = (),
    alpha: float = DEFAULT_ALPHA,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    seed: int = 0,
    threshold_from_baseline: bool = False,
    carried_threshold: float | None = None,
    threshold_accuracy: float = 0.95,
    release_mismatch: str = REFUSE,
) -> Verdict:
    """Judge a run. Pure and deterministic: the same inputs give the same verdict.

    With a ``baseline`` and no ``max_drops``, exact match is checked with ``DEFAULT_MAX_DROP``. With
    ``threshold_from_baseline`` (a baseline needed) or a ``carried_threshold``, each code-query group's
    accuracy on what the threshold auto-codes must stay at ``threshold_accuracy``.
    """
    _check_options(alpha, max_error_rate)
    if not records:
        return Verdict(False, (NoCases().check("run"),))
    releases = _releases(records, baseline, release_mismatch) if baseline is not None else _Judged()
    baseline = releases.baseline if baseline is not None else None
    parts = [_judge(part, _baseline_part(baseline, documents),
                    _rules_for(documents, thresholds, max_drops, alpha, max_error_rate, seed))
             for part, documents in ((query_records(records), False), (document_records(records), True)) if part]
    if threshold_from_baseline or carried_threshold is not None:
        parts.append(_carried(query_records(records), _baseline_part(baseline, False), threshold_accuracy,
                              None if threshold_from_baseline else carried_threshold))
    return _verdict([releases, *parts], thresholds)


def _releases(records: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]], mode: str) -> _Judged:
    """The baseline as the gate may pair it: refused (None, a failed check) when it was scored against other
    releases, or cut to the codes both releases have with ``pair-common``; a baseline that recorded no
    release is taken as scored against the release bundled then, said once."""
    from pytest_medcode.codesystems import UNRECORDED_RELEASES, release_keys
    from pytest_medcode.codesystems.normalize import key

    base, new = run_releases(baseline, UNRECORDED_RELEASES), run_releases(records, UNRECORDED_RELEASES)
    # said when this run records the release the baseline lacks (two runs of before releases: nothing to say)
    assumed = [s for s in base.assumed if s in new.releases and s not in new.assumed]
    notes = [Note("unrecorded_release", ", ".join(f"{s} {base.releases[s]}" for s in assumed))] if assumed else []
    found = mismatches(base, new)
    if not found:
        return _Judged((), tuple(notes), baseline=baseline)
    if mode != PAIR_COMMON:
        return _Judged((ReleaseMismatch(found).check("run"),), tuple(notes), baseline=None)
    kept, left_out = common_codes(baseline, found, release_keys, key)
    said = "; ".join(f"{s} {a} and {b}" for s, a, b in found)
    return _Judged((), (*notes, Note("pair_common", f"{said} ({left_out} baseline case(s) left out)")),
                   baseline=kept)


def _carried(records: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]] | None, target: float,
             threshold: float | None) -> _Judged:
    """Each code-query group judged at the threshold: a fixed one, or its own group's in the baseline."""
    dims = group_fields(records)
    part = _Part(records, dims, _groups(records, dims), "")
    base = _groups(baseline or (), dims)
    # a group the baseline does not have has no threshold of its own to carry: said, as for its regressions
    carried = threshold is not None or baseline is None
    return _Judged(tuple(judge_carried_threshold(rows, target, threshold, base.get(key, [])).check(part.scope(key))
                         for key, rows in part.groups.items() if carried or key in base),
                   tuple(Note("not_in_baseline", part.scope(key)) for key in part.groups
                         if not carried and key not in base))


def _check_options(alpha: float, max_error_rate: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0.0 <= max_error_rate <= 1.0:
        raise ValueError(f"max_error_rate must be in [0, 1], got {max_error_rate!r}")


def _verdict(parts: Sequence[_Judged], thresholds: Sequence[Threshold]) -> Verdict:
    """The parts' checks and notes, and a note for each threshold no group used."""
    checks = tuple(c for p in parts for c in p.checks)
    used = {u for p in parts for u in p.used}
    unmatched = [Note("unmatched_threshold", t.text) for t in thresholds if (t.system, t.metric) not in used]
    notes = tuple(dict.fromkeys([*(n for p in parts for n in p.notes), *unmatched]))
    return Verdict(all(c.passed for c in checks), checks, notes)


def _rules_for(documents: bool, thresholds: Sequence[Threshold], max_drops: Sequence[MaxDrop], alpha: float,
               max_error_rate: float, seed: int) -> _Rules:
    """The options that apply to one kind of case: code queries and document cases are judged apart, each
    on its own metrics (Metric.documents)."""
    return _Rules(tuple(t for t in thresholds if _documents_metric(t.metric) == documents),
                  tuple(d for d in max_drops if _documents_metric(d.metric) == documents),
                  alpha, max_error_rate, seed, documents)


def _documents_metric(metric: str) -> bool:
    """Whether a metric judges document cases (coverage at a target is a code-query number)."""
    return coverage_target(metric) is None and METRICS[metric].documents


def _baseline_part(baseline: Sequence[dict[str, Any]] | None, documents: bool) -> list[dict[str, Any]] | None:
    if baseline is None:
        return None
    return document_records(baseline) if documents else query_records(baseline)


def _judge(records: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]] | None, rules: _Rules) -> _Judged:
    """The checks of one kind of case: error rates, then thresholds, then regressions."""
    dims = group_fields(records)
    part = _Part(records, dims, _groups(records, dims), rules.suffix)
    errors = [judge_errors(rows, rules.max_error_rate).check(part.scope(k)) for k, rows in part.groups.items()]
    applied = _applied_thresholds(part, rules.thresholds)
    limits = [judge_threshold(th, part.groups[k], rules.seed).check(part.scope(k)) for k, th in applied]
    regressions = _regressions(part, baseline, rules) if baseline is not None else _Judged()
    return _Judged((*errors, *limits, *regressions.checks), regressions.notes,
                   frozenset((th.system, th.metric) for _, th in applied))


def _applied_thresholds(part: _Part, thresholds: Sequence[Threshold]) -> list[tuple[_Key, Threshold]]:
    """Each group's limit per metric: its system's own, else the unscoped one."""
    by_key = {(t.system, t.metric): t for t in thresholds}
    metrics = dict.fromkeys(t.metric for t in thresholds)
    found = ((key, by_key.get((key[1], m)) or by_key.get((None, m))) for key in part.groups for m in metrics)
    return [(key, th) for key, th in found if th is not None]


def _regressions(part: _Part, baseline: Sequence[dict[str, Any]], rules: _Rules) -> _Judged:
    """The paired checks against the baseline, and what the pairing left unchecked."""
    run = "run" + part.suffix
    try:
        pairing = pair_records(baseline, part.records)
    except PairingError as exc:
        return _Judged((PairingFailed(str(exc)).check(run),))
    in_baseline = _baseline_scopes(part, baseline)
    notes = [Note("pairing", text) for text in pairing.notes()]
    if pairing.pairs:
        scoped = _scoped(_paired_scopes(part, pairing), in_baseline, rules)
    else:
        same = {part.scope(k) for k in part.groups} <= in_baseline
        scoped = _Judged((NoCommonCases(rules.documents, tuple(pairing.key_columns), same).check(run),))
    lacking = [Note("baseline_lacks_metric", d.metric) for d in rules.drops
               if coverage_target(d.metric) is None and METRICS[d.metric].optional
               and not _has_metric(baseline, d.metric)]
    return _Judged(scoped.checks, (*notes, *scoped.notes, *lacking))


def _scoped(scopes: Sequence[tuple[str, list[_Pair]]], in_baseline: set[str], rules: _Rules) -> _Judged:
    """Every margin tested on each scope's answered pairs; a scope without pairs is said, not checked."""
    checks: list[Check] = []
    notes: list[Note] = []
    for scope, pairs in scopes:
        if not pairs:
            notes.append(Note("unshared_scope" if scope in in_baseline else "not_in_baseline", scope))
            continue
        kept = _kept(pairs)
        checks += [_judge_regression(d, kept, rules.alpha, rules.seed).check(scope) for d in rules.drops]
    return _Judged(tuple(checks), tuple(notes))


def _baseline_scopes(part: _Part, baseline: Sequence[dict[str, Any]]) -> set[str]:
    """The run's scopes the baseline has (none when it lacks a dimension the run varies)."""
    if not set(part.dims) <= _columns(baseline):
        return set()
    return {part.scope(key) for key in _groups(baseline, part.dims)}


def _paired_scopes(part: _Part, pairing: Pairing) -> list[tuple[str, list[_Pair]]]:
    """The pairs of each group, then of each model over all its systems (or variants) when it has several."""
    by_group: dict[_Key, list[_Pair]] = {}
    by_model: dict[str, list[_Pair]] = {}
    for b, w in pairing.pairs:
        by_group.setdefault(_key(w, part.dims), []).append((b, w))
        by_model.setdefault(str(w["model"]), []).append((b, w))
    scopes = [(part.scope(key), by_group.get(key, [])) for key in part.groups]
    whole = "all cases" if len(part.dims) > len(GROUP_KEYS) else "all systems"
    for model, pairs in by_model.items():
        if len({_key(w, part.dims)[1:] for _, w in pairs}) > 1:
            scopes.append((f"{model} / {whole}{part.suffix}", pairs))
    return scopes
