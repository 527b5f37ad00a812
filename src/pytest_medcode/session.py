"""The benchmark session: one object per pytest process, kept in ``config.stash``.

It owns the settings, the code systems, the coders and the query engine on every process that
runs cases, and the records and reports on the process that reports (the controller under xdist,
the only process otherwise). The plugin's hooks hand off to it in a line or two.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import secrets
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_medcode import __version__, consistency, destinations, distributed, variants
from pytest_medcode.aggregate import summarize
from pytest_medcode.cache import CacheError, ResponseStore, request_key
from pytest_medcode.cases import Case, CodeList, build_cases, read_code_list, select_codes
from pytest_medcode.coders import Coder, CoderUnavailable, Question, resolve_coder
from pytest_medcode.codesystems import SYSTEMS, CodeFileError, CodeSystem, load_system
from pytest_medcode.compare import RunFormatError, load_run
from pytest_medcode.gate import Verdict, render_verdict
from pytest_medcode.options import Settings
from pytest_medcode.phase import QueryPhase, stop_paths
from pytest_medcode.preflight import failure_line, probe, remote_coders
from pytest_medcode.progress import ProgressLine, ProgressWatcher
from pytest_medcode.prompts import PromptTemplate, TemplateError, load_template
from pytest_medcode.querying import Call, Outcome, Progress, QueryEngine, failure_reasons, render_failure_reasons
from pytest_medcode.records import ERROR, INCORRECT, NO_CODE, PROPERTY, RecordRows, build_record
from pytest_medcode.report_memory import ReportMemory
from pytest_medcode.reports import files, html, markdown, tables, terminal
from pytest_medcode.scoring import session_metrics

CASE_PARAM = "medcode_case"
STOP_PROPERTY = "medcode_stopped"  # on a case a worker could not ask: why the run stops (the cache failed)
#: The question's fields in the response-cache key, as they have been since the cache existed.
_KEYED = ("messages", "temperature", "max_tokens", "repeat")


class MedcodeSession:
    #: Gate mode (controller only): the baseline run's records, and the verdict once finish() ran.
    baseline: list[dict[str, Any]] | None = None
    verdict: Verdict | None = None
    report_problems: tuple[str, ...] = ()  # report.md / report.html that could not be written
    report_failure: str | None = None  # the run folder could not be written (exit 4; the tables still print)
    stopped: str | None = None  # the query phase stopped (the cache failed): why
    current_item: pytest.Item | None = None  # the test that is running: where the medcode fixture records
    similarity: session_metrics.SimilarityReport | None = None  # the end-of-session similarity pass

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.reporting = not distributed.is_worker(config)
        self.started = time.time()
        self.run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.rows = RecordRows()  # the records as they arrive (reporting process)
        self.records: list[dict[str, Any]] = []  # every record, in collection order, once the tests are done
        self.memory = ReportMemory(config, worker=not self.reporting)
        self._collection_order: dict[str, int] | None = None  # nodeid → position (xdist controller)
        self.junit = bool(config.getoption("xmlpath", None))  # --junitxml: the codes go in as properties
        self.run_dir: Path | None = None
        self.template: PromptTemplate
        self.coders: dict[str, Coder] = {}
        self._systems: dict[str, CodeSystem] = {}
        self._code_list: CodeList | None = None
        self._cases: list[Case] | None = None
        self._engine: QueryEngine | None = None
        self._phase: QueryPhase | None = None
        self._unkept: dict[str, Outcome] = {}  # outcomes the response store does not keep (phase.py)
        self._answers: dict[str, Outcome] = {}  # without xdist: every kept outcome, read once after the phase
        self._keys: dict[Case, str] = {}  # the query phase's cache key per case, so a test need not redo it
        self._watcher: ProgressWatcher | None = None
        self.query_progress: Progress | None = None
        self.query_progress_seen: dict[str, Any] | None = None
        shared = distributed.from_controller(config)
        if shared:
            self.run_id, self.started = shared["run_id"], shared["started"]

    # -- configure time: everything the user gave is checked before any case runs ------------
    def validate(self) -> None:
        """Raise pytest.UsageError (one line, exit 4) for any input that cannot work."""
        s = self.settings
        try:
            self.template = load_template(s.prompt)
        except TemplateError as exc:
            raise pytest.UsageError(str(exc)) from None
        for system in s.systems:
            if SYSTEMS[system].rows is None and system not in s.codesets:
                raise pytest.UsageError(
                    f"--medcode-system {system}: {SYSTEMS[system].title} is not bundled (its descriptors are "
                    f"licensed); give your file with --medcode-codeset {system}=PATH"
                )
        try:
            for system, path in s.codesets.items():
                self._systems[system] = load_system(system, path)
            if s.codes_file is not None:
                self._code_list = read_code_list(s.codes_file, s.systems)
        except CodeFileError as exc:
            raise pytest.UsageError(str(exc)) from None
        if self._code_list is not None:
            self.cases()  # a listed code not in its system: one line now, not a collection error later
        try:
            self.coders = {m: resolve_coder(m, s.coder_options()) for m in s.models}
        except CoderUnavailable as exc:
            raise pytest.UsageError(str(exc)) from None
        for coder in self.coders.values():
            try:
                coder.check()
            except CoderUnavailable as exc:
                raise pytest.UsageError(str(exc)) from None
        if self.reporting and s.gate.baseline is not None:
            try:
                self.baseline = load_run(s.gate.baseline).records
            except RunFormatError as exc:
                raise pytest.UsageError(f"--medcode-baseline {exc}") from None
        if self.reporting:
            self.check_destinations()
        if s.preflight and distributed.is_distributed(self.config) and not distributed.is_worker(self.config):
            self.preflight(self.cases())  # the xdist controller, before any worker starts
            self._cases = None  # it runs no case itself: the tables and cases are the workers'
            self._systems = {n: t for n, t in self._systems.items() if n in s.codesets}

    def check_destinations(self) -> None:
        """Everything the run writes (cache, run folder, their disk space), checked before the first call."""
        s = self.settings
        cases = len(self._cases) if self._cases is not None else (
            (s.sample or destinations.ALL_CODES) * len(s.systems) * len(s.models) * len(s.variants)
            * max(1, len(s.temperatures)) * s.repeats)
        cache = self.cache_paths()[0] if s.cache is not None else None
        problem = destinations.check(cache, self.report_root(), cases, s.max_tokens)
        if problem:
            raise pytest.UsageError(problem)

    def report_root(self) -> Path:
        """Where run folders go (--medcode-report-dir, relative to where pytest was started)."""
        root = self.settings.report_dir
        return root if root.is_absolute() else self.config.invocation_params.dir / root

    def preflight(self, cases: list[Case]) -> None:
        """One real request per API model before any case (preflight.py); a failed setup is one line, exit 4."""
        first: dict[str, Case] = {}
        for case in cases:
            if case.model not in first and remote_coders(self.coders[case.model]):
                first[case.model] = case
        for model, case in first.items():
            question = self.request_for(case)
            try:
                failed = probe(model, question, self.key_for(model, question), self.phase(), self.engine().ask)
            except CacheError as exc:
                raise pytest.UsageError(str(exc)) from None
            if failed is not None:
                raise pytest.UsageError(failure_line(model, self.coders[model], failed))

    # -- collection -----------------------------------------------------------------------
    def system(self, name: str) -> CodeSystem:
        if name not in self._systems:
            self._systems[name] = load_system(name, self.settings.codesets.get(name))
        return self._systems[name]

    def system_version(self, name: str) -> str:
        """The release of a system, without loading a bundled table for it (the xdist controller has none)."""
        if name in self._systems:
            return self._systems[name].version
        return SYSTEMS[name].release or ""

    def cases(self) -> list[Case]:
        if self._cases is None:
            s = self.settings
            try:
                per_system = {
                    name: select_codes(self.system(name), s.sample, s.seed, self._code_list) for name in s.systems
                }
            except CodeFileError as exc:
                raise pytest.UsageError(str(exc)) from None
            self._cases = build_cases(s.models, per_system, s.variants, s.seed, s.temperatures, s.repeats)
        return self._cases

    def parametrize(self, metafunc: pytest.Metafunc) -> None:
        cases = self.cases()
        metafunc.parametrize(CASE_PARAM, cases, ids=[c.id for c in cases])

    def query_phase(self, items: list[pytest.Item]) -> None:
        """Answer every selected case of a cached coder before the tests run (see phase.py).

        Deselected cases (-k, --lf) are never asked. Answers stream into the response store as
        they arrive; the tests then read them. Coders that are not cached answer in the test.
        """
        cases = [c for c in _cases_of(items) if self.coders[c.model].cacheable]
        if not cases:
            return
        if self.settings.preflight and not distributed.is_distributed(self.config):
            self.preflight(cases)  # the selected cases only: -k and --lf leave the rest unasked
        unique: dict[str, Case] = {}
        for case in cases:  # one request at a time: only the keys are kept
            key = self._keys[case] = self.key_for(case.model, self.request_for(case))
            unique.setdefault(key, case)
        try:
            self._unkept.update(self.phase().run(list(unique), lambda key: self.call_for(unique[key])))
            if not distributed.is_distributed(self.config):  # one process: read every answer in one pass
                self._answers = self.phase().outcomes(list(unique))  # (xdist workers read each as it runs)
        except CacheError as exc:
            self.stop(str(exc))
            return
        self.query_progress = self.phase().progress
        release_free_memory()

    def stop(self, reason: str) -> None:
        """The cache failed: no more calls. One line and exit 4; under xdist a worker cannot end the run
        from collection, so its cases without an answer are skipped and carry the reason to the controller."""
        self.stopped = reason
        if not distributed.is_worker(self.config):
            raise pytest.UsageError(reason)

    def cache_paths(self) -> tuple[Path, Path]:
        """The response cache file and this run's state folder (its lock, progress and stop files)."""
        s = self.settings
        if s.cache is not None:
            path = s.cache if s.cache.is_absolute() else self.config.rootpath / s.cache
            return path, path.parent / "runs" / self.run_id
        # a store for this run only, so xdist workers still share answers
        state = Path(tempfile.gettempdir()) / "pytest-medcode" / "runs" / self.run_id
        return state / "responses.sqlite3", state

    def phase(self) -> QueryPhase:
        """The query phase and its response store (CacheError when the store cannot be opened)."""
        if self._phase is None:
            path, state = self.cache_paths()
            writer = self._progress_writer()
            try:
                store = ResponseStore(path, notify=writer.notice if writer is not None else None)
            except (OSError, sqlite3.Error) as exc:
                raise CacheError(f"--medcode-cache {path}: cannot open the response cache ({exc})") from None
            self._phase = QueryPhase(store, self.engine, state, self.started, self.settings.retry_errors, writer)
        return self._phase

    def _progress_writer(self):
        """Where the phase's progress line goes: the terminal of a process that has one, unless -q."""
        if not self.reporting or self.config.get_verbosity() < 0:
            return None
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return None
        return ProgressLine(tr)

    # -- running ----------------------------------------------------------------------------
    def request_for(self, case: Case) -> Question:
        """What the case's coder is asked: the case stays here, so the reference code never reaches a coder."""
        system = self.system(case.system)
        messages = self.template.messages(system.prompt_name, case.asked_description, system.example)
        return Question(
            system=case.system,
            description=case.asked_description,
            messages=tuple((m["role"], m["content"]) for m in messages),
            temperature=self.settings.temperature if case.temperature is None else case.temperature,
            max_tokens=self.settings.max_tokens,
            repeat=case.repeat or 0,
        )

    def call_for(self, case: Case) -> Call:
        return Call(case.model, self.request_for(case))

    def key_for(self, model: str, question: Question) -> str:
        """Response-cache key: the model's coder identity and the prompt and generation parameters.

        Exactly the fields the key has always had, so the caches of earlier runs stay valid."""
        fields = {name: getattr(question, name) for name in _KEYED}
        return request_key({**self.coders[model].identity(), **fields})

    def engine(self) -> QueryEngine:
        if self._engine is None:
            s = self.settings
            self._engine = QueryEngine(self.coders, s.concurrency, s.attempts, s.timeout, s.rpm, s.circuit_breaker)
        return self._engine

    def ask(self, case: Case) -> dict[str, Any]:
        if not self.coders[case.model].cacheable:
            outcome = self.engine().ask(case.model, self.request_for(case))
        else:
            key = self._keys.get(case)
            request = None
            if key is None:  # not seen by the query phase (a case created outside collection)
                request = self.request_for(case)
                key = self.key_for(case.model, request)
            try:
                outcome = self._unkept.get(key) or self._answers.get(key) or self.phase().outcome(key)
                if outcome is None and self.stopped is None:
                    request = request or self.request_for(case)
                    self._unkept.update(self.phase().run([key], lambda _: Call(case.model, request)))
                    outcome = self._unkept.get(key) or self.phase().outcome(key)
            except CacheError as exc:
                self.stopped = str(exc)
                outcome = None
            if outcome is None:
                if self.stopped is not None:
                    self._skip_stopped()
                raise RuntimeError(f"pytest-medcode: no outcome for {case.id} after asking")  # a bug, not input
        return build_record(case, self.system(case.system), outcome, self.settings.profile)

    def _skip_stopped(self) -> None:
        """A case the stopped phase never asked: the run ends with the reason (exit 4), the case is not scored."""
        if self.reporting:
            pytest.exit(self.stopped or "", returncode=pytest.ExitCode.USAGE_ERROR)
        if self.current_item is not None:
            self.current_item.user_properties.append((STOP_PROPERTY, self.stopped))
        pytest.skip(f"not asked: {self.stopped}")

    # -- xdist controller ----------------------------------------------------------------------
    def for_workers(self) -> dict[str, Any]:
        """What every worker must share with the controller: the run id and start time."""
        return {"run_id": self.run_id, "started": self.started}

    def watch_workers(self) -> None:
        """Follow the query phase, which a worker runs: show its progress (unless -q), keep its timing."""
        if distributed.is_distributed(self.config) and not distributed.is_worker(self.config):
            self._watcher = ProgressWatcher(self.cache_paths()[1] / "progress.json", self._progress_writer())
            self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self.query_progress_seen = self._watcher.last
            self._watcher = None

    def query_stats(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Cache hits and misses, retries and failed calls of the cached coders' cases."""
        cached = [r for r in records if r.get("cache_hit") is not None]
        fresh = [r for r in cached if not r["cache_hit"]]
        asked = [r for r in fresh if r.get("attempts")]  # the rest were never asked (the circuit breaker)
        phase = self.query_progress.to_dict() if self.query_progress else self.query_progress_seen
        return {
            "cache": str(self.settings.cache) if self.settings.cache else None,
            "cache_hits": len(cached) - len(fresh),
            "asked": len(asked),
            "not_asked": len(fresh) - len(asked),
            "retries": sum(max(0, (r.get("attempts") or 1) - 1) for r in asked),
            "errors": sum(1 for r in cached if r.get("outcome") == "error"),
            "phase_s": phase.get("elapsed_s") if phase else None,
            "failures": failure_reasons(records),
        }

    # -- reporting (controller) ---------------------------------------------------------------
    def add_report(self, report: pytest.TestReport) -> None:
        """Every report, after every other plugin has seen it: keep the record, and let pytest forget what
        it never shows (report_memory.py)."""
        if report.when == "call":
            if self.reporting:
                for name, value in report.user_properties:
                    if name == STOP_PROPERTY:  # a worker's query phase stopped (the cache failed): end the run
                        self.stopped = value
                        pytest.exit(value, returncode=pytest.ExitCode.USAGE_ERROR)
            for i, (name, value) in enumerate(report.user_properties):
                if name != PROPERTY:
                    continue
                if not self.reporting:  # a worker: xdist has sent the record on; the worker need not keep it
                    report.user_properties = [p for p in report.user_properties if p[0] != PROPERTY]
                elif isinstance(value, dict):
                    if distributed.from_worker(report):  # unpickled: every record has its own copy of every key
                        value = distributed.compact(value)
                    position = self.rows.append(value, report.nodeid)
                    report.user_properties[i] = (name, position)  # the row stands for it from now on
                break
            else:
                self.memory.seen(report, is_case=False)
                return
        self.memory.seen(report, is_case=report.when == "call")

    def record_of(self, report: pytest.TestReport) -> dict[str, Any] | None:
        """The record a benchmark case's call report stands for (reporting process), else None."""
        for name, value in getattr(report, "user_properties", ()):
            if name == PROPERTY:
                if isinstance(value, int):
                    return self.rows.record(value)
                return value if isinstance(value, dict) else None
        return None

    def collection_finished(self, nodeids: list[str]) -> None:
        """xdist controller: the order the workers collected the tests in (the same on every worker)."""
        if self._collection_order is None:
            self._collection_order = {nodeid: i for i, nodeid in enumerate(nodeids)}


    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        results = summarize(records, seed=self.settings.seed, by=consistency.group_fields(records),
                            similarity=self.similarity.available() if self.similarity is not None else None)
        return {
            "schema_version": files.SUMMARY_SCHEMA_VERSION,
            "run_id": self.run_id,
            "created": dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat(),
            "duration_s": round(time.time() - self.started, 3),
            "plugin_version": __version__,
            "config": self.settings.to_dict(),
            "prompt_template": self.template.text,
            "code_systems": {n: self.system_version(n) for n in self.settings.systems},
            "n_cases": len(records),
            "profile": self.settings.profile,
            "similarity": self.similarity.to_dict() if self.similarity is not None else None,
            "results": results,
            "tables": tables.build_tables(results),
            "consistency": consistency.self_consistency(records),
            "synonym_source": variants.synonym_source() if "synonym" in self.settings.variants else None,
            "queries": self.query_stats(records),
            "gate": self.verdict.to_dict() if self.verdict is not None else None,
        }

    def finish(self) -> None:
        if self._engine is not None:
            self._engine.close()
        for coder in self.coders.values():  # local:MODEL stops its server here
            coder.close()
        self.stop_watching()  # under xdist pytest_runtestloop is xdist's alone: the phase's timing is kept here
        if self._phase is not None:
            self._phase.store.close()
        if self.reporting and (self._phase is not None or distributed.is_distributed(self.config)):
            shutil.rmtree(self.cache_paths()[1], ignore_errors=True)  # lock, progress and stop files of this run
            for stop in stop_paths(self.cache_paths()[1]):
                stop.unlink(missing_ok=True)
        if not self.reporting:
            return
        # Collection order, whatever order workers finished in (without xdist they arrive in it); from the test
        # ids, not the case list: the controller need not load the code tables.
        self.records = records = self.rows.take(self._collection_order)
        if records:  # end-of-session scores (similarity, code frequency): before the gate, which may use them
            self.score_session(records)
        if self.settings.gate.active:
            self.verdict = self.settings.gate.evaluate(records, self.baseline, self.settings.seed)
        if not self.records:
            return
        self.run_dir = self.report_root() / self.run_id
        self.summary_data = self.summary(records)
        try:
            files.write_cases(records, self.run_dir / "cases.parquet")
            files.write_json(self.summary_data, self.run_dir / "summary.json")
            files.point_latest(self.run_dir)
        except OSError as exc:  # the tables still print; the answers are in the cache; exit 4 (exitstatus)
            self.report_failure = (f"could not write the run folder {self.run_dir}: {exc.strerror or exc}; "
                                   "the answers are kept in the response cache, a re-run writes it without asking")
            return
        problems = []
        for name, module in (("report.md", markdown), ("report.html", html)):
            try:
                module.write(self.run_dir / name, records, self.summary_data, self.settings.seed)
            except Exception as exc:  # a view of saved data (`medcode report` redoes it): warn, don't crash
                problems.append(f"could not write {name}: {exc.__class__.__name__}: {exc}")
        self.report_problems = tuple(problems)

    def score_session(self, records: list[dict[str, Any]]) -> None:
        """Description similarity for every record, scored once here on the controller, and code frequency."""
        s = self.settings
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        announce = tr.write_line if tr is not None and self.config.get_verbosity() >= 0 else None
        self.similarity = session_metrics.score_similarity(
            records, self.system, enabled=s.similarity, bertscore_model=s.bertscore_model,
            bertscore_device=s.bertscore_device, announce=announce,
        )
        session_metrics.add_code_frequency(records, consistency.group_fields(records))

    def display(self, tr: Any) -> None:
        if not self.reporting or self.run_dir is None:
            self.display_gate(tr)
            return
        tr.write_sep("=", "pytest-medcode")
        for line in terminal.render_summary(self.summary_data):
            tr.write_line(line)
        queries = self.summary_data["queries"]
        if queries["asked"] or queries["cache_hits"] or queries.get("not_asked"):
            took = f" in {queries['phase_s']:.1f} s" if queries["asked"] and queries.get("phase_s") else ""
            not_asked = f", {queries['not_asked']} not asked" if queries.get("not_asked") else ""
            tr.write_line(f"model calls: {queries['asked']} asked{took}, {queries['cache_hits']} from the cache, "
                          f"{queries['retries']} retries, {queries['errors']} failed{not_asked}")
        for line in render_failure_reasons(queries.get("failures") or {}):
            tr.write_line(line, yellow=True)
        self.display_dimensions(tr)
        if self.report_failure is not None:
            tr.write_line(f"error: {self.report_failure}", red=True, bold=True)
        else:
            tr.write_line(f"run folder: {self.run_dir}")
        for problem in self.report_problems:
            tr.write_line(f"warning: {problem}", yellow=True)
        self.display_gate(tr)

    def display_dimensions(self, tr: Any) -> None:
        """Exact match by variant / temperature, and self-consistency across repeats, when varied."""
        data = self.summary_data
        for dimension in ("variant", "temperature"):
            if any(dimension in row for row in data["results"]):
                title = f"exact match by {dimension}"
                tr.write_line("")
                tr.write_line(title + (f" (synonyms: {data['synonym_source']})" if dimension == "variant"
                                       and data.get("synonym_source") else ""))
                for line in consistency.render_pivot(data["results"], dimension):
                    tr.write_line(line)
        if data.get("consistency"):
            tr.write_line("")
            tr.write_line("self-consistency over repeats (agreement: share of a case's answers that match its most "
                          "frequent code)")
            for line in consistency.render_consistency(data["consistency"]):
                tr.write_line(line)

    def run_folder(self) -> str | None:
        """Where this run's reports went (None before they are written, or when nothing was recorded)."""
        return str(self.run_dir) if self.run_dir is not None else None

    # -- gate mode ------------------------------------------------------------------------------
    def display_gate(self, tr: Any) -> None:
        """The verdict, its numbers and its reason: the last lines of the summary."""
        if self.verdict is None:
            return
        tr.write_sep("=", "pytest-medcode gate")
        wrong = sum(1 for r in self.records if r.get("outcome") in (INCORRECT, NO_CODE))
        unanswered = sum(1 for r in self.records if r.get("outcome") == ERROR)
        tr.write_line(f"gate mode: {wrong} wrong code(s) recorded as 'mismatched' and {unanswered} failed "
                      "call(s) as 'unanswered', not as test failures; the gate decides the exit status")
        lines = render_verdict(self.verdict)
        for line in lines[:-1]:
            tr.write_line(line, red=line.startswith("FAIL"), yellow=line.startswith("warning"))
        tr.write_line(lines[-1], bold=True, green=self.verdict.passed, red=not self.verdict.passed)

    def teststatus(self, report: pytest.TestReport) -> tuple[str, str, Any] | None:
        """Gate mode: a case with a wrong code is 'mismatched' (m), one whose call failed 'unanswered'
        (u). Both are passed tests to pytest and JUnit (with the codes as properties); the gate judges."""
        if not self.settings.gate.active or report.when != "call" or not report.passed:
            return None
        record = self.record_of(report)
        if record is not None:
            if record.get("outcome") == ERROR:
                return "unanswered", "u", ("UNANSWERED", {"yellow": True})
            if record.get("outcome") in (INCORRECT, NO_CODE):
                return "mismatched", "m", ("MISMATCH", {"yellow": True})
        return None

    def exitstatus(self, status: int) -> int:
        """Gate mode: 1 when the gate failed. A passed gate leaves pytest's status (0, or 1 when a test
        broke for another reason than a wrong code; interruptions and internal errors are kept).
        A run folder that could not be written is exit 4 (usage error), whatever the codes were."""
        if self.report_failure is not None and status in (
                pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
            return pytest.ExitCode.USAGE_ERROR
        if self.verdict is None or self.verdict.passed:
            return status
        if status in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
            return pytest.ExitCode.TESTS_FAILED
        return status


def release_free_memory() -> None:
    """Hand memory that was freed back to the OS (glibc keeps it otherwise): the prompts built to key every
    case are gone after the query phase, and with -n each worker would go on holding their pages."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _cases_of(items: list[pytest.Item]) -> list[Case]:
    out = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and CASE_PARAM in callspec.params:
            out.append(callspec.params[CASE_PARAM])
    return out
