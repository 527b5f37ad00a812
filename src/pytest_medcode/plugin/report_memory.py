"""What pytest keeps of each benchmark case, kept small: memory that stays flat at 75,000 cases.

pytest's terminal reporter keeps every report of the session — setup, call and teardown — for its end
summary: three objects of ~2 KB per case, 0.5 GB at 75k cases, on every process. Most of it can never be
shown. A passed setup or teardown with no captured output is looked at only to print that output, so
the reporting process lets go of those of benchmark cases; an xdist worker prints nothing at all (its
controller prints the summary), so a worker lets go of every report of a benchmark case once xdist has
sent it on. Call reports stay on the reporting process: they are what the summary counts and lists.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_medcode.results.records import PROPERTY

#: How far back a report is looked for: reports of two xdist workers interleave by a few places at most.
_LOOK_BACK = 16


def _drop(stats: dict[str, list[Any]], report: Any) -> None:
    """Remove ``report`` from the terminal reporter's lists, looking only at their last few entries."""
    for reports in stats.values():
        for i in range(len(reports) - 1, max(-1, len(reports) - 1 - _LOOK_BACK), -1):
            if reports[i] is report:
                del reports[i]
                return


def _forgettable(report: Any) -> bool:
    return report.passed and not report.sections


class ReportMemory:
    """Called with every report after every other plugin has seen it (a ``trylast`` logreport hook)."""

    def __init__(self, config: pytest.Config, worker: bool) -> None:
        self._config = config
        self._worker = worker
        self._setups: dict[str, Any] = {}  # nodeid → a setup report not yet known to be a benchmark case's
        self._cases: set[str] = set()  # benchmark cases whose teardown is still to come

    def _stats(self) -> dict[str, list[Any]] | None:
        reporter = self._config.pluginmanager.get_plugin("terminalreporter")
        return getattr(reporter, "stats", None)

    def seen(self, report: pytest.TestReport, is_case: bool) -> None:
        """``is_case``: a call report that carries a benchmark record."""
        stats = self._stats()
        if stats is None:
            return
        if report.when == "setup":
            if report.passed:  # a case's call report will say whether it is one of ours
                self._setups[report.nodeid] = report
            return
        if report.when == "call":
            setup = self._setups.pop(report.nodeid, None)
            if not is_case:
                return
            self._cases.add(report.nodeid)
            if setup is not None and (self._worker or _forgettable(setup)):
                _drop(stats, setup)
            if self._worker:
                _drop(stats, report)
            return
        if report.nodeid in self._cases:  # teardown of a benchmark case
            self._cases.discard(report.nodeid)
            if self._worker or _forgettable(report):
                _drop(stats, report)


def forget_sent(report: pytest.TestReport, memory: ReportMemory) -> None:
    """An xdist worker's report once xdist has sent it to the controller: the record it carried is the
    controller's now, and the report itself is never shown here."""
    is_case = False
    if report.when == "call" and any(name == PROPERTY for name, _ in report.user_properties):
        report.user_properties = [p for p in report.user_properties if p[0] != PROPERTY]
        is_case = True
    memory.seen(report, is_case=is_case)
