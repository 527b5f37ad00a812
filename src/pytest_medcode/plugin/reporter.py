"""The reporting side of a run: registered only on the process that makes the report (the xdist
controller, or the only process), as pytest-xdist registers its ``DSession`` only on the controller.

It receives every case's record from the reports, keeps them compactly, and at the end scores what
needs the whole run (similarity, code frequency), judges the gate, writes the run folder and prints
the summary. The asking is :class:`~pytest_medcode.plugin.session.MedcodeSession`'s, on every process.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_medcode import __version__
from pytest_medcode.asking import destinations
from pytest_medcode.asking.progress import ProgressWatcher
from pytest_medcode.codesystems import UNRECORDED_RELEASES
from pytest_medcode.dataset import variants
from pytest_medcode.dataset.prompts import DOCUMENT_PROMPT
from pytest_medcode.plugin import split, xdist
from pytest_medcode.plugin.report_memory import ReportMemory
from pytest_medcode.plugin.session import STOP_PROPERTY, MedcodeSession
from pytest_medcode.plugin.signals import (
    COLLECTION,
    ENDING,
    QUERY_PHASE,
    SIMILARITY,
    TESTS,
    WRITING,
    Interrupted,
    Interrupts,
)
from pytest_medcode.reports import document_section as document_report
from pytest_medcode.reports import straight_through, terminal
from pytest_medcode.reports.explorer import ExplorerText
from pytest_medcode.reports.text import DEFAULT_WIDTH
from pytest_medcode.reports.verdict import check_reason, render_verdict, verdict_dict
from pytest_medcode.results.costs import cost_summary
from pytest_medcode.results.gate import ReleaseMismatch, Verdict
from pytest_medcode.results.queries import deployment_counts, query_stats
from pytest_medcode.results.records import PROPERTY, RecordRows
from pytest_medcode.results.releases import PAIR_COMMON, RunReleases, mismatches, run_releases
from pytest_medcode.results.selective import fill_repeat_agreement
from pytest_medcode.runs.folder import SCHEMA_VERSION, RunFormatError, load_run, point_latest, summarise, write_run
from pytest_medcode.scoring import session_metrics
from pytest_medcode.scoring.score_store import ScoreStore
from pytest_medcode.vocabulary import ERROR, WRONG, group_fields, query_records

__all__ = ["MedcodeReporter"]


class MedcodeReporter:
    baseline: list[dict[str, Any]] | None = None  # gate mode: the baseline run's records
    verdict: Verdict | None = None  # gate mode, once finish() ran
    report_problems: tuple[str, ...] = ()  # report.md / report.html that could not be written
    report_failure: str | None = None  # the run folder could not be written (exit 4; the tables still print)
    similarity: session_metrics.SimilarityReport | None = None  # the end-of-session similarity pass
    run_dir: Path | None = None
    summary_data: dict[str, Any]
    written = False  # the run folder is whole on disk
    similarity_cut = False  # a signal ended the similarity pass: the folder has the code scores alone
    banner_by_pytest = False  # the signal reached pytest, which shows its line as its banner

    def __init__(self, session: MedcodeSession, interrupts: Interrupts | None = None) -> None:
        self.session = session
        self.interrupts = interrupts or Interrupts()
        self.interrupts.describe = self.interrupt_text
        self.interrupts.show = self.show_now
        if xdist.is_distributed(session.config):  # interrupted alone (SIGTERM), it tells its workers
            self.interrupts.notify.append(self._tell_workers)
        self.config = session.config
        self.settings = session.settings
        self.rows = RecordRows()  # the records as they arrive
        self.explorer_text = ExplorerText()  # report.html's case explorer text, made as they arrive
        self.records: list[dict[str, Any]] = []  # every record, in collection order, once the tests are done
        self.memory = ReportMemory(self.config, worker=False)
        self._collection_order: dict[str, int] | None = None  # nodeid → position (xdist controller)
        self._watcher: ProgressWatcher | None = None
        self._phase_seen: dict[str, Any] | None = None  # the workers' query phase, as last seen

    # -- configure time ----------------------------------------------------------------------------
    def validate(self) -> None:
        """The baseline and everything the run writes, checked before any case runs (pytest.UsageError)."""
        s = self.settings
        if s.gate.baseline is not None:
            try:
                self.baseline = load_run(s.gate.baseline).records
            except RunFormatError as exc:
                raise pytest.UsageError(f"--medcode-baseline {exc}") from None
            if s.gate.threshold_from_baseline and all(r.get("confidence") is None for r in self.baseline):
                raise pytest.UsageError(f"--medcode-threshold-from-baseline: the baseline {s.gate.baseline} has no "
                                        "confidences (recorded without them), so it has no threshold to carry")
            self.check_baseline_releases(self.baseline)
        cases = self.session.case_count() if self.session.has_cases() else (
            (s.sample if isinstance(s.sample, int) else destinations.ALL_CODES) * len(s.systems) * len(s.models)
            * len(s.variants) * max(1, len(s.temperatures)) * s.repeats)
        cache = self.session.cache_paths()[0] if s.cache is not None else None
        problem = destinations.check(cache, self.report_root(), cases, s.max_tokens)
        if problem:
            raise pytest.UsageError(problem)

    def check_baseline_releases(self, baseline: list[dict[str, Any]]) -> None:
        """A baseline of other releases is refused before any model is asked (the gate would refuse it at the
        end), unless --medcode-baseline-release-mismatch=pair-common."""
        s = self.settings
        if s.gate.release_mismatch == PAIR_COMMON:
            return
        mine = RunReleases(dict(s.to_dict()["releases"]))
        found = mismatches(run_releases(baseline, UNRECORDED_RELEASES), mine)
        if found:
            raise pytest.UsageError(f"--medcode-baseline {s.gate.baseline}: "
                                    + check_reason(ReleaseMismatch(found).check("run")))

    def report_root(self) -> Path:
        """Where run folders go (--medcode-report-dir, relative to where pytest was started)."""
        root = self.settings.report_dir
        return root if root.is_absolute() else self.config.invocation_params.dir / root

    # -- xdist controller ------------------------------------------------------------------------------
    def for_workers(self) -> dict[str, Any]:
        """What every worker must share with the controller: the run id and start time."""
        return {"run_id": self.session.run_id, "started": self.session.started}

    def watch_workers(self) -> None:
        """Follow the query phase, which a worker runs: show its progress (unless -q), keep its timing."""
        if xdist.is_distributed(self.config):
            self.interrupts.stage = QUERY_PHASE  # the workers' (they ask while they collect)
            self._watcher = ProgressWatcher(self.session.cache_paths()[1] / "progress.json",
                                            self.session.progress_writer())
            self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._phase_seen = self._watcher.last
            self._watcher = None

    def collection_finished(self, nodeids: list[str]) -> None:
        """The order the workers collected the tests in (the same on every worker)."""
        if self._collection_order is None:
            self._collection_order = {nodeid: i for i, nodeid in enumerate(nodeids)}
        if self.session.shard is None and split.group_of(self.config) is not None:  # a worker's, once it split
            self.session.shard = split.read_shard(self.session.cache_paths()[1])

    # -- records, as the reports arrive ------------------------------------------------------------------
    def add_report(self, report: pytest.TestReport) -> None:
        """Every report, after every other plugin has seen it: keep the record, and let pytest forget what
        it never shows (report_memory.py)."""
        is_case = False
        if report.when == "call":
            for name, value in report.user_properties:
                if name == STOP_PROPERTY:  # a worker's query phase stopped (the cache failed): end the run
                    self.session.stopped = str(value)
                    pytest.exit(str(value), returncode=pytest.ExitCode.USAGE_ERROR)
            for i, (name, value) in enumerate(report.user_properties):
                if name != PROPERTY:
                    continue
                if isinstance(value, dict):
                    if xdist.from_worker(report):  # unpickled: every record has its own copy of every key
                        value = xdist.compact(value)
                    self.explorer_text.add(value)  # report.html's case text, now rather than at the end
                    position = self.rows.append(value, report.nodeid)
                    report.user_properties[i] = (name, position)  # the row stands for it from now on
                is_case = True
                break
        self.memory.seen(report, is_case=is_case)

    def record_of(self, report: pytest.TestReport) -> dict[str, Any] | None:
        """The record a benchmark case's call report stands for, else None."""
        for name, value in getattr(report, "user_properties", ()):
            if name == PROPERTY:
                if isinstance(value, int):
                    return self.rows.record(value)
                return value if isinstance(value, dict) else None
        return None

    # -- the end of the run -------------------------------------------------------------------------------
    def finish(self, exitstatus: int = pytest.ExitCode.OK) -> None:
        """Score what needs the whole run, judge the gate, and write the run folder.

        Interrupted (plugin/signals.py), the run folder is still written, with the cases that finished
        and their code scores: the similarity pass is skipped, or cut short by the signal, and an
        interrupted run has no gate verdict."""
        interrupts = self.interrupts
        self.banner_by_pytest = interrupts.received is not None and exitstatus == pytest.ExitCode.INTERRUPTED
        self.stop_watching()  # under xdist pytest_runtestloop is xdist's alone: the phase's timing is kept here
        # Collection order, whatever order workers finished in (without xdist they arrive in it); from the test
        # ids, not the case list: the controller need not load the code tables.
        self.records = records = self.rows.take(self._collection_order)
        queries = query_records(records)  # document cases are scored as they run (scoring/code_sets.py)
        if self.settings.repeats > 1:  # a coder without a confidence of its own: its repeats' agreement
            fill_repeat_agreement(queries)
        if queries and interrupts.received is None:  # end-of-session scores: before the gate, which may use them
            try:
                with interrupts.raising(SIMILARITY):
                    self.score_session(queries)
            except Interrupted:
                self.similarity_cut = True
        if queries and interrupts.received is not None:
            self.skip_similarity(queries)
        if self.settings.gate.active and interrupts.received is None:
            self.verdict = self.settings.gate.evaluate(records, self.baseline, self.settings.seed)
        if not records:
            return
        self.run_dir = run_dir = self.report_root() / self.session.run_id
        self.summary_data = self.summary(records)
        interrupts.stage = WRITING  # a first signal now is noted (the session's end defers it): the folder is whole

        def remove_partial() -> None:  # a second signal stops the process mid-write: no half a folder
            shutil.rmtree(run_dir, ignore_errors=True)

        interrupts.cleanups.append(remove_partial)
        try:
            self.report_problems = write_run(run_dir, records, self.summary_data, self.settings.seed,
                                             self.explorer_text)
            point_latest(run_dir)
            self.written = True
        except OSError as exc:  # the tables still print; the answers are in the cache; exit 4 (exitstatus)
            self.report_failure = (f"could not write the run folder {run_dir}: {exc.strerror or exc}; "
                                   "the answers are kept in the response cache, a re-run writes it without asking")
        finally:
            interrupts.cleanups.remove(remove_partial)

    def skip_similarity(self, queries: list[dict[str, Any]]) -> None:
        """An interrupted run: no similarity (``medcode rescore`` adds it), code frequency as always."""
        reason = "not computed: the run was stopped before this pass; medcode rescore adds it"
        for r in queries:
            r["meteor"] = r["bertscore"] = None
        self.similarity = session_metrics.SimilarityReport(
            enabled=self.settings.similarity,
            meteor=session_metrics.MetricStatus(False, "METEOR", reason),
            bertscore=session_metrics.MetricStatus(False, "BERTScore F1", reason, model=self.settings.bertscore_model),
        )
        session_metrics.add_code_frequency(queries, group_fields(queries))

    # -- signals -------------------------------------------------------------------------------------------
    def interrupt_text(self, name: str, stage: str, again: bool) -> str:
        """The one line of an interrupted run: where the signal came, and what is kept."""
        kept = "every answer received is kept in the response cache"
        if again or stage == ENDING:  # the process stops at once
            if stage == WRITING and not self.written:
                return (f"{name}{' again' if again else ''} while writing the run folder: it is not kept; {kept}, "
                        "a re-run replays them and writes it")
            folder = f"the run folder {self.run_dir} is written" if self.written else "no run folder"
            return (f"{name}{' again' if again else ''}: stopped at once; {folder}; {kept}, "
                    "a re-run asks only what is missing")
        if stage == COLLECTION:
            return f"{name} during collection: no model was asked"
        if stage == QUERY_PHASE:
            return (f"{name} during the query phase: {self._answered()}{kept}, a re-run asks only the rest; "
                    "no case ran, so no run folder")
        if stage == TESTS:
            n = len(self.rows)
            folder = (f"the run folder keeps the {n} case(s) that finished"
                      + (" (no similarity pass)" if self.settings.similarity else "")
                      if n else "no case finished, so no run folder")
            return f"{name} during the tests: {folder}; {kept}, a re-run asks only what is missing"
        return self.ending_text(name, stage)

    def ending_text(self, name: str, stage: str) -> str:
        """A signal the session's end caught or noted: said once the run folder is written (or not)."""
        if self.report_failure is not None:
            folder = "the run folder could not be written (above)"
        elif not self.written:
            folder = "no case finished, so no run folder"
        elif self.similarity_cut:
            folder = (f"the run folder {self.run_dir} has every case's code scores but no similarity "
                      f"(medcode rescore {self.run_dir} adds it)")
        else:
            folder = f"the run folder {self.run_dir} is written"
        where = "while writing the run folder" if stage == WRITING else f"during {stage}"
        return f"{name} {where}: {folder}; every answer received is kept in the response cache"

    def _answered(self) -> str:
        progress = self.session.phase_progress()
        seen = progress.to_dict() if progress is not None else (self._watcher.last if self._watcher else None)
        if not seen or not seen.get("total"):
            return ""
        return f"{seen.get('done', 0)} of {seen['total']} answered, "

    def _tell_workers(self) -> None:
        """The xdist controller, interrupted: its workers stop too (xdist.exit_with_controller watches)."""
        if self.interrupts.stage in (QUERY_PHASE, TESTS):  # later, the run's state folder is already gone
            path = self.session.interrupted_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def show_now(self, line: str) -> None:
        """The line of a process that stops at once, as pytest shows its banner."""
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            print(f"!!! {line} !!!", flush=True)
            return
        tr.ensure_newline()
        tr.write_sep("!", line)
        tr.flush()

    def score_session(self, records: list[dict[str, Any]]) -> None:
        """Description similarity for every record, scored once here, and code frequency."""
        s = self.settings
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        announce = tr.write_line if tr is not None and self.config.get_verbosity() >= 0 else None
        store = self.session.response_store() if s.similarity else None
        self.similarity = session_metrics.score_similarity(
            records, self.session.system, enabled=s.similarity, bertscore_model=s.bertscore_model,
            bertscore_device=s.bertscore_device, announce=announce,
            store=ScoreStore(store) if store is not None else None, progress=self.session.progress_writer(),
        )
        session_metrics.add_code_frequency(records, group_fields(records))

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """summary.json: the run's settings and provenance, then its numbers (runs.folder.summarise)."""
        session, s = self.session, self.settings
        phase = session.query_progress.to_dict() if session.query_progress else self._phase_seen
        numbers = summarise(records, seed=s.seed, targets=s.coverage_targets,
                            similarity=self.similarity.available() if self.similarity is not None else None)
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": session.run_id,
            "created": dt.datetime.fromtimestamp(session.started, dt.UTC).isoformat(),
            "duration_s": round(time.time() - session.started, 3),
            "plugin_version": __version__,
            "config": s.to_dict(),
            "prompt_template": session.template.text,
            "code_systems": {n: session.system_version(n) for n in s.systems},
            "n_cases": numbers["n_cases"],
            "profile": s.profile,
            "similarity": self.similarity.to_dict() if self.similarity is not None else None,
            "results": numbers["results"],
            "tables": numbers["tables"],
            "consistency": numbers["consistency"],
            "selective": numbers["selective"],
            "synonym_source": variants.synonym_source() if "synonym" in s.variants else None,
            "queries": query_stats(records, str(s.cache) if s.cache else None,
                                   phase.get("elapsed_s") if phase else None),
            #: --medcode-router: cases, answers and exact match per model and deployment (None without one).
            "deployments": deployment_counts(records),
            "gate": verdict_dict(self.verdict) if self.verdict is not None else None,
            "documents": numbers["documents"],  # the document benchmark's numbers (None without document cases)
            "document_prompt": DOCUMENT_PROMPT if numbers["documents"] else None,
            "costs": cost_summary(records, session.prices, s.max_cost),
            "shard": session.shard,  # pytest-split's group K/N and its selection (runs/merge.py); None: unsplit
        }

    def run_folder(self) -> str | None:
        """Where this run's reports went (None before they are written, or when nothing was recorded)."""
        return str(self.run_dir) if self.run_dir is not None else None

    # -- the terminal ------------------------------------------------------------------------------------
    def display(self, tr: Any) -> None:
        if self.session.estimate_lines is not None:
            tr.write_sep("=", "pytest-medcode estimate")
            for line in self.session.estimate_lines:
                tr.write_line(line)
        if self.run_dir is not None:
            self.display_summary(tr)
        self.display_gate(tr)
        received = self.interrupts.received
        if received is not None and not self.banner_by_pytest:  # the session's end took the signal: its line
            tr.write_sep("!", "Interrupted: " + self.ending_text(received, self.interrupts.received_stage))

    def table_width(self) -> int:
        """The widest a summary line may be: the terminal's width as pytest reports it, at most 100."""
        try:
            reported = int(self.config.get_terminal_writer().fullwidth)
        except (AttributeError, TypeError, ValueError):
            reported = DEFAULT_WIDTH
        return max(40, min(DEFAULT_WIDTH, reported))

    def display_calls(self, tr: Any, quiet: bool) -> None:
        """The model calls line, each model's failure reasons, and (--medcode-router) each deployment's share."""
        queries = self.summary_data["queries"]
        calls = terminal.model_calls_line(queries)
        if calls is not None and not quiet:
            tr.write_line(calls)
        for line in terminal.failure_reason_lines(queries.get("failures") or {}):
            tr.write_line(line, yellow=True)
        for line in terminal.deployment_lines(None if quiet else self.summary_data.get("deployments")):
            tr.write_line(line)

    def display_summary(self, tr: Any) -> None:
        """The tables (``-q``: one compact table), then model calls and the run folder."""
        width, quiet = self.table_width(), self.config.get_verbosity() < 0
        tr.write_sep("=", "pytest-medcode")
        self._write_tables(tr, width, quiet)
        self.display_calls(tr, quiet)
        for line in straight_through.section_lines(self.summary_data.get("selective") or [], width):
            tr.write_line(line)
        for line in straight_through.invalid_confidence_lines(self.records):
            tr.write_line(line, yellow=True)
        for line in terminal.dimension_lines(self.summary_data, width) if not quiet else ():
            tr.write_line(line)
        cost = terminal.cost_lines(self.summary_data.get("costs"), width)
        for line in ["", *cost] if cost and not quiet else ():  # a block of its own, after the tables
            tr.write_line(line)
        if self.report_failure is not None:
            tr.write_line(f"error: {self.report_failure}", red=True, bold=True)
        else:
            tr.write_line(f"run folder: {self.run_dir}")
        for problem in self.report_problems:
            tr.write_line(f"warning: {problem}", yellow=True)

    def _write_tables(self, tr: Any, width: int, quiet: bool) -> None:
        """The code sets scored against, the results tables and the documents' table."""
        releases = terminal.release_line(self.summary_data)
        if releases and not quiet:
            tr.write_line(releases)
        if self.summary_data["results"]:  # code-query cases ran
            for line in terminal.render_summary(self.summary_data, width, compact=quiet):
                tr.write_line(line)
        for line in document_report.terminal_lines(self.summary_data.get("documents"), width):
            tr.write_line(line)

    def display_gate(self, tr: Any) -> None:
        """The verdict, its numbers and its reason: the last lines of the summary."""
        if self.verdict is None:
            return
        tr.write_sep("=", "pytest-medcode gate")
        wrong = sum(1 for r in self.records if r.get("outcome") in WRONG)
        unanswered = sum(1 for r in self.records if r.get("outcome") == ERROR)
        tr.write_line(f"gate mode: {wrong} wrong code(s) recorded as 'mismatched' and {unanswered} failed "
                      "call(s) as 'unanswered', not as test failures; the gate decides the exit status")
        lines = render_verdict(self.verdict)
        for line in lines[:-1]:
            tr.write_line(line, red=line.startswith("FAIL"), yellow=line.startswith("warning"))
        tr.write_line(lines[-1], bold=True, green=self.verdict.passed, red=not self.verdict.passed)

    # -- gate mode ----------------------------------------------------------------------------------------
    def teststatus(self, report: pytest.TestReport) -> tuple[str, str, Any] | None:
        """Gate mode: a case with a wrong code is 'mismatched' (m), one whose call failed 'unanswered'
        (u). Both are passed tests to pytest and JUnit (with the codes as properties); the gate judges."""
        if report.when != "call" or not report.passed:
            return None
        record = self.record_of(report)
        if record is not None:
            if record.get("outcome") == ERROR:
                return "unanswered", "u", ("UNANSWERED", {"yellow": True})
            if record.get("outcome") in WRONG:
                return "mismatched", "m", ("MISMATCH", {"yellow": True})
        return None

    def exitstatus(self, status: int) -> int:
        """Gate mode: 1 when the gate failed. A passed gate leaves pytest's status (0, or 1 when a test
        broke for another reason than a wrong code; interruptions and internal errors are kept).
        A run folder that could not be written is exit 4 (usage error), whatever the codes were.
        An estimate runs no test by design: exit 0."""
        if self.settings.estimate and status == pytest.ExitCode.NO_TESTS_COLLECTED:
            return pytest.ExitCode.OK
        if self.report_failure is not None and status in (
                pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
            return pytest.ExitCode.USAGE_ERROR
        if self.verdict is None or self.verdict.passed:
            return status
        if status in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
            return pytest.ExitCode.TESTS_FAILED
        return status
