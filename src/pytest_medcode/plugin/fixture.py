"""The ``medcode`` fixture: the thin object a benchmark test touches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_medcode.dataset.cases import Case
from pytest_medcode.dataset.document_cases import DocumentCase
from pytest_medcode.plugin.session import STOP_PROPERTY, CaseNotAsked
from pytest_medcode.results.records import PROPERTY, explain, explain_document
from pytest_medcode.safetext import visible
from pytest_medcode.vocabulary import DOCUMENT, ERROR

if TYPE_CHECKING:
    from pytest_medcode.plugin.session import MedcodeSession


FAILURE = pytest.StashKey[str]()


class Medcode:
    """Asks the case's model (through the shared query engine), scores and records the answer."""

    #: The test that is running (set by the plugin's runtest_setup hook): where the record goes. One fixture
    #: object for the session, not one per test: a function-scoped fixture costs ~5 s at 75k cases.
    running: pytest.Item | None = None

    def __init__(self, session: MedcodeSession, node: pytest.Item | None = None) -> None:
        self._session = session
        self._node = node  # None: the test that is running

    def _item(self) -> pytest.Item:
        """The test the record goes to: this fixture's own node, else the test that is running."""
        node = self._node or self.running
        if node is None:  # the plugin's runtest_setup hook sets it before any test's fixtures run
            raise RuntimeError("pytest-medcode: medcode used outside a running test")  # a bug, not input
        return node

    def query(self, case: Case | DocumentCase) -> dict[str, Any]:
        """The case's record; it is attached to the test report, so it reaches the session report."""
        node = self._item()
        try:
            record = self._session.ask(case)
        except CaseNotAsked as stopped:  # a worker's stopped query phase: the controller ends the run
            node.user_properties.append((STOP_PROPERTY, str(stopped)))
            pytest.skip(f"not asked: {stopped}")
        node.user_properties.append((PROPERTY, record))
        if self._session.junit:  # five more strings on every report: only when a JUnit file is written
            node.user_properties.extend(junit_properties(record))
        return record

    def check(self, case: Case) -> dict[str, Any]:
        """Query; the test fails unless the predicted code is exactly the reference code. The record is
        returned either way and the test's report carries the failure (as a soft assertion does): no
        exception, so no traceback is built and kept for each of tens of thousands of wrong codes."""
        record = self.query(case)
        failed = record["outcome"] == ERROR or not record["exact_match"]
        if failed and not self._session.settings.gate.active:  # gate mode: 'mismatched'/'unanswered'; the gate judges
            self._item().stash[FAILURE] = explain(record)
        return record


    def check_document(self, case: DocumentCase) -> dict[str, Any]:
        """Query a document case; the test fails unless the predicted set is exactly the gold set (as
        :meth:`check` fails on a wrong code). Gate mode leaves the judging to the gate."""
        record = self.query(case)
        failed = record["outcome"] == ERROR or not record["set_match"]
        if failed and not self._session.settings.gate.active:
            self._item().stash[FAILURE] = explain_document(record)
        return record


def mark_failed(item: pytest.Item, report: pytest.TestReport) -> None:
    """A case :meth:`Medcode.check` found wrong: its call report fails, the explanation as its text."""
    failure = item.stash.get(FAILURE, None)
    if failure is None or report.when != "call":
        return
    del item.stash[FAILURE]
    if report.passed:  # a test that went on to fail for another reason keeps that failure
        report.outcome = "failed"
        report.longrepr = failure


def detach_record(item: pytest.Item) -> None:
    """Once the call report holds the record, the item's later (teardown) report goes without it: xdist
    would ship, and the controller keep, a second copy of every record, and JUnit XML would carry the
    whole dict as text beside the properties below (~2 KB a case). Gigabytes at 75k cases."""
    if any(name == PROPERTY for name, _ in item.user_properties):
        item.user_properties = [p for p in item.user_properties if p[0] != PROPERTY]


def junit_properties(record: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``--junitxml`` shows per case, so CI systems list the codes beside the test."""

    def text(value: Any) -> str:  # control characters as \xNN: XML cannot hold most, terminals obey them
        return "" if value is None else str(value).lower() if isinstance(value, bool) else visible(value)

    if record.get("kind") == DOCUMENT:  # a set each: the codes joined by spaces
        return [
            ("expected_codes", " ".join(map(text, record.get("gold_codes") or ()))),
            ("predicted_codes", " ".join(map(text, record.get("predicted_codes") or ()))),
            ("f1", text(record.get("f1"))),
            ("outcome", text(record.get("outcome"))),
        ]
    return [
        ("expected_code", text(record.get("code"))),
        ("predicted_code", text(record.get("predicted_code"))),
        ("valid", text(record.get("valid"))),
        ("fabricated", text(record.get("fabricated"))),
        ("outdated", text(record.get("outdated"))),
        ("not_yet_valid", text(record.get("not_yet_valid"))),
        ("outcome", text(record.get("outcome"))),
    ]
