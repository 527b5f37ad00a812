"""pytest hooks: each hands off to the :class:`MedcodeSession` kept in ``config.stash``."""

from __future__ import annotations

import types

import pytest

from pytest_medcode.distributed import exit_with_controller, is_worker, share_with_worker
from pytest_medcode.failure_output import FailureOutput, user_wants_everything
from pytest_medcode.fixture import Medcode, detach_record, mark_failed
from pytest_medcode.options import addoptions, parse_settings
from pytest_medcode.redaction import redact_run_secrets
from pytest_medcode.session import CASE_PARAM, MedcodeSession
from pytest_medcode.signals import handle_sigterm

session_key = pytest.StashKey[MedcodeSession]()
_undo_sigterm = pytest.StashKey[object]()


def pytest_addoption(parser: pytest.Parser) -> None:
    addoptions(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "medcode: a medical code querying case (added by pytest-medcode)")
    exit_with_controller(config)
    session = MedcodeSession(config, parse_settings(config))
    redact_run_secrets(session.settings.api_base)
    session.validate()
    config.stash[session_key] = session
    config.pluginmanager.register(_SessionPlugin(session), "medcode-session")
    config.pluginmanager.register(_fixtures(session), "medcode-fixtures")
    if session.settings.gate.active:  # a hook on every report: only where it has work
        config.pluginmanager.register(_GateStatus(session), "medcode-gate-status")
    shown = session.settings.show_failures
    if session.reporting and shown is not None and not user_wants_everything(config):
        failure_output = FailureOutput(shown, session.run_folder, session.record_of)
        config.pluginmanager.register(failure_output, "medcode-failure-output")
    if not is_worker(config):  # a worker dies with its controller (exit_with_controller)
        config.stash[_undo_sigterm] = handle_sigterm()


def pytest_unconfigure(config: pytest.Config) -> None:
    undo = config.stash.get(_undo_sigterm, None)
    if callable(undo):
        undo()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if CASE_PARAM in metafunc.fixturenames:
        metafunc.config.stash[session_key].parametrize(metafunc)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[session_key].query_phase(items)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[session_key].watch_workers()


def pytest_runtestloop(session: pytest.Session) -> None:
    session.config.stash[session_key].stop_watching()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist controller: hand the run id to each worker so they share one query phase."""
    share_with_worker(node, node.config.stash[session_key].for_workers())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """xdist controller: the collection order, so records are reported in it."""
    node.config.stash[session_key].collection_finished(ids)


def pytest_sessionfinish(session: pytest.Session) -> None:
    medcode = session.config.stash[session_key]
    medcode.finish()
    session.exitstatus = medcode.exitstatus(session.exitstatus)  # gate mode: the gate decides


@pytest.hookimpl(trylast=True)  # the gate verdict is the last thing printed
def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    config.stash[session_key].display(terminalreporter)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if call.when == "call":
        detach_record(item)  # the call report has it; teardown's need not carry a second copy
        mark_failed(item, report)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.config.stash[session_key].current_item = item


class _SessionPlugin:
    """Hooks that need this config's session but get no config argument."""

    def __init__(self, session: MedcodeSession) -> None:
        self.session = session

    @pytest.hookimpl(trylast=True)  # after xdist's worker has sent the report to the controller
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.session.add_report(report)


def _fixtures(session: MedcodeSession) -> types.ModuleType:
    """The ``medcode`` fixture, bound to this config's session so that it asks for no other fixture: one
    that asks for ``request`` (or ``pytestconfig``, which does) makes pytest build a fixture definition
    on every test, ~4 s at 75k cases. A module, not a plugin-class method (deprecated for session scope)."""

    @pytest.fixture(scope="session", name="medcode")
    def medcode() -> Medcode:
        """Asks, scores and records one case: ``medcode.check(medcode_case)``. One object per session
        that records on the running test (a function-scoped fixture costs ~5 s at 75k cases)."""
        return Medcode(session)

    module = types.ModuleType(f"{__name__}.fixtures")
    module.medcode = medcode  # type: ignore[attr-defined]
    return module


class _GateStatus:
    """Gate mode: wrong codes show as 'mismatched', failed calls as 'unanswered' (not failures)."""

    def __init__(self, session: MedcodeSession) -> None:
        self.session = session

    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, object] | None:
        return self.session.teststatus(report)
