"""pytest hooks: each hands off, in a line or two, to the objects that do the work.

- :class:`~pytest_medcode.plugin.session.MedcodeSession`, on every process: cases, coders, the query phase;
- :class:`~pytest_medcode.plugin.reporter.MedcodeReporter`, only where the report is made (the xdist
  controller, or the only process): records, the run folder, the summary, the gate;
- :class:`~pytest_medcode.plugin.fixture.Medcode`, the ``medcode`` fixture a benchmark test touches.
"""

from __future__ import annotations

import types

import pytest

from pytest_medcode.plugin.failure_output import FailureOutput, user_wants_everything
from pytest_medcode.plugin.fixture import Medcode, detach_record, mark_failed
from pytest_medcode.plugin.options import addoptions, parse_settings
from pytest_medcode.plugin.report_memory import ReportMemory, forget_sent
from pytest_medcode.plugin.reporter import MedcodeReporter
from pytest_medcode.plugin.session import CASE_PARAM, DOCUMENT_PARAM, MARKER, MedcodeSession
from pytest_medcode.plugin.signals import ENDING, QUERY_PHASE, TESTS, Interrupts
from pytest_medcode.plugin.xdist import exit_with_controller, is_worker, run_in_one_process, share_with_worker
from pytest_medcode.redaction import redact_run_secrets, register_secrets

#: The hooks pytest finds on ``pytest_medcode.plugin``, which re-exports them.
__all__ = [
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_generate_tests",
    "pytest_runtest_makereport",
    "pytest_runtest_setup",
    "pytest_runtestloop",
    "pytest_sessionfinish",
    "pytest_sessionstart",
    "pytest_unconfigure",
    "pytest_xdist_node_collection_finished",
]

session_key = pytest.StashKey[MedcodeSession]()
reporter_key = pytest.StashKey[MedcodeReporter]()
fixture_key = pytest.StashKey[Medcode]()
interrupts_key = pytest.StashKey[Interrupts]()


def pytest_addoption(parser: pytest.Parser) -> None:
    addoptions(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a pytest-medcode benchmark case, a code query or a document "
                                       "(carried by every case the plugin parametrizes)")
    interrupts = config.stash[interrupts_key] = Interrupts(quiet=is_worker(config))
    interrupts.install()  # before the code tables load: a signal from here on is one line (signals.py)
    session = MedcodeSession(config, parse_settings(config))
    exit_with_controller(config, session.interrupted_path(), interrupts.from_controller)
    config.pluginmanager.register(_InterruptPlugin(interrupts), "medcode-interrupts")
    if session.settings.estimate:
        run_in_one_process(config)
    redact_run_secrets(session.settings.api_base)
    if session.settings.router is not None:  # the router file's keys and URL credentials: masked as the run's own
        register_secrets(session.settings.router.secrets())
    session.validate()
    config.stash[session_key] = session
    if is_worker(config):
        config.pluginmanager.register(_WorkerReports(ReportMemory(config, worker=True)), "medcode-worker-reports")
    else:
        reporter = MedcodeReporter(session, interrupts)
        interrupts.cleanups.append(session.remove_state)  # stopped at once (a second signal): no state left
        reporter.validate()
        session.preflight_for_workers()  # after the checks above: nothing is asked for a run that cannot report
        config.stash[reporter_key] = reporter
        config.pluginmanager.register(_ReporterPlugin(reporter), "medcode-reporter")
        if session.settings.gate.active:  # a hook on every report: only where it has work
            config.pluginmanager.register(_GateStatus(reporter), "medcode-gate-status")
        shown = session.settings.show_failures
        if shown is not None and not user_wants_everything(config):
            failure_output = FailureOutput(shown, reporter.run_folder, reporter.record_of)
            config.pluginmanager.register(failure_output, "medcode-failure-output")
    fixture = config.stash[fixture_key] = Medcode(session)
    config.pluginmanager.register(_fixtures(fixture), "medcode-fixtures")


def pytest_unconfigure(config: pytest.Config) -> None:
    interrupts = config.stash.get(interrupts_key, None)
    if interrupts is None:
        return
    if interrupts.received is None:
        interrupts.uninstall()
    else:  # a run that is stopping keeps the handler to its last instruction: another signal is the line, exit 2
        interrupts.stage = ENDING


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if CASE_PARAM in metafunc.fixturenames:
        metafunc.config.stash[session_key].parametrize(metafunc)
    if DOCUMENT_PARAM in metafunc.fixturenames:
        metafunc.config.stash[session_key].parametrize_documents(metafunc)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[session_key].drop_unasked(items)


@pytest.hookimpl(tryfirst=True)  # before the terminal counts the selection (an estimate deselects every case)
def pytest_collection_finish(session: pytest.Session) -> None:
    """The query phase, once the selection is final: --lf and other wrappers of modifyitems deselect after
    every plain hook has run, so a case that will not run is never asked."""
    config = session.config
    if session.testsfailed and not config.option.continue_on_collection_errors:
        return  # a collection error stops the run before any test: ask nothing
    interrupts = config.stash[interrupts_key]
    interrupts.stage = QUERY_PHASE
    config.stash[session_key].query_phase(session.items)
    interrupts.stage = TESTS
    if not any({CASE_PARAM, DOCUMENT_PARAM} & set(getattr(item, "fixturenames", ())) for item in session.items):
        interrupts.uninstall()  # a session without benchmark cases: pytest's own Ctrl-C, Python's SIGTERM


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[session_key].announce_batch()
    reporter = session.config.stash.get(reporter_key, None)
    if reporter is not None:
        reporter.watch_workers()


def pytest_runtestloop(session: pytest.Session) -> None:
    reporter = session.config.stash.get(reporter_key, None)
    if reporter is not None:
        reporter.stop_watching()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist controller: hand the run id to each worker so they share one query phase."""
    share_with_worker(node, node.config.stash[reporter_key].for_workers())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """xdist controller: the collection order, so records are reported in it."""
    node.config.stash[reporter_key].collection_finished(ids)
    node.config.stash[interrupts_key].stage = TESTS  # the workers' query phase is over


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.stash.get(reporter_key, None)
    if reporter is not None:
        reporter.stop_watching()  # before the run's progress file goes (under xdist the runtestloop is xdist's)
    session.config.stash[session_key].close()
    if reporter is not None:
        reporter.finish(exitstatus)
        session.exitstatus = reporter.exitstatus(session.exitstatus)  # gate mode: the gate decides


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if call.when == "call":
        detach_record(item)  # the call report has it; teardown's need not carry a second copy
        mark_failed(item, report)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.config.stash[fixture_key].running = item


class _ReporterPlugin:
    """The reporter's hooks: registered only where the report is made."""

    def __init__(self, reporter: MedcodeReporter) -> None:
        self.reporter = reporter

    @pytest.hookimpl(trylast=True)  # after every other plugin (JUnit XML, the terminal) has seen the report
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reporter.add_report(report)

    @pytest.hookimpl(trylast=True)  # the gate verdict is the last thing printed
    def pytest_terminal_summary(self, terminalreporter) -> None:
        self.reporter.display(terminalreporter)
        self.reporter.interrupts.stage = ENDING  # all is written and shown: a signal now stops at once


class _InterruptPlugin:
    """The end of the session, kept whole on every process: a first signal there is noted, not raised
    (the reporter lets it through only in the similarity pass), and the run still exits 2."""

    def __init__(self, interrupts: Interrupts) -> None:
        self.interrupts = interrupts

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # around every other plugin's end of session
    def pytest_sessionfinish(self, session: pytest.Session):
        self.interrupts.defer = True
        try:
            return (yield)
        finally:
            self.interrupts.stage = ENDING  # nothing is left to keep whole: a signal now stops at once
            if self.interrupts.received is not None:
                self.interrupts.shown = True  # pytest's banner or the reporter's line is out
                session.exitstatus = pytest.ExitCode.INTERRUPTED


class _WorkerReports:
    """An xdist worker's reports, once xdist has sent them on: let go of what the controller now holds."""

    def __init__(self, memory: ReportMemory) -> None:
        self.memory = memory

    @pytest.hookimpl(trylast=True)  # after xdist's worker has sent the report to the controller
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        forget_sent(report, self.memory)


def _fixtures(fixture: Medcode) -> types.ModuleType:
    """The ``medcode`` fixture, bound to this config's object so that it asks for no other fixture: one
    that asks for ``request`` (or ``pytestconfig``, which does) makes pytest build a fixture definition
    on every test, ~4 s at 75k cases. A module, not a plugin-class method (deprecated for session scope)."""

    @pytest.fixture(scope="session", name="medcode")
    def medcode() -> Medcode:
        """Asks, scores and records one case: ``medcode.check(medcode_case)``."""
        return fixture

    module = types.ModuleType(f"{__name__}.fixtures")
    module.medcode = medcode  # type: ignore[attr-defined]
    return module


class _GateStatus:
    """Gate mode: wrong codes show as 'mismatched', failed calls as 'unanswered' (not failures)."""

    def __init__(self, reporter: MedcodeReporter) -> None:
        self.reporter = reporter

    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, object] | None:
        return self.reporter.teststatus(report)
