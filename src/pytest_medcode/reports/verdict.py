"""The gate's verdict as text: each check's reason and warnings, the verdict's reason, the terminal's
lines, a report's table cells, and ``medcode compare``'s paired table. The numbers are the rules'
results (``results/gate.py``); only their wording lives here, as plain functions of a check or a
verdict, and ``verdict_dict`` (``summary.json``'s ``gate``, ``medcode compare --json``) uses the same
sentences as the terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_medcode.reports.text import aligned
from pytest_medcode.results.gate import (
    BinaryRegression,
    CarriedThreshold,
    Check,
    ContinuousRegression,
    ErrorRate,
    NoCases,
    NoCommonCases,
    Note,
    PairingFailed,
    ReleaseMismatch,
    ThresholdResult,
    Verdict,
)
from pytest_medcode.vocabulary import format_p, metric

__all__ = ["all_warnings", "check_cells", "check_dict", "check_reason", "check_warnings", "comparison_lines",
           "note_text", "render_verdict", "verdict_dict", "verdict_reason", "verdict_warnings"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


# -- thresholds ----------------------------------------------------------------------------------

_MISSING: dict[str, str] = {
    "unanswered": "no answered cases to measure",
    "not_computed": "no {metric} values in the records (the metric was not computed; install the 'metrics' extra)",
    "undefined": "no {metric} values: not defined for this system (scope the limit, e.g. SYSTEM:{metric})",
    "no_codes": "no codes to measure {metric} on",
    "no_confidence": "no confidence in the answers to measure {metric} on (the coder gives none; LLM coders "
                     "give one from log-probabilities, --medcode-repeats from agreement)",
}


def _interval(r: ThresholdResult) -> str:
    m = metric(r.threshold.metric)
    return f"{m.format(r.low)}–{m.format(r.high)}"


def _threshold_reason(r: ThresholdResult) -> str:
    th = r.threshold
    if r.estimate is None:
        return _MISSING[r.missing or "unanswered"].format(metric=th.metric)
    m = metric(th.metric)
    head = f"{m.label} {m.format(r.estimate)} (95% CI {_interval(r)}, n={r.n})"
    under = th.direction == "under"
    if r.passed:
        return f"{head} is {'at least' if under else 'at most'} {m.format(th.limit)}"
    return f"{head} is {'below' if under else 'above'} the limit {m.format(th.limit)}"


def _threshold_warnings(r: ThresholdResult) -> tuple[str, ...]:
    if not r.limit_inside:
        return ()
    limit = metric(r.threshold.metric).format(r.threshold.limit)
    return (f"the limit {limit} lies inside the 95% CI ({_interval(r)}): a re-run could flip this check",)


# -- regressions ---------------------------------------------------------------------------------

_NO_PAIRS = "no cases in common with the baseline to compare"


def _binary_change(r: BinaryRegression) -> str:
    m, t = metric(r.drop.metric), r.test
    versus = f"{m.format(r.new_value)} vs {m.format(r.base_value)} in the baseline"
    counts = f"{t.lost} worse / {t.gained} better of {t.n} paired cases"
    if r.worsening > 0:
        return f"{m.label} {'rose' if r.flipped else 'dropped'} {100 * r.worsening:.1f} pp ({versus}; {counts})"
    return f"{m.label} {versus} ({counts})"


def _binary_reason(r: BinaryRegression) -> str:
    t = r.test
    if t.n == 0:
        return _NO_PAIRS
    change, allowed = _binary_change(r), metric(r.drop.metric).format_margin(r.drop.margin)
    test = f"McNemar exact p = {format_p(t.p_value)}"
    if t.regressed:
        return f"{change}; {test} < {t.alpha:g} and beyond the allowed {allowed}"
    if t.exceeds_margin:
        return f"{change}; beyond the allowed {allowed} but not significant ({test} ≥ {t.alpha:g})"
    if r.worsening > 0 and t.significant:
        return f"{change}; significant ({test}) but within the allowed {allowed}"
    return f"{change}; {test}; allowed {allowed}"


def _binary_warnings(r: BinaryRegression) -> tuple[str, ...]:
    if not r.low_power:
        return ()
    t, allowed = r.test, metric(r.drop.metric).format_margin(r.drop.margin)
    detectable = (
        f"the smallest drop this churn could show is {100 * t.min_detectable_drop:.1f} pp"
        if t.min_detectable_drop is not None
        else "no drop could reach significance"
    )
    return (
        f"low power: {_plural(t.lost + t.gained, 'discordant pair')} among {t.n} cases; a worsening "
        f"of {_plural(r.cases_past_margin, 'case')} (just past the allowed {allowed}) could not reach "
        f"p < {t.alpha:g} — {detectable}; this pass means 'cannot tell', not 'no drop'",
    )


def _continuous_reason(r: ContinuousRegression) -> str:
    m = metric(r.drop.metric)
    if r.n == 0:
        if m.optional:
            return (f"no cases with {r.drop.metric} in both runs (the metric was not computed; install the "
                    "'metrics' extra)")
        return _NO_PAIRS
    assert r.delta is not None and r.low is not None and r.high is not None
    ci = (f"{100 * (1 - r.alpha):g}% paired bootstrap CI {m.format_delta(r.low)} to "
          f"{m.format_delta(r.high)}")
    change = (f"{m.label} {m.format(r.new_mean)} vs {m.format(r.base_mean)} in the baseline "
              f"(Δ {m.format_delta(r.delta)}, {ci}, {r.n} paired cases)")
    allowed = m.format_margin(r.drop.margin)
    if r.regressed:
        return f"{change}; the drop is beyond the allowed {allowed} and the CI excludes 0"
    if r.exceeds_margin:
        return f"{change}; beyond the allowed {allowed} but the CI includes 0: not significant"
    return f"{change}; allowed {allowed}"


def _continuous_warnings(r: ContinuousRegression) -> tuple[str, ...]:
    if not r.low_power:
        return ()
    m = metric(r.drop.metric)
    return (
        f"low power: the CI half-width {m.format_margin(r.half_width)} is not below the allowed "
        f"drop {m.format_margin(r.drop.margin)}, so a drop just past it could not be told from noise",
    )


# -- errors, and a run that could not be checked ---------------------------------------------------


def _errors_reason(r: ErrorRate) -> str:
    word = "within" if r.passed else "above"
    return (f"{r.errors} of {r.n} calls failed ({100 * r.rate:.1f}%), {word} the allowed "
            f"{100 * r.max_error_rate:.1f}%")


def _no_common_reason(r: NoCommonCases) -> str:
    what, items = ("document", "documents") if r.documents else ("case", "codes")
    why = (f"the runs have the same models and systems but share no {items} (another --medcode-seed, "
           "--medcode-sample or code list?)" if r.same_groups
           else f"wrong baseline, or other models, systems or {items}")
    return f"no {what} of this run is in the baseline (paired by {', '.join(r.key_columns)}): {why}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _carried_reason(r: CarriedThreshold) -> str:
    if r.missing == "baseline_no_threshold":
        return f"the baseline auto-codes nothing at ≥ {100 * r.target:g} % accuracy: no threshold to carry"
    if r.missing is not None:
        return _MISSING[r.missing].format(metric="the accuracy at a threshold")
    assert r.threshold is not None
    where = f"at the baseline's threshold {r.threshold:.2f}" if r.from_baseline else f"at threshold {r.threshold:.2f}"
    if not r.auto_coded:
        return f"{where}, nothing is auto-coded (coverage 0 of {r.n}), so nothing is coded wrong"
    bar = f"{100 * r.target:g} %"
    share = f"auto-codes {_pct(r.coverage)} of {r.n}"
    if r.from_baseline and r.base_accuracy is not None:
        before, after = _pct(r.base_accuracy), _pct(r.accuracy)
        verb = "fell" if (r.accuracy or 0.0) < r.base_accuracy else "rose"
        change = (f"accuracy on auto-coded cases stayed at {after}" if before == after
                  else f"accuracy on auto-coded cases {verb} from {before} to {after}")
    else:
        change = f"accuracy on auto-coded cases is {_pct(r.accuracy)}"
    verdict = f"at least {bar}" if r.passed else f"below {bar}"
    return f"{where}, {change} ({share}), {verdict}"
def _release_reason(r: ReleaseMismatch) -> str:
    which = "; ".join(f"{s} {base} in the baseline, {new} in this run" for s, base, new in r.systems)
    return (f"not paired: the runs were scored against different releases ({which}); rerun one with "
            "--medcode-release, or pair only the codes of both with --medcode-baseline-release-mismatch=pair-common")


_REASONS: dict[type, Callable[[Any], str]] = {
    CarriedThreshold: _carried_reason,
    ThresholdResult: _threshold_reason,
    BinaryRegression: _binary_reason,
    ContinuousRegression: _continuous_reason,
    ErrorRate: _errors_reason,
    NoCases: lambda _: "no benchmark cases ran, so nothing could be checked",
    PairingFailed: lambda r: r.message,
    NoCommonCases: _no_common_reason,
    ReleaseMismatch: _release_reason,
}
_WARNINGS: dict[type, Callable[[Any], tuple[str, ...]]] = {
    ThresholdResult: _threshold_warnings,
    BinaryRegression: _binary_warnings,
    ContinuousRegression: _continuous_warnings,
}

_NOTES: dict[str, str] = {
    "pairing": "{subject}",
    "unmatched_threshold": "threshold {subject} matched no cases in this run",
    "unshared_scope": "{subject}: the baseline has it but no case in common with this run (they share no codes), "
                      "so not checked for regressions",
    "not_in_baseline": "{subject}: not in the baseline, so not checked for regressions",
    "baseline_lacks_metric": "the baseline has no {subject} values",
    "unrecorded_release": "the baseline records no release: taken as scored against the one bundled then "
                          "({subject})",
    "pair_common": "paired only the codes present in both releases (pair-common): {subject}",
}


def check_reason(check: Check) -> str:
    """Why a check passed or failed, with its numbers."""
    return _REASONS[type(check.finding)](check.finding)


def check_warnings(check: Check) -> tuple[str, ...]:
    """What could make a check's result unreliable (the limit inside the interval, low power)."""
    words = _WARNINGS.get(type(check.finding))
    return words(check.finding) if words else ()


def note_text(note: Note) -> str:
    return _NOTES[note.kind].format(subject=note.subject)


def verdict_warnings(verdict: Verdict) -> tuple[str, ...]:
    """The verdict's notes (pairing, unchecked scopes, unused limits), each once."""
    return tuple(dict.fromkeys(note_text(n) for n in verdict.notes))


def all_warnings(verdict: Verdict) -> tuple[str, ...]:
    """The verdict's notes, then each check's warnings prefixed with its metric and scope."""
    return verdict_warnings(verdict) + tuple(f"{c.metric} {c.scope}: {w}" for c in verdict.checks
                                             for w in check_warnings(c))


def verdict_reason(verdict: Verdict) -> str:
    """The first failed check (and how many more), or how many passed and with how many warnings."""
    if not verdict.passed:
        first, more = verdict.failed[0], len(verdict.failed) - 1
        tail = f" (and {more} more failed check{'s' if more != 1 else ''})" if more else ""
        return f"{first.metric} {first.scope}: {check_reason(first)}{tail}"
    n_warn = len(all_warnings(verdict))
    noted = f", {_plural(n_warn, 'warning')}" if n_warn else ""
    return f"all {_plural(len(verdict.checks), 'check')} passed{noted}"


def check_dict(check: Check) -> dict[str, Any]:
    """The check as ``summary.json`` stores it (``gate.checks``)."""
    return {
        "kind": check.kind, "metric": check.metric, "scope": check.scope, "passed": check.passed,
        "reason": check_reason(check), "observed": check.observed, "limit": check.limit, "n": check.n,
        "p_value": check.p_value, "baseline": check.baseline, "delta": check.delta,
        "ci": list(check.ci) if check.ci is not None else None, "warnings": list(check_warnings(check)),
        "details": dict(check.details),
    }


def verdict_dict(verdict: Verdict) -> dict[str, Any]:
    """The verdict as ``summary.json`` stores it (``gate``) and ``medcode compare --json`` prints it."""
    return {
        "passed": verdict.passed,
        "reason": verdict_reason(verdict),
        "checks": [check_dict(c) for c in verdict.checks],
        "warnings": list(all_warnings(verdict)),
    }


# -- the verdict's text ------------------------------------------------------------------------------


def check_cells(check: dict[str, Any]) -> dict[str, str]:
    """A saved check (``summary.json`` ``gate.checks``) as the text of a report's table row."""
    p = check.get("p_value")
    observed = (f"{100 * (check.get('observed') or 0):.1f}%" if check["kind"] == "errors"
                else metric(check["metric"]).format(check.get("observed")))
    return {
        "result": "pass" if check["passed"] else "FAIL",
        "check": check["kind"],
        "metric": check["metric"],
        "scope": check["scope"],
        "observed": observed,
        "baseline": "-" if check.get("baseline") is None else metric(check["metric"]).format(check["baseline"]),
        "p": "-" if p is None else f"{p:.3g}",
        "reason": check["reason"],
    }



def render_verdict(verdict: Verdict) -> list[str]:
    """Lines for a terminal: one per check (passing error-rate checks folded into one line), the
    warnings, then the verdict and its reason as the last line."""
    lines: list[str] = []
    quiet = [c for c in verdict.checks if c.kind == "errors" and c.passed]
    for c in verdict.checks:
        if c.kind == "errors" and c.passed:
            continue
        mark = "PASS" if c.passed else "FAIL"
        lines.append(f"{mark} {c.kind} {c.metric} [{c.scope}]: {check_reason(c)}")
    if quiet:
        worst = max(c.observed or 0.0 for c in quiet)
        lines.append(
            f"PASS errors: failed calls within the allowed {100 * (quiet[0].limit or 0):.1f}% in "
            f"{_plural(len(quiet), 'group')} (worst {100 * worst:.1f}%)"
        )
    for w in all_warnings(verdict):
        lines.append(f"warning: {w}")
    head = "medcode gate PASSED" if verdict.passed else "medcode gate FAILED"
    lines.append(f"{head}: {verdict_reason(verdict)}")
    return lines


_HEADERS = ("scope", "metric", "n", "baseline", "new", "change", "worse/better", "p", "allowed", "verdict")


def comparison_lines(verdict: Verdict) -> list[str]:
    """The paired comparison as a text table (regression checks only), for ``medcode compare``."""
    rows: list[tuple[str, ...]] = []
    for c in verdict.checks:
        if c.kind != "regression" or c.metric == "pairing":
            continue
        m, d = metric(c.metric), c.details
        if c.p_value is not None:
            test = format_p(c.p_value)
        elif c.ci:
            test = f"CI {m.format_delta(c.ci[0])}..{m.format_delta(c.ci[1])}"
        else:
            test = "-"
        rows.append((
            c.scope,
            c.metric,
            str(c.n),
            m.format(c.baseline),
            m.format(c.observed),
            m.format_delta(c.delta) if c.delta is not None else "-",
            f"{d['lost']}/{d['gained']}" if "lost" in d else "-",
            test,
            m.format_margin(c.limit) if c.limit is not None else "-",
            "ok" if c.passed else "REGRESSED",
        ))
    if not rows:
        return []
    return aligned(_HEADERS, rows, left=(0, 1, len(_HEADERS) - 1))
