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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_medcode.results.documents import pooled as pooled_metric
from pytest_medcode.results.pairing import PairingError, pair_records
from pytest_medcode.results.rules import (
    DEFAULT_ALPHA,
    DEFAULT_DOCUMENT_MAX_DROP,
    DEFAULT_MAX_DROP,
    DEFAULT_MAX_ERROR_RATE,
    MaxDrop,
    Threshold,
    parse_max_drops,
)
from pytest_medcode.results.stats import bootstrap_mean, paired_bootstrap_delta, paired_exact_match_test, wilson
from pytest_medcode.vocabulary import (
    ERROR,
    GROUP_KEYS,
    METRICS,
    POOLED,
    RATE,
    answered,
    document_records,
    format_p,
    group_fields,
    group_label,
    query_records,
)

__all__ = ["Check", "GateSpec", "Verdict", "evaluate"]

_EPS = 1e-9


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
        noted = f", {n_warn} warning{'s' if n_warn != 1 else ''}" if n_warn else ""
        return f"all {len(self.checks)} check{'s' if len(self.checks) != 1 else ''} passed{noted}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "checks": [c.to_dict() for c in self.checks],
            "warnings": list(self.all_warnings),
        }



# -- evaluation --------------------------------------------------------------------------------


_Key = tuple[Any, ...]  # the values of a group's fields: (model, system, *the dimensions the run varies)
_Pair = tuple[dict[str, Any], dict[str, Any]]  # a case's record in the baseline and in this run


def _key(record: dict[str, Any], fields: Sequence[str]) -> _Key:
    return tuple(str(record[f]) if f in GROUP_KEYS else record.get(f) for f in fields)


def _scope(key: _Key, fields: Sequence[str]) -> str:
    return group_label(dict(zip(fields, key, strict=True)))


def _columns(records: Iterable[dict[str, Any]]) -> set[str]:
    """Every field some record has (a baseline recorded before a dimension existed lacks its column)."""
    return {f for r in records for f in r}


def _groups(records: Iterable[dict[str, Any]], fields: Sequence[str]) -> dict[_Key, list[dict[str, Any]]]:
    out: dict[_Key, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(_key(r, fields), []).append(r)
    return out


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
    m = METRICS[th.metric]
    done = answered(rows)
    values = [v for v in (_value(r, th.metric) for r in done) if v is not None]
    if m.kind == POOLED:  # not a per-case field: every answered case counts
        values = [1.0] * len(done)
    bound = "at least" if th.direction == "under" else "at most"
    if not values:
        why = (
            f"no {th.metric} values in the records (the metric was not computed; install the 'metrics' extra)"
            if m.optional and done
            else f"no {th.metric} values: not defined for this system (scope the limit, e.g. SYSTEM:{th.metric})"
            if done
            else "no answered cases to measure"
        )
        return Check("threshold", th.metric, scope, False, why, limit=th.limit, n=0)
    if m.kind == RATE:
        est = wilson(int(sum(values)), len(values))
    elif m.kind == POOLED:  # one value of the whole group, its interval a bootstrap over the cases
        est = pooled_metric(done, th.metric, seed)
        if est.value is None:
            return Check("threshold", th.metric, scope, False, f"no codes to measure {th.metric} on",
                         limit=th.limit, n=len(done))
    else:
        est = bootstrap_mean(values, seed=seed)
    assert est.value is not None and est.low is not None and est.high is not None
    observed = est.value
    ok = observed >= th.limit - _EPS if th.direction == "under" else observed <= th.limit + _EPS
    shown, limit = m.format(observed), m.format(th.limit)
    ci = f"95% CI {m.format(est.low)}–{m.format(est.high)}"
    if ok:
        reason = f"{m.label} {shown} ({ci}, n={len(values)}) is {bound} {limit}"
    else:
        word = "below" if th.direction == "under" else "above"
        reason = f"{m.label} {shown} ({ci}, n={len(values)}) is {word} the limit {limit}"
    warnings: tuple[str, ...] = ()
    if est.low < th.limit < est.high:
        warnings = (
            f"the limit {limit} lies inside the 95% CI ({m.format(est.low)}–"
            f"{m.format(est.high)}): a re-run could flip this check",
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


def _binary_regression(drop: MaxDrop, scope: str, pairs: list[_Pair], alpha: float) -> Check:
    metric, margin = drop.metric, drop.margin
    m = METRICS[metric]
    flip = m.lower_is_better

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
            f"{m.label} {word} {100 * worse:.1f} pp ({m.format(new_v)} vs "
            f"{m.format(base_v)} in the baseline; {res.lost} worse / {res.gained} better "
            f"of {res.n} paired cases)"
        )
        if worse > 0
        else (
            f"{m.label} {m.format(new_v)} vs {m.format(base_v)} in the "
            f"baseline ({res.lost} worse / {res.gained} better of {res.n} paired cases)"
        )
    )
    test = f"McNemar exact p = {format_p(res.p_value)}"
    allowed = m.format_margin(margin)
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
    drop: MaxDrop, scope: str, pairs: list[_Pair], alpha: float, seed: int
) -> Check:
    metric, margin = drop.metric, drop.margin
    m = METRICS[metric]
    usable = [
        (b, w)
        for b, w in ((_value(b, metric), _value(w, metric)) for b, w in pairs)
        if b is not None and w is not None
    ]
    if not usable:
        why = (
            f"no cases with {metric} in both runs (the metric was not computed; install the 'metrics' extra)"
            if m.optional
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
    ci = f"{level} paired bootstrap CI {m.format_delta(est.low)} to {m.format_delta(est.high)}"
    change = (
        f"{m.label} {m.format(new_mean)} vs {m.format(base_mean)} in the "
        f"baseline (Δ {m.format_delta(est.value)}, {ci}, {len(usable)} paired cases)"
    )
    allowed = m.format_margin(margin)
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
            f"low power: the CI half-width {m.format_margin(half)} is not below the allowed "
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
    errors = sum(1 for r in rows if r.get("outcome") == ERROR)
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
    used: set[tuple[str | None, str]] = set()
    # Code queries and document cases are judged apart, each on its own metrics (Metric.documents).
    for part, documents in ((query_records(records), False), (document_records(records), True)):
        if not part:
            continue
        part_baseline = None
        if baseline is not None:
            part_baseline = document_records(baseline) if documents else query_records(baseline)
        _judge(part, part_baseline, checks, warnings, used,
               thresholds=[t for t in thresholds if METRICS[t.metric].documents == documents],
               max_drops=[d for d in max_drops if METRICS[d.metric].documents == documents],
               alpha=alpha, max_error_rate=max_error_rate, seed=seed, documents=documents)
    for t in thresholds:
        if (t.system, t.metric) not in used:
            warnings.append(f"threshold {t.text} matched no cases in this run")
    return Verdict(all(c.passed for c in checks), tuple(checks), tuple(dict.fromkeys(warnings)))


def _judge(
    records: Sequence[dict[str, Any]],
    baseline: Sequence[dict[str, Any]] | None,
    checks: list[Check],
    warnings: list[str],
    used: set[tuple[str | None, str]],
    *,
    thresholds: Sequence[Threshold],
    max_drops: Sequence[MaxDrop],
    alpha: float,
    max_error_rate: float,
    seed: int,
    documents: bool,
) -> None:
    """The checks of one kind of case (code queries, or documents), added to ``checks``."""
    dims = group_fields(records)
    groups = _groups(records, dims)
    suffix = " documents" if documents else ""

    def scope_of(key: _Key) -> str:
        return _scope(key, dims) + suffix

    for key, rows in groups.items():
        checks.append(_error_check(scope_of(key), rows, max_error_rate))

    by_key = {(t.system, t.metric): t for t in thresholds}
    for key, rows in groups.items():
        for metric in dict.fromkeys(t.metric for t in thresholds):
            th = by_key.get((key[1], metric)) or by_key.get((None, metric))
            if th is None:
                continue
            used.add((th.system, metric))
            checks.append(_threshold_check(th, scope_of(key), rows, seed))

    if baseline is not None:
        default = DEFAULT_DOCUMENT_MAX_DROP if documents else DEFAULT_MAX_DROP
        drops = tuple(max_drops) or parse_max_drops(default)
        try:
            pairing = pair_records(baseline, records)
        except PairingError as exc:
            checks.append(Check("regression", "pairing", "run" + suffix, False, str(exc)))
            return
        warnings.extend(pairing.notes())
        by_group: dict[_Key, list[_Pair]] = {}
        pooled: dict[str, list[_Pair]] = {}
        for b, w in pairing.pairs:
            by_group.setdefault(_key(w, dims), []).append((b, w))
            pooled.setdefault(str(w["model"]), []).append((b, w))
        scopes = [(scope_of(key), by_group.get(key, [])) for key in groups]
        in_baseline = {scope_of(key) for key in _groups(baseline, dims)} if set(dims) <= _columns(baseline) \
            else set()
        for model, pairs in pooled.items():
            if len({_key(w, dims)[1:] for _, w in pairs}) > 1:  # several systems (or variants): pool them
                whole = "all cases" if len(dims) > len(GROUP_KEYS) else "all systems"
                scopes.append((f"{model} / {whole}{suffix}", pairs))
        if not pairing.pairs:
            what, items = ("document", "documents") if documents else ("case", "codes")
            checks.append(
                Check(
                    "regression",
                    "pairing",
                    "run" + suffix,
                    False,
                    f"no {what} of this run is in the baseline (paired by {', '.join(pairing.key_columns)}): "
                    + (f"the runs have the same models and systems but share no {items} (another --medcode-seed, "
                       "--medcode-sample or code list?)" if {scope_of(k) for k in groups} <= in_baseline
                       else f"wrong baseline, or other models, systems or {items}"),
                )
            )
            scopes = []
        for scope, pairs in scopes:
            if not pairs:
                warnings.append(f"{scope}: the baseline has it but no case in common with this run (they share "
                                "no codes), so not checked for regressions" if scope in in_baseline else
                                f"{scope}: not in the baseline, so not checked for regressions")
                continue
            answered = [(b, w) for b, w in pairs if b.get("outcome") != ERROR and w.get("outcome") != ERROR]
            for drop in drops:
                if METRICS[drop.metric].kind == RATE:
                    checks.append(_binary_regression(drop, scope, answered, alpha))
                else:
                    checks.append(_continuous_regression(drop, scope, answered, alpha, seed))
        for drop in drops:
            if METRICS[drop.metric].optional and not _has_metric(baseline, drop.metric):
                warnings.append(f"the baseline has no {drop.metric} values")
