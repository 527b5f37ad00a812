"""Run history: exact match per model × system across every run folder under a reports directory.

Each run is read through :mod:`pytest_medcode.runs.folder`: its summary first, whose results rows
already hold exact match with its Wilson interval; only a run without them (an interrupted session, an
older writer) has its cases read, and then only the columns exact match needs. So hundreds of runs
take seconds. A folder that cannot be read is reported in one line and left out, never fatal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_medcode.atomic import write_text_atomically
from pytest_medcode.reports import history as history_report
from pytest_medcode.results.stats import wilson
from pytest_medcode.runs.folder import RunFormatError, find_run_folders, load_run, load_summary
from pytest_medcode.vocabulary import DIMENSIONS, GROUP_KEYS, group_label

__all__ = ["History", "collect", "run_entry", "write_history"]

#: The file ``medcode history`` writes in the reports directory.
HISTORY_FILE = "history.html"
#: Columns read from cases.parquet when a summary has no results.
_COLUMNS = (*GROUP_KEYS, "exact_match", "outcome", *DIMENSIONS)


@dataclass
class History:
    """The runs found (oldest first), as plain dicts the reports render, and what could not be read."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _points_from_results(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    points = []
    for row in results:
        est = row.get("exact_match") or {}
        if est.get("value") is None:
            continue
        points.append({**{k: row[k] for k in (*GROUP_KEYS, *DIMENSIONS) if row.get(k) is not None},
                       "label": group_label(row), "value": est["value"], "low": est.get("low"),
                       "high": est.get("high"), "n": est.get("n")})
    return points


def _points_from_cases(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        label = group_label({k: r.get(k) for k in (*GROUP_KEYS, *DIMENSIONS)
                             if r.get(k) is not None and r.get(k) != DIMENSIONS.get(k)})
        rows.setdefault(label, {k: r.get(k) for k in GROUP_KEYS})
        if r.get("exact_match") is not None:
            groups.setdefault(label, []).append(bool(r["exact_match"]))
    points = []
    for label, hits in groups.items():
        est = wilson(sum(hits), len(hits))
        points.append({**rows[label], "label": label, "value": est.value, "low": est.low, "high": est.high,
                       "n": len(hits)})
    return points


def run_entry(folder: Path) -> dict[str, Any]:
    """One run's line of history: when, which code-set releases and prompt, the gate's verdict and exact
    match per group (with the share auto-coded at 95 % accuracy when the run had confidences). Raises
    RunFormatError."""
    summary = load_summary(folder)
    if summary and summary.get("results"):
        points, n_cases = _points_from_results(summary["results"]), summary.get("n_cases")
        coverage = {group_label(r): r["coverage"]["95"]["value"] for r in summary.get("selective") or []
                    if r.get("coverage") and "95" in r["coverage"]}
        points = [{**p, "coverage@95": coverage[p["label"]]} if p["label"] in coverage else p for p in points]
    else:
        run = load_run(folder, columns=_COLUMNS)
        summary = run.summary or {}
        points, n_cases = _points_from_cases(run.records), len(run.records)
    cfg = summary.get("config") or {}
    template = summary.get("prompt_template")
    gate = summary.get("gate")
    return {
        "run_id": summary.get("run_id") or folder.name,
        "folder": str(folder),
        "created": summary.get("created") or "",
        "n_cases": n_cases,
        "code_systems": dict(summary.get("code_systems") or {}),
        "prompt": cfg.get("prompt") or "",
        "prompt_hash": hashlib.sha256(template.encode("utf-8")).hexdigest()[:8] if template else "",
        "gate": None if not isinstance(gate, dict) else {"passed": bool(gate.get("passed")),
                                                          "reason": gate.get("reason") or ""},
        "points": points,
    }


def collect(root: Path) -> History:
    """Every readable run under ``root``, oldest first (by creation time, then run id)."""
    history = History()
    for folder in find_run_folders(root):
        try:
            history.runs.append(run_entry(folder))
        except RunFormatError as exc:
            history.problems.append(str(exc))
    history.runs.sort(key=lambda r: (r["created"], r["run_id"]))
    return history


def write_history(root: Path, out: Path | None = None) -> tuple[History, Path]:
    """Collect the runs under ``root`` and write the history page (``root/history.html`` by default)."""
    history = collect(root)
    target = out or root / HISTORY_FILE
    write_text_atomically(target, history_report.render_html(history.runs, str(root)))
    return history, target
