"""What the model calls of a run cost in calls: cache hits, calls asked, retries, failures and why.

Read from the records (each carries ``cache_hit``, ``attempts``, ``error``), so the numbers are the same
on one process and under xdist, and a failed call's reason is named once per model in the summary
instead of on thousands of cases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pytest_medcode.vocabulary import DOCUMENT, ERROR

__all__ = ["deployment_counts", "failure_reasons", "query_stats"]


def failure_reasons(records: Sequence[dict[str, Any]], top: int = 3) -> dict[str, list[list[Any]]]:
    """Per model, its most frequent reasons for a failed call with their counts."""
    per_model: dict[str, Counter[str]] = {}
    for r in records:
        if r.get("outcome") == ERROR:
            per_model.setdefault(r["model"], Counter())[r.get("error") or "unknown error"] += 1
    return {model: [[reason, n] for reason, n in reasons.most_common(top)] for model, reasons in per_model.items()}


def query_stats(records: Sequence[dict[str, Any]], cache: str | None, phase_s: float | None) -> dict[str, Any]:
    """Cache hits and misses, retries and failed calls of the cached coders' cases (``summary.json`` ``queries``).

    A case a cached coder never asked (the circuit breaker stopped asking) is counted apart from calls made."""
    cached = [r for r in records if r.get("cache_hit") is not None]
    fresh = [r for r in cached if not r["cache_hit"]]
    asked = [r for r in fresh if r.get("attempts")]
    return {
        "cache": cache,
        "cache_hits": len(cached) - len(fresh),
        "asked": len(asked),
        "not_asked": len(fresh) - len(asked),
        "retries": sum(max(0, (r.get("attempts") or 1) - 1) for r in asked),
        "errors": sum(1 for r in cached if r.get("outcome") == ERROR),
        "phase_s": phase_s,
        "failures": failure_reasons(records),
    }


def deployment_counts(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Per model and deployment (--medcode-router), its cases, answers, failed calls and exact match over its
    answered code queries (None: no document-free answer to judge), so a replica that answers differently
    shows up. Only models with a recorded deployment; a failed call names none (``deployment`` None). None
    when no case names a deployment."""
    routed = {r["model"] for r in records if r.get("deployment") is not None}
    if not routed:
        return None
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in records:
        if r["model"] in routed:
            groups.setdefault((r["model"], r.get("deployment")), []).append(r)
    rows = []
    for (model, deployment), mine in groups.items():
        judged = [r for r in mine if r.get("kind") != DOCUMENT and r.get("exact_match") is not None]
        rows.append({
            "model": model, "deployment": deployment, "cases": len(mine),
            "answered": sum(1 for r in mine if r.get("outcome") != ERROR),
            "errors": sum(1 for r in mine if r.get("outcome") == ERROR),
            "cache_hits": sum(1 for r in mine if r.get("cache_hit")),
            "exact_match": sum(1 for r in judged if r["exact_match"]) / len(judged) if judged else None,
        })
    return sorted(rows, key=lambda row: (row["model"], row["deployment"] is None, -row["cases"],
                                         str(row["deployment"])))
