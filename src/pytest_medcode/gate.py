"""The release gate: a pure function from records (and a baseline's records) to a verdict.

``evaluate(records, baseline, thresholds=..., max_drops=..., alpha=..., max_error_rate=...)``
returns a :class:`Verdict`: ``passed``, one :class:`Check` per rule and scope with the numbers and
a reason a person can read, and warnings. No I/O, no pytest: the plugin sets the session's exit
status from it and ``medcode compare`` prints it, so both always agree.

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
- **Errors**: failed calls are left out of every rate, so a gate could be dodged by an outage; each
  (model, system) group fails when its share of failed calls exceeds ``max_error_rate``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_medcode.compare import PairingError, pair_records
from pytest_medcode.stats import bootstrap_mean, paired_bootstrap_delta, paired_exact_match_test, wilson

__all__ = [
    "BINARY",
    "CONTINUOUS",
    "DEFAULT_ALPHA",
    "DEFAULT_MAX_DROP",
    "DEFAULT_MAX_ERROR_RATE",
    "LOWER_IS_BETTER",
    "METRICS",
    "Check",
    "GateSpec",
    "MaxDrop",
    "Threshold",
    "Verdict",
    "evaluate",
    "format_value",
    "parse_max_drops",
    "parse_thresholds",
    "render_verdict",
]

#: Yes/no per-case metrics (rates, Wilson CIs, McNemar for regressions).
BINARY: tuple[str, ...] = ("exact_match", "valid", "billable", "fabricated", "length_match")
#: Per-case scores in [0, 1] (means, bootstrap CIs, paired bootstrap for regressions).
CONTINUOUS: tuple[str, ...] = ("digit_match", "meteor", "bertscore")
METRICS: tuple[str, ...] = BINARY + CONTINUOUS
#: Metrics where a higher value is worse; they take ``fail-over`` limits and "rise" is their drop.
LOWER_IS_BETTER: frozenset[str] = frozenset({"fabricated"})
#: Columns that only some runs have (the similarity metrics need the ``metrics`` extra).
OPTIONAL_METRICS: frozenset[str] = frozenset({"meteor", "bertscore"})

DEFAULT_ALPHA = 0.05
DEFAULT_MAX_ERROR_RATE = 0.05
#: The margin used when a baseline is given without any ``--medcode-max-drop``.
DEFAULT_MAX_DROP = "exact_match=2pp"

_EPS = 1e-9
_ERROR = "error"


# -- the rules, as parsed from options ---------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """``metric`` must stay at or above (``under``) / at or below (``over``) ``limit``."""

    metric: str
    limit: float
    direction: str  # "under": fail when below; "over": fail when above
    system: str | None = None  # None: every system without its own limit

    @property
    def text(self) -> str:
        scope = f"{self.system}:" if self.system else ""
        return f"{scope}{self.metric}={self.limit:g}"


@dataclass(frozen=True)
class MaxDrop:
    """The largest tolerated worsening of ``metric`` against the baseline, in the metric's units."""

    metric: str
    margin: float

    @property
    def text(self) -> str:
        if self.metric in OPTIONAL_METRICS:
            return f"{self.metric}={self.margin:g}"
        return f"{self.metric}={_pp(self.margin)}"


def _split(items: Iterable[str] | str | None) -> list[str]:
    if items is None:
        return []
    if isinstance(items, str):
        items = [items]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _fraction(text: str, what: str, *, percent: str) -> float:
    """``0.45``, or ``45%``/``2pp`` (``percent`` is the accepted suffix) → a fraction in [0, 1]."""
    raw = text.strip().lower()
    scale = 1.0
    if raw.endswith(percent):
        raw, scale = raw[: -len(percent)].strip(), 0.01
    elif raw.endswith("%") or raw.endswith("pp"):
        hint = (
            "percentage points, e.g. 2pp, or a fraction, e.g. 0.02"
            if percent == "pp"
            else ("a fraction, e.g. 0.45, or a percentage, e.g. 45%")
        )
        raise ValueError(f"{what}: write {hint}")
    if not _NUMBER.match(raw):
        raise ValueError(f"{what}: {text.strip()!r} is not a number")
    value = float(raw) * scale
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what}: must be between 0 and 1 (or 0% and 100%), got {text.strip()!r}")
    return value


def _metric(name: str, item: str) -> str:
    metric = name.strip().lower().replace("-", "_")
    if metric not in METRICS:
        raise ValueError(f"{item!r}: unknown metric {name.strip()!r}; choose from {', '.join(METRICS)}")
    return metric


def parse_thresholds(
    items: Iterable[str] | str | None, direction: str, systems: Iterable[str] | None = None
) -> tuple[Threshold, ...]:
    """``["exact_match=0.45,valid=0.9", "icd10cm:exact_match=0.3"]`` → thresholds (last one wins).

    Raises ValueError with a one-line reason. ``systems`` (known system names) checks the scopes.
    """
    if direction not in ("under", "over"):
        raise ValueError(f"direction must be 'under' or 'over', got {direction!r}")
    known = set(systems) if systems is not None else None
    out: dict[tuple[str | None, str], Threshold] = {}
    for item in _split(items):
        left, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise ValueError(f"{item!r}: expected METRIC=LIMIT or SYSTEM:METRIC=LIMIT, e.g. exact_match=0.45")
        scope, colon, name = left.rpartition(":")
        system = scope.strip().lower() if colon else None
        if colon and not system:
            raise ValueError(f"{item!r}: empty system before ':'")
        if system is not None and known is not None and system not in known:
            raise ValueError(f"{item!r}: unknown system {system!r}; choose from {', '.join(sorted(known))}")
        metric = _metric(name, item)
        lower_better = metric in LOWER_IS_BETTER
        if direction == "under" and lower_better:
            raise ValueError(
                f"{item!r}: {metric} is lower-is-better; limit it with "
                f"--medcode-fail-over {metric}={value.strip()}"
            )
        if direction == "over" and not lower_better:
            raise ValueError(
                f"{item!r}: {metric} is higher-is-better; limit it with "
                f"--medcode-fail-under {metric}={value.strip()}"
            )
        limit = _fraction(value, repr(item), percent="%")
        out[(system, metric)] = Threshold(metric, limit, direction, system)
    return tuple(out.values())


def parse_max_drops(items: Iterable[str] | str | None) -> tuple[MaxDrop, ...]:
    """``["exact_match=2pp,digit_match=0.01"]`` → margins; ``pp`` is percentage points (1pp = 0.01)."""
    out: dict[str, MaxDrop] = {}
    for item in _split(items):
        name, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise ValueError(f"{item!r}: expected METRIC=MARGIN, e.g. exact_match=2pp or exact_match=0.02")
        if ":" in name:
            raise ValueError(f"{item!r}: margins apply to every system; drop the 'SYSTEM:' prefix")
        metric = _metric(name, item)
        margin = _fraction(value, repr(item), percent="pp")
        if margin >= 1.0:
            raise ValueError(f"{item!r}: a margin must be below 1 (100pp)")
        out[metric] = MaxDrop(metric, margin)
    return tuple(out.values())


@dataclass(frozen=True)
class GateSpec:
    """Everything the gate options say; ``active`` when any of them was given (gate mode)."""

    fail_under: tuple[Threshold, ...] = ()
    fail_over: tuple[Threshold, ...] = ()
    baseline: Path | None = None
    max_drops: tuple[MaxDrop, ...] = ()
    alpha: float = DEFAULT_ALPHA
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    active: bool = False

    @property
    def thresholds(self) -> tuple[Threshold, ...]:
        return self.fail_under + self.fail_over

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
        }


# -- the verdict -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One rule applied to one scope. ``observed``/``limit``/``baseline``/``delta`` are in the
    metric's units (rates as fractions); ``ci`` is the interval of ``observed`` (thresholds) or of
    ``delta`` (regressions)."""

    kind: str  # "threshold" | "regression" | "errors" | "cases"
    metric: str
    scope: str
    passed: bool
    reason: str
    observed: float | None = None
    limit: float | None = None
    n: int = 0
    p_value: float | None = None
    baseline: float | None = None
    delta: float | None = None
    ci: tuple[float, float] | None = None
    warnings: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ci"] = list(self.ci) if self.ci is not None else None
        data["warnings"] = list(self.warnings)
        return data


@dataclass(frozen=True)
class Verdict:
    passed: bool
    checks: tuple[Check, ...]
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def all_warnings(self) -> tuple[str, ...]:
        return self.warnings + tuple(f"{c.metric} {c.scope}: {w}" for c in self.checks for w in c.warnings)

    @property
    def reason(self) -> str:
        if not self.passed:
            first = self.failed[0]
            more = len(self.failed) - 1
            tail = f" (and {more} more failed check{'s' if more != 1 else ''})" if more else ""
            return f"{first.metric} {first.scope}: {first.reason}{tail}"
        n_warn = len(self.all_warnings)
        more = f", {n_warn} warning{'s' if n_warn != 1 else ''}" if n_warn else ""
        return f"all {len(self.checks)} check{'s' if len(self.checks) != 1 else ''} passed{more}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "checks": [c.to_dict() for c in self.checks],
            "warnings": list(self.all_warnings),
        }


# -- formatting --------------------------------------------------------------------------------


def _pp(fraction: float) -> str:
    return f"{round(100 * fraction, 6):g}pp"


def format_value(metric: str, value: float | None) -> str:
    """A metric value as people read it: rates in percent, similarity scores with 3 decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if metric in OPTIONAL_METRICS:
        return f"{value:.3f}"
    return f"{100 * value:.1f}%"


def check_cells(check: dict[str, Any]) -> dict[str, str]:
    """A saved check (``summary.json`` ``gate.checks``) as the text of a report's table row."""
    p = check.get("p_value")
    observed = (f"{100 * (check.get('observed') or 0):.1f}%" if check["kind"] == "errors"
                else format_value(check["metric"], check.get("observed")))
    return {
        "result": "pass" if check["passed"] else "FAIL",
        "check": check["kind"],
        "metric": check["metric"],
        "scope": check["scope"],
        "observed": observed,
        "baseline": "-" if check.get("baseline") is None else format_value(check["metric"], check["baseline"]),
        "p": "-" if p is None else f"{p:.3g}",
        "reason": check["reason"],
    }


def format_delta(metric: str, delta: float) -> str:
    if metric in OPTIONAL_METRICS:
        return f"{delta:+.3f}"
    return f"{100 * delta:+.1f} pp"


def format_margin(metric: str, margin: float) -> str:
    if metric in OPTIONAL_METRICS:
        return f"{margin:.3f}"
    return f"{100 * margin:.1f} pp"


def format_p(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _label(metric: str) -> str:
    return metric.replace("_", " ")


# -- evaluation --------------------------------------------------------------------------------


#: Case dimensions besides model and system; a run that varies one is judged per value of it.
DIMENSIONS: tuple[str, ...] = ("variant", "temperature")
_Key = tuple[Any, ...]  # (model, system, *values of the run's varying DIMENSIONS)


def _dimensions(records: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(d for d in DIMENSIONS if len({r.get(d) for r in records}) > 1)


def _key(record: dict[str, Any], dims: Sequence[str]) -> _Key:
    return (str(record["model"]), str(record["system"]), *(record.get(d) for d in dims))


def _scope(key: _Key, dims: Sequence[str] = ()) -> str:
    """``gpt-4 / icd10cm``, with the run's other dimensions: ``gpt-4 / icd10cm [typo] T=0.6``."""
    text = f"{key[0]} / {key[1]}"
    for dim, value in zip(dims, key[2:], strict=True):
        text += (
            f" [{value}]"
            if dim == "variant"
            else f" T={value}"
            if dim == "temperature"
            else f" {dim}={value}"
        )
    return text


def _groups(records: Iterable[dict[str, Any]], dims: Sequence[str]) -> dict[_Key, list[dict[str, Any]]]:
    out: dict[_Key, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(_key(r, dims), []).append(r)
    return out


def _answered(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("outcome") != _ERROR]


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


def _has_metric(records: Iterable[dict[str, Any]], metric: str) -> bool:
    return any(_value(r, metric) is not None for r in records)


def _threshold_check(th: Threshold, scope: str, rows: list[dict[str, Any]], seed: int) -> Check:
    answered = _answered(rows)
    values = [v for v in (_value(r, th.metric) for r in answered) if v is not None]
    bound = "at least" if th.direction == "under" else "at most"
    if not values:
        why = (
            f"no {th.metric} values in the records (the metric was not computed; install the 'metrics' extra)"
            if th.metric in OPTIONAL_METRICS and answered
            else "no answered cases to measure"
        )
        return Check("threshold", th.metric, scope, False, why, limit=th.limit, n=0)
    if th.metric in BINARY:
        est = wilson(int(sum(values)), len(values))
    else:
        est = bootstrap_mean(values, seed=seed)
    assert est.value is not None and est.low is not None and est.high is not None
    observed = est.value
    ok = observed >= th.limit - _EPS if th.direction == "under" else observed <= th.limit + _EPS
    shown, limit = format_value(th.metric, observed), format_value(th.metric, th.limit)
    ci = f"95% CI {format_value(th.metric, est.low)}–{format_value(th.metric, est.high)}"
    if ok:
        reason = f"{_label(th.metric)} {shown} ({ci}, n={len(values)}) is {bound} {limit}"
    else:
        word = "below" if th.direction == "under" else "above"
        reason = f"{_label(th.metric)} {shown} ({ci}, n={len(values)}) is {word} the limit {limit}"
    warnings = ()
    if est.low < th.limit < est.high:
        warnings = (
            f"the limit {limit} lies inside the 95% CI ({format_value(th.metric, est.low)}–"
            f"{format_value(th.metric, est.high)}): a re-run could flip this check",
        )
    return Check(
        "threshold",
        th.metric,
        scope,
        ok,
        reason,
        observed=observed,
        limit=th.limit,
        n=len(values),
        ci=(est.low, est.high),
        warnings=warnings,
        details={"direction": th.direction, "limit_scope": th.system or "all systems"},
    )


def _binary_regression(drop: MaxDrop, scope: str, pairs: list[tuple[dict, dict]], alpha: float) -> Check:
    metric, margin = drop.metric, drop.margin
    flip = metric in LOWER_IS_BETTER

    def good(r: dict[str, Any]) -> bool:
        return (not r.get(metric)) if flip else bool(r.get(metric))

    usable = [(b, w) for b, w in pairs if b.get(metric) is not None and w.get(metric) is not None]
    res = paired_exact_match_test([good(b) for b, _ in usable], [good(w) for _, w in usable], margin, alpha)
    if res.n == 0:
        return Check(
            "regression",
            metric,
            scope,
            False,
            "no cases in common with the baseline to compare",
            limit=margin,
            n=0,
        )
    assert res.base_rate is not None and res.new_rate is not None and res.delta is not None
    base_v = 1 - res.base_rate if flip else res.base_rate
    new_v = 1 - res.new_rate if flip else res.new_rate
    worse = -res.delta  # > 0 means worse, whatever the metric's direction
    word = "rose" if flip else "dropped"
    change = (
        (
            f"{_label(metric)} {word} {100 * worse:.1f} pp ({format_value(metric, new_v)} vs "
            f"{format_value(metric, base_v)} in the baseline; {res.lost} worse / {res.gained} better "
            f"of {res.n} paired cases)"
        )
        if worse > 0
        else (
            f"{_label(metric)} {format_value(metric, new_v)} vs {format_value(metric, base_v)} in the "
            f"baseline ({res.lost} worse / {res.gained} better of {res.n} paired cases)"
        )
    )
    test = f"McNemar exact p = {format_p(res.p_value)}"
    allowed = format_margin(metric, margin)
    if res.regressed:
        reason = f"{change}; {test} < {alpha:g} and beyond the allowed {allowed}"
    elif res.exceeds_margin:
        reason = f"{change}; beyond the allowed {allowed} but not significant ({test} ≥ {alpha:g})"
    elif worse > 0 and res.significant:
        reason = f"{change}; significant ({test}) but within the allowed {allowed}"
    else:
        reason = f"{change}; {test}; allowed {allowed}"
    warnings: tuple[str, ...] = ()
    if res.underpowered and not res.regressed:  # a caught regression needs no power caveat
        d = res.lost + res.gained
        k = math.floor(margin * res.n + _EPS) + 1
        detectable = (
            f"the smallest drop this churn could show is {100 * res.min_detectable_drop:.1f} pp"
            if res.min_detectable_drop is not None
            else "no drop could reach significance"
        )
        warnings = (
            f"low power: {d} discordant pair{'s' if d != 1 else ''} among {res.n} cases; a worsening "
            f"of {k} case{'s' if k != 1 else ''} (just past the allowed {allowed}) could not reach "
            f"p < {alpha:g} — {detectable}; this pass means 'cannot tell', not 'no drop'",
        )
    return Check(
        "regression",
        metric,
        scope,
        not res.regressed,
        reason,
        observed=new_v,
        limit=margin,
        n=res.n,
        p_value=res.p_value,
        baseline=base_v,
        delta=new_v - base_v,
        warnings=warnings,
        details={
            "test": "mcnemar_exact",
            "lost": res.lost,
            "gained": res.gained,
            "alpha": alpha,
            "significant": res.significant,
            "exceeds_margin": res.exceeds_margin,
            "underpowered": res.underpowered,
            "min_detectable_drop": res.min_detectable_drop,
        },
    )


def _continuous_regression(
    drop: MaxDrop, scope: str, pairs: list[tuple[dict, dict]], alpha: float, seed: int
) -> Check:
    metric, margin = drop.metric, drop.margin
    usable = [
        (b, w)
        for b, w in ((_value(b, metric), _value(w, metric)) for b, w in pairs)
        if b is not None and w is not None
    ]
    if not usable:
        why = (
            f"no cases with {metric} in both runs (the metric was not computed; install the 'metrics' extra)"
            if metric in OPTIONAL_METRICS
            else "no cases in common with the baseline to compare"
        )
        return Check("regression", metric, scope, False, why, limit=margin, n=0)
    base_vals = [b for b, _ in usable]
    new_vals = [w for _, w in usable]
    est = paired_bootstrap_delta(base_vals, new_vals, confidence=1.0 - alpha, seed=seed)
    assert est.value is not None and est.low is not None and est.high is not None
    base_mean, new_mean = sum(base_vals) / len(base_vals), sum(new_vals) / len(new_vals)
    exceeds = est.value < -margin - _EPS
    significant = est.high < 0 or est.low > 0
    regressed = exceeds and est.high < 0
    level = f"{100 * (1 - alpha):g}%"
    ci = f"{level} paired bootstrap CI {format_delta(metric, est.low)} to {format_delta(metric, est.high)}"
    change = (
        f"{_label(metric)} {format_value(metric, new_mean)} vs {format_value(metric, base_mean)} in the "
        f"baseline (Δ {format_delta(metric, est.value)}, {ci}, {len(usable)} paired cases)"
    )
    allowed = format_margin(metric, margin)
    if regressed:
        reason = f"{change}; the drop is beyond the allowed {allowed} and the CI excludes 0"
    elif exceeds:
        reason = f"{change}; beyond the allowed {allowed} but the CI includes 0: not significant"
    else:
        reason = f"{change}; allowed {allowed}"
    warnings: tuple[str, ...] = ()
    half = (est.high - est.low) / 2
    if margin > 0 and half >= margin and not regressed:
        warnings = (
            f"low power: the CI half-width {format_margin(metric, half)} is not below the allowed "
            f"drop {allowed}, so a drop just past it could not be told from noise",
        )
    return Check(
        "regression",
        metric,
        scope,
        not regressed,
        reason,
        observed=new_mean,
        limit=margin,
        n=len(usable),
        baseline=base_mean,
        delta=est.value,
        ci=(est.low, est.high),
        warnings=warnings,
        details={
            "test": "paired_bootstrap",
            "alpha": alpha,
            "significant": significant,
            "exceeds_margin": exceeds,
            "seed": seed,
        },
    )


def _error_check(scope: str, rows: list[dict[str, Any]], max_error_rate: float) -> Check:
    n = len(rows)
    errors = sum(1 for r in rows if r.get("outcome") == _ERROR)
    rate = errors / n if n else 0.0
    ok = rate <= max_error_rate + _EPS
    word = "within" if ok else "above"
    reason = (
        f"{errors} of {n} calls failed ({100 * rate:.1f}%), {word} the allowed {100 * max_error_rate:.1f}%"
    )
    return Check(
        "errors",
        "error_rate",
        scope,
        ok,
        reason,
        observed=rate,
        limit=max_error_rate,
        n=n,
        details={"errors": errors},
    )


def evaluate(
    records: Sequence[dict[str, Any]],
    baseline: Sequence[dict[str, Any]] | None = None,
    *,
    thresholds: Sequence[Threshold] = (),
    max_drops: Sequence[MaxDrop] = (),
    alpha: float = DEFAULT_ALPHA,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    seed: int = 0,
) -> Verdict:
    """Judge a run. Pure and deterministic: the same inputs give the same verdict.

    With a ``baseline`` and no ``max_drops``, exact match is checked with ``DEFAULT_MAX_DROP``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0.0 <= max_error_rate <= 1.0:
        raise ValueError(f"max_error_rate must be in [0, 1], got {max_error_rate!r}")
    checks: list[Check] = []
    warnings: list[str] = []
    if not records:
        checks.append(
            Check("cases", "cases", "run", False, "no benchmark cases ran, so nothing could be checked")
        )
        return Verdict(False, tuple(checks))
    dims = _dimensions(records)
    groups = _groups(records, dims)

    for key, rows in groups.items():
        checks.append(_error_check(_scope(key, dims), rows, max_error_rate))

    by_key = {(t.system, t.metric): t for t in thresholds}
    used: set[tuple[str | None, str]] = set()
    for key, rows in groups.items():
        for metric in dict.fromkeys(t.metric for t in thresholds):
            th = by_key.get((key[1], metric)) or by_key.get((None, metric))
            if th is None:
                continue
            used.add((th.system, metric))
            checks.append(_threshold_check(th, _scope(key, dims), rows, seed))
    for t in thresholds:
        if (t.system, t.metric) not in used:
            warnings.append(f"threshold {t.text} matched no cases in this run")

    if baseline is not None:
        drops = tuple(max_drops) or parse_max_drops(DEFAULT_MAX_DROP)
        try:
            pairing = pair_records(baseline, records)
        except PairingError as exc:
            checks.append(Check("regression", "pairing", "run", False, str(exc)))
            return Verdict(False, tuple(checks), tuple(warnings))
        warnings.extend(pairing.notes())
        by_group: dict[_Key, list[tuple[dict, dict]]] = {}
        pooled: dict[str, list[tuple[dict, dict]]] = {}
        for b, w in pairing.pairs:
            by_group.setdefault(_key(w, dims), []).append((b, w))
            pooled.setdefault(str(w["model"]), []).append((b, w))
        scopes = [(_scope(key, dims), by_group.get(key, [])) for key in groups]
        for model, pairs in pooled.items():
            if len({_key(w, dims)[1:] for _, w in pairs}) > 1:  # several systems (or variants): pool them
                scopes.append((f"{model} / {'all cases' if dims else 'all systems'}", pairs))
        if not pairing.pairs:
            checks.append(
                Check(
                    "regression",
                    "pairing",
                    "run",
                    False,
                    f"no case of this run is in the baseline (paired by {', '.join(pairing.key_columns)}): "
                    "wrong baseline, or other models, systems or codes",
                )
            )
            scopes = []
        for scope, pairs in scopes:
            if not pairs:
                warnings.append(f"{scope}: not in the baseline, so not checked for regressions")
                continue
            answered = [(b, w) for b, w in pairs if b.get("outcome") != _ERROR and w.get("outcome") != _ERROR]
            for drop in drops:
                if drop.metric in BINARY:
                    checks.append(_binary_regression(drop, scope, answered, alpha))
                else:
                    checks.append(_continuous_regression(drop, scope, answered, alpha, seed))
        for drop in drops:
            if drop.metric in OPTIONAL_METRICS and not _has_metric(baseline, drop.metric):
                warnings.append(f"the baseline has no {drop.metric} values")

    return Verdict(all(c.passed for c in checks), tuple(checks), tuple(dict.fromkeys(warnings)))


# -- terminal ----------------------------------------------------------------------------------


def render_verdict(verdict: Verdict) -> list[str]:
    """Lines for a terminal: one per check (passing error-rate checks folded into one line), the
    warnings, then the verdict and its reason as the last line."""
    lines: list[str] = []
    quiet = [c for c in verdict.checks if c.kind == "errors" and c.passed]
    for c in verdict.checks:
        if c.kind == "errors" and c.passed:
            continue
        mark = "PASS" if c.passed else "FAIL"
        lines.append(f"{mark} {c.kind} {c.metric} [{c.scope}]: {c.reason}")
    if quiet:
        worst = max(c.observed or 0.0 for c in quiet)
        lines.append(
            f"PASS errors: failed calls within the allowed {100 * (quiet[0].limit or 0):.1f}% in "
            f"{len(quiet)} group{'s' if len(quiet) != 1 else ''} (worst {100 * worst:.1f}%)"
        )
    for w in verdict.all_warnings:
        lines.append(f"warning: {w}")
    head = "medcode gate PASSED" if verdict.passed else "medcode gate FAILED"
    lines.append(f"{head}: {verdict.reason}")
    return lines
