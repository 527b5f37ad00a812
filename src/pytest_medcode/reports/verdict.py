"""The gate's verdict as text: the terminal's lines, a report's table cells, and ``medcode compare``'s
paired table. The numbers are the verdict's; only their wording lives here."""

from __future__ import annotations

from typing import Any

from pytest_medcode.reports.text import aligned
from pytest_medcode.results.gate import Verdict
from pytest_medcode.vocabulary import format_p, metric

__all__ = ["check_cells", "comparison_lines", "render_verdict"]


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
