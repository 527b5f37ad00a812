"""Failure output that stays linear at any run size.

pytest's FAILURES section looks up each failed test's teardown report by scanning every report of the
session, so its cost grows with failures × tests: 49,000 wrong codes among 74,719 cases is billions of
comparisons (hours) and megabytes of text nobody reads. A benchmark of a weak model *expects* most cases
to fail, so by default the first few failing cases are shown in full and the rest are tallied by outcome
and model × system, with where every case is kept (report.html, cases.parquet).

Only the terminal summary changes: every failure still counts in the exit status, the final
"N failed" line, ``--lf``, JUnit XML and the reports. A user who asks for more gets pytest's own output:
``-v``, ``--tb=...``, ``-r...`` or ``--medcode-show-failures all``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from pytest_medcode.reports.text import DEFAULT_WIDTH, wrapped
from pytest_medcode.vocabulary import ERROR, INCORRECT, NO_CODE

_PYTEST_REPORTCHARS_DEFAULT = "fE"
_OUTCOME_WORDS = {INCORRECT: "wrong code", NO_CODE: "no code", ERROR: "call failed"}


def user_wants_everything(config: pytest.Config) -> bool:
    """The user asked pytest for more detail than the default: give them pytest's own summary."""
    option = config.option
    return (
        config.get_verbosity() > 0
        or getattr(option, "tbstyle", "auto") != "auto"
        or getattr(option, "reportchars", _PYTEST_REPORTCHARS_DEFAULT) != _PYTEST_REPORTCHARS_DEFAULT
    )


RecordOf = Callable[[Any], "dict[str, Any] | None"]


def split_failures(reports: Iterable[Any], shown: int, record_of: RecordOf) -> tuple[list[Any], list[dict[str, Any]]]:
    """The failed reports to leave in pytest's summary (every non-benchmark failure and the first ``shown``
    benchmark cases, in order) and the records of the benchmark cases held back."""
    kept: list[Any] = []
    held: list[dict[str, Any]] = []
    cases = 0
    for report in reports:
        record = record_of(report) if getattr(report, "when", None) == "call" else None
        if record is None:
            kept.append(report)
        elif cases < shown:
            cases += 1
            kept.append(report)
        else:
            held.append(record)
    return kept, held


def tally_lines(held: list[dict[str, Any]], shown: int, where: str | None) -> list[str]:
    """What is said of the failing cases that were not shown: how many, of which kind, where they are."""
    if not held:
        return []
    outcomes = Counter(_OUTCOME_WORDS.get(str(r.get("outcome")), str(r.get("outcome"))) for r in held)
    groups = Counter(f"{r.get('model')} · {r.get('system')}" for r in held)
    kinds = ", ".join(f"{n:,} {word}" for word, n in outcomes.most_common())
    lines = [f"pytest-medcode: {len(held):,} more failing case(s) not listed above ({kinds})"]
    by_group = ", ".join(f"{name} {n:,}" for name, n in groups.most_common(6))
    if len(groups) > 6:
        by_group += f", and {len(groups) - 6} more"
    lines.append(f"  by model · system: {by_group}")
    if where:
        lines.append(f"  every case with its answer: report.html and cases.parquet in {where}")
    lines.append(f"  each still fails the run; only the first {shown} are printed")
    lines.append("  all count in the exit status, --lf and JUnit XML; -v, --tb=..., -rf or --medcode-show-failures "
                 "print every one")
    return lines


def fitted_lines(text: str, width: int) -> str:
    """A failure explanation with no line wider than ``width``: a longer line (a long description, a raw
    answer) is cut with an ellipsis; the whole text stays in the run folder (report.html, cases.parquet)."""
    return "\n".join(line if len(line) <= width else f"{line[: width - 1]}…" for line in text.splitlines())


def summary_width(terminalreporter: Any) -> int:
    """The terminal's width, at most the tables' (100), and never under 40: what the summary lines fit."""
    return max(40, min(DEFAULT_WIDTH, terminalreporter.config.get_terminal_writer().fullwidth))


class FailureOutput:
    """Registered on the process that prints the summary, when the user did not ask for every failure."""

    def __init__(self, shown: int, where: Callable[[], str | None], record_of: RecordOf) -> None:
        self.shown = shown
        self._where = where
        self._record_of = record_of

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: around pytest's own FAILURES and -r summary
    def pytest_terminal_summary(self, terminalreporter: Any):
        stats = terminalreporter.stats
        every = stats.get("failed")
        held: list[dict[str, Any]] = []
        width = summary_width(terminalreporter)
        cut: list[tuple[Any, Any]] = []  # (report, its own longrepr) of the cases shown with fitted lines
        if every:
            kept, held = split_failures(every, self.shown, self._record_of)
            if held:
                stats["failed"] = kept
            for report in kept:
                if isinstance(report.longrepr, str) and self._record_of(report) is not None:
                    cut.append((report, report.longrepr))
                    report.longrepr = fitted_lines(report.longrepr, width)
        try:
            return (yield)
        finally:
            for report, longrepr in cut:  # only the printed summary is fitted; the reports keep every word
                report.longrepr = longrepr
            if held:
                stats["failed"] = every  # the final "N failed" line counts every failure
                where = self._where()
                for line in tally_lines(held, self.shown, where):
                    # The line naming the run folder stays whole, its path to copy; the others fit the width.
                    for part in [line] if where and where in line else wrapped(line, width, indent="    "):
                        terminalreporter.write_line(part, yellow=True)
