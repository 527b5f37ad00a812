"""The asking side of a run: one object per pytest process, kept in ``config.stash``.

Every process that runs cases (each xdist worker, or the only process) has one: it owns the settings,
the code tables, the cases, the coders, the query engine and the response cache, and turns a case into
its record. What only the reporting process does — keep the records, score the whole run, write the
run folder, print the summary — is :class:`~pytest_medcode.plugin.reporter.MedcodeReporter`'s.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import re
import secrets
import shutil
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_medcode.asking.batch import BatchRejected, BatchRunner, batch_route, missing_client
from pytest_medcode.asking.budget import TOTAL, Budget
from pytest_medcode.asking.cache import CacheError, ResponseStore, check_environment, request_key
from pytest_medcode.asking.coders import Coder, CoderUnavailable, Question, gives_confidence, resolve_coder
from pytest_medcode.asking.engine import Call, Outcome, QueryEngine
from pytest_medcode.asking.estimate import estimate_lines
from pytest_medcode.asking.phase import QueryPhase, stop_paths
from pytest_medcode.asking.preflight import deployment_failure, failure_line, probe, remote_coders
from pytest_medcode.asking.pricing import PriceTable, TokenCounter
from pytest_medcode.asking.progress import Progress, ProgressLine
from pytest_medcode.codesystems import SYSTEMS, CodeFileError, CodeSystem, ReleaseError, chosen_release, load_system
from pytest_medcode.codesystems.changes import changed_since_previous
from pytest_medcode.dataset.cases import Case, CodeList, build_cases, read_code_list, select_codes
from pytest_medcode.dataset.document_cases import (
    Document,
    DocumentCase,
    DocumentFileError,
    build_document_cases,
    read_documents,
    sample_documents,
    synthetic_documents,
)
from pytest_medcode.dataset.prompts import PromptTemplate, TemplateError, document_messages, load_template
from pytest_medcode.plugin import split, xdist
from pytest_medcode.plugin.options import CHANGED, Settings
from pytest_medcode.results.records import build_document_record, build_record
from pytest_medcode.runs.merge import shard_record

CASE_PARAM = "medcode_case"
DOCUMENT_PARAM = "medcode_document"  # benchmarks/test_document_coding.py: one (model, document) case
#: The marker every benchmark case carries (registered in hooks.py), so ``-m medcode`` / ``-m "not medcode"``
#: select the benchmark apart from a project's other tests.
MARKER = "medcode"
#: The system synthetic notes are written in when no documents file is given.
SYNTHETIC_SYSTEM = "icd10cm"
#: The document benchmark's one parameter when no selected system has documents (deselected, never asked).
NO_DOCUMENTS = "no-documents"
STOP_PROPERTY = "medcode_stopped"  # on a case a worker could not ask: why the run stops (the cache failed)
#: Tokens a document answer may take at least: a set of up to a dozen codes, not one (--medcode-max-tokens
#: is the code-query budget, 50 by default).
DOCUMENT_MAX_TOKENS = 200
#: The question's fields in the response-cache key, as they have been since the cache existed.
_KEYED = ("messages", "temperature", "max_tokens", "repeat")


class MedcodeSession:
    stopped: str | None = None  # the query phase stopped (the cache failed): why
    #: pytest-split's group K/N: the case ids of the whole selection before the split, then this shard's record
    _selection: list[str] | None = None
    shard: dict[str, Any] | None = None

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.reporting = not xdist.is_worker(config)  # the process that reports (MedcodeReporter) is here too
        self.started = time.time()
        self.run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.junit = bool(config.getoption("xmlpath", None))  # --junitxml: the codes go in as properties
        self.template: PromptTemplate
        self.coders: dict[str, Coder] = {}
        self._systems: dict[str, CodeSystem] = {}
        self._code_list: CodeList | None = None
        self._changed: dict[str, frozenset[str]] = {}  # --medcode-sample changed: per system
        self._cases: list[Case] | None = None
        self._documents: list[Document] | None = None  # the documents file, read and checked once
        self._document_cases: list[DocumentCase] | None = None
        self._engine: QueryEngine | None = None
        self._phase: QueryPhase | None = None
        self._own_store: ResponseStore | None = None  # the response cache opened for scores (response_store)
        self._unkept: dict[str, Outcome] = {}  # outcomes the response store does not keep (phase.py)
        self._answers: dict[str, Outcome] = {}  # without xdist: every kept outcome, read once after the phase
        self._keys: dict[Case | DocumentCase, str] = {}  # the query phase's cache key per case (the tests reuse it)
        self.query_progress: Progress | None = None
        self.prices = PriceTable(settings.prices)  # litellm's map is read only when a price is looked up
        self.estimate_lines: list[str] | None = None  # --medcode-estimate: what the run would cost
        shared = xdist.from_controller(config)
        if shared:
            self.run_id, self.started = shared["run_id"], shared["started"]

    # -- configure time: everything the user gave is checked before any case runs ------------
    def validate(self) -> None:
        """Raise pytest.UsageError (one line, exit 4) for any input that cannot work."""
        self.validate_setup()
        self.validate_systems()
        self.validate_cases()
        self.validate_coders()
        self.validate_budget()

    def validate_setup(self) -> None:
        """The environment and the prompt template: checked first, as every later step relies on them."""
        try:
            check_environment()  # MEDCODE_CACHE_WAIT_S=abc: one line now, not a silent default
        except CacheError as exc:
            raise pytest.UsageError(str(exc)) from None
        try:
            self.template = load_template(self.settings.prompt)
        except TemplateError as exc:
            raise pytest.UsageError(str(exc)) from None

    def validate_systems(self) -> None:
        """Every --medcode-system has a table and every --medcode-codeset file loads: before any case."""
        s = self.settings
        for system in s.systems:
            if system in SYSTEMS and SYSTEMS[system].rows is None and system not in s.codesets:
                raise pytest.UsageError(
                    f"--medcode-system {system}: {SYSTEMS[system].title} is not bundled (its descriptors are "
                    f"licensed); give your file with --medcode-codeset {system}=PATH"
                )
        for system, path in s.codesets.items():
            try:
                self._systems[system] = load_system(system, path)
            except CodeFileError as exc:  # the message starts with the path: name the option before it
                raise pytest.UsageError(f"--medcode-codeset {system}={exc}") from None

    def validate_cases(self) -> None:
        """The code list and the documents: loaded now so a bad one fails in one line before any case."""
        s = self.settings
        for name in s.systems if s.sample == CHANGED else ():
            self.changed_codes(name)
        if s.codes_file is not None:
            try:
                self._code_list = read_code_list(s.codes_file, s.systems)
            except CodeFileError as exc:
                raise pytest.UsageError(f"--medcode-codes {exc}") from None
        if self._code_list is not None:
            self.cases()  # a listed code not in its system: one line now, not a collection error later
        if s.documents_file is not None:
            self.documents()  # a bad documents file: one line now (exit 4), nothing half-loaded
        self.check_named_documents()

    def validate_coders(self) -> None:
        """Resolve every --model and check it can be asked (a key, a reachable server) before any case."""
        s = self.settings
        try:
            self.coders = {m: resolve_coder(m, s.coder_options(), s.router) for m in s.models}
        except CoderUnavailable as exc:
            raise pytest.UsageError(str(exc)) from None
        if s.gate.needs_confidence and s.repeats == 1:  # repeats give every coder a confidence (their agreement)
            for model, coder in self.coders.items():
                if gives_confidence(coder) is False:
                    raise pytest.UsageError(
                        f"{_confidence_rule(s)}: {model} gives no confidence, so no threshold can be applied to it "
                        "(ask it --medcode-repeats K times for its agreement, or leave it out of this gate)")
        for model, coder in self.coders.items() if s.batch else ():  # a batch client that is not installed
            route = batch_route(coder)
            problem = missing_client(model, route) if route is not None else None
            if problem is not None:
                raise pytest.UsageError(problem)
        for coder in self.coders.values() if not s.estimate else ():  # an estimate needs no key: asks nothing
            try:
                coder.check()
            except CoderUnavailable as exc:
                raise pytest.UsageError(str(exc)) from None

    def validate_budget(self) -> None:
        """A budget needs a price for every model it limits: one line naming the option that gives it."""
        limits = self.settings.max_cost
        if not limits:
            return
        strays = [m for m in limits if m != TOTAL and m not in self.settings.models]
        if strays:
            raise pytest.UsageError(f"--medcode-max-cost {strays[0]}=...: {strays[0]} is not a --model of this run")
        for model in self.settings.models:
            if not (TOTAL in limits or model in limits) or not remote_coders(self.coders[model]):
                continue
            if getattr(self.coders[model], "inner", None) is not None:
                raise pytest.UsageError(
                    f"--medcode-max-cost: {model} writes its own prompts and may ask several times, so the most a "
                    "call costs is not known before it starts; give the budget to a run of the model it wraps")
            if self.settings.batch and batch_route(self.coders[model]) is not None:
                raise pytest.UsageError(
                    f"--medcode-max-cost: {model} goes through the provider's Batch API (--medcode-batch), where a "
                    "submitted batch runs and is paid whole; check its cost first with --medcode-estimate, or "
                    "drop --medcode-batch to stream under the budget")
            if self.prices.price(model) is None:
                raise pytest.UsageError(
                    f"--medcode-max-cost: no price is known for {model}; give one with --medcode-price "
                    f"{model}=IN/OUT (USD per million input/output tokens)")

    def preflight_for_workers(self) -> None:
        """The xdist controller probes each API model before any worker starts (preflight.py); it runs no
        case itself, so the cases and tables it loaded for that are let go."""
        if self.settings.preflight and xdist.is_distributed(self.config) and not xdist.is_worker(self.config):
            self.preflight(self.cases())
            self._cases = None
            self._systems = {n: t for n, t in self._systems.items() if n in self.settings.codesets}

    def has_cases(self) -> bool:
        return self._cases is not None

    def case_count(self) -> int:
        return len(self.cases())

    def preflight(self, cases: Sequence[Case | DocumentCase]) -> None:
        """One real request per API model before any case (preflight.py); a failed setup is one line, exit 4."""
        first: dict[str, Case | DocumentCase] = {}
        for case in cases:
            if case.model not in first and remote_coders(self.coders[case.model]):
                first[case.model] = case
        for model, case in first.items():
            question = self.request_for(case)
            key = self.key_for(model, question)
            try:
                replayed = self.phase().outcome(key) is not None  # answered before: a replay needs no network
                failed = probe(model, question, key, self.phase(), self.engine())
            except CacheError as exc:
                raise pytest.UsageError(str(exc)) from None
            if failed is not None:
                raise pytest.UsageError(failure_line(model, self.coders[model], failed))
            dead = None if replayed else deployment_failure(model, self.coders[model], self.engine())
            if dead is not None:
                raise pytest.UsageError(dead)

    # -- collection -----------------------------------------------------------------------
    def system(self, name: str) -> CodeSystem:
        if name not in self._systems:
            self._systems[name] = load_system(name, self.settings.codesets.get(name))
        return self._systems[name]

    def system_version(self, name: str) -> str:
        """The release of a system, without loading a bundled table for it (the xdist controller has none)."""
        if name in self._systems:
            return self._systems[name].version
        release = chosen_release(name) if name not in self.settings.codesets else None
        return release.title if release is not None else ""

    def changed_codes(self, name: str) -> frozenset[str]:
        """--medcode-sample changed: the billable codes the chosen release of ``name`` added or retitled since
        the release before it; one line (exit 4) when there is nothing to compare it with."""
        if name not in self._changed:
            try:
                found = changed_since_previous(name, self.system(name))
            except ReleaseError as exc:
                raise pytest.UsageError(f"--medcode-sample changed: {exc}") from None
            self._changed[name] = frozenset(c.code for c in found if c.billable)
        return self._changed[name]

    def cases(self) -> list[Case]:
        if self._cases is None:
            s = self.settings
            changed = s.sample == CHANGED
            try:
                per_system = {
                    name: select_codes(self.system(name), None if changed else s.sample,  # type: ignore[arg-type]
                                       s.seed, self._code_list, self.changed_codes(name) if changed else None)
                    for name in s.systems
                }
            except CodeFileError as exc:
                raise pytest.UsageError(str(exc)) from None
            self._cases = build_cases(s.models, per_system, s.variants, s.seed, s.temperatures, s.repeats)
        return self._cases

    def parametrize(self, metafunc: pytest.Metafunc) -> None:
        cases = self.cases()
        mark = getattr(pytest.mark, MARKER)
        metafunc.parametrize(CASE_PARAM, [pytest.param(c, id=c.id, marks=mark) for c in cases])

    def documents(self) -> list[Document]:
        """The run's documents, only of the selected systems: a seeded draw from the rows of
        ``--medcode-documents`` for those systems, else synthetic notes when ICD-10-CM (their system) is
        selected, else none (a run of ICD-9-CM or ICD-10-PCS asks for no document)."""
        if self._documents is None:
            s = self.settings
            if s.documents_file is None:
                count = s.document_sample or 50
                self._documents = (synthetic_documents(self.system(SYNTHETIC_SYSTEM), count, s.seed)
                                   if SYNTHETIC_SYSTEM in s.systems else [])
            else:
                try:
                    every = read_documents(s.documents_file, self.system, s.systems, s.codesets)
                except DocumentFileError as exc:
                    raise pytest.UsageError(str(exc)) from None
                self._documents = sample_documents(every, s.document_sample, s.seed)
        return self._documents

    def has_documents(self) -> bool:
        """Whether any selected system has documents, without generating the synthetic notes."""
        if self._documents is None and self.settings.documents_file is None:
            return SYNTHETIC_SYSTEM in self.settings.systems
        return bool(self.documents())

    def document_cases(self) -> list[DocumentCase]:
        if self._document_cases is None:
            self._document_cases = build_document_cases(self.settings.models, self.documents())
        return self._document_cases

    def parametrize_documents(self, metafunc: pytest.Metafunc) -> None:
        """One case per (model, document); none selected: one placeholder that is deselected before the
        query phase (an empty parameter set would be a skipped test, or a collection error under
        ``empty_parameter_set_mark = fail_at_collect``)."""
        cases = self.document_cases()
        if not cases:
            metafunc.parametrize(DOCUMENT_PARAM, [pytest.param(NO_DOCUMENTS, marks=pytest.mark.skip(
                reason=self.no_documents_reason()))], ids=[NO_DOCUMENTS])
            return
        mark = getattr(pytest.mark, MARKER)
        metafunc.parametrize(DOCUMENT_PARAM, [pytest.param(c, id=c.id, marks=mark) for c in cases])

    def no_documents_reason(self) -> str:
        systems = ", ".join(self.settings.systems)
        return (f"no documents for the selected system(s) {systems}: the synthetic notes are ICD-10-CM "
                f"(--medcode-system {SYNTHETIC_SYSTEM}); --medcode-documents FILE codes your own")

    def check_named_documents(self) -> None:
        """The document benchmark named on the command line with no document for the selected systems: one
        line, exit 4, before anything is asked (rather than a run that collects nothing)."""
        if self.has_documents() or self.config.args_source != pytest.Config.ArgsSource.ARGS:
            return
        for arg in self.config.args:
            path = Path(self.config.invocation_params.dir, arg.split("::")[0])
            if path.suffix == ".py" and path.is_file() and _DOCUMENT_TEST.search(_read(path)):
                raise pytest.UsageError(f"{arg}: {self.no_documents_reason()}")

    def drop_unasked(self, items: list[pytest.Item]) -> None:
        """Deselect the document benchmark's placeholder when no selected system has documents; under
        pytest-split (which deselects after this hook, plugin/split.py), note the whole selection."""
        if split.group_of(self.config) is not None:
            self._selection = [c.id for c in _cases_of(items)]
        if self._document_cases is None or self._document_cases:  # no placeholder: no pass over 75k items
            return
        dropped = [i for i in items if _param(i, DOCUMENT_PARAM) is NO_DOCUMENTS]
        if dropped:
            self.config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if _param(i, DOCUMENT_PARAM) is not NO_DOCUMENTS]

    def query_phase(self, items: list[pytest.Item]) -> None:
        """Answer every selected case of a cached coder before the tests run (see phase.py).

        Called once the collection is final (``pytest_collection_finish``): the cases that -k, -m,
        --deselect, --lf or any other plugin deselected are never asked, and neither is anything when
        the tests will not run (--collect-only). Answers stream into the response store as they arrive;
        the tests then read them. Coders that are not cached answer in the test.
        """
        if self.config.option.collectonly:
            return
        self.note_shard(items)
        cases = [c for c in _cases_of(items) if self.coders[c.model].cacheable]
        if self.settings.estimate:  # count and price every selected case; ask nothing, run nothing
            self.estimate(cases)
            self.config.hook.pytest_deselected(items=list(items))
            items[:] = []
            return
        if not cases:
            return
        if self.settings.preflight and not xdist.is_distributed(self.config):
            self.preflight(cases)  # the selected cases only: -k and --lf leave the rest unasked
        unique: dict[str, Case | DocumentCase] = {}
        for case in cases:  # one request at a time: only the keys are kept
            key = self._keys[case] = self.key_for(case.model, self.request_for(case))
            unique.setdefault(key, case)
        try:
            self._unkept.update(self.phase().run(list(unique), lambda key: self.call_for(unique[key])))
            if not xdist.is_distributed(self.config):  # one process: read every answer in one pass
                self._answers = self.phase().outcomes(list(unique))  # (xdist workers read each as it runs)
        except (CacheError, BatchRejected) as exc:
            self.stop(str(exc))
            return
        self.query_progress = self.phase().progress
        release_free_memory()

    def note_shard(self, items: list[pytest.Item]) -> None:
        """pytest-split's group, once it has deselected the rest: this shard's record (summary.json's
        ``shard``), left in the run's state folder for an xdist controller, which collects nothing."""
        group = split.group_of(self.config)
        if group is None or self._selection is None:
            return
        self.shard = shard_record(*group, self._selection, [c.id for c in _cases_of(items)])
        if xdist.is_worker(self.config):
            split.write_shard(self.cache_paths()[1], self.shard)

    def estimate(self, cases: Sequence[Case | DocumentCase]) -> None:
        """--medcode-estimate: calls, tokens and cost of the selected cases, without a call (asking/estimate.py)."""
        keyed: dict[str, tuple[str, Question]] = {}
        for case in cases:
            question = self.request_for(case)
            keyed.setdefault(self.key_for(case.model, question), (case.model, question))
        try:
            cached = self.phase().outcomes(list(keyed))
        except CacheError as exc:
            raise pytest.UsageError(str(exc)) from None
        counts = {m: sum(1 for c in cases if c.model == m) for m in self.settings.models}
        batched = [m for m, c in self.coders.items() if self.settings.batch and batch_route(c) is not None]
        self.estimate_lines = estimate_lines(keyed, cached, counts, self.prices, TokenCounter(),
                                             self.settings.max_tokens, batched)

    def stop(self, reason: str) -> None:
        """The cache failed: no more calls. One line and exit 4; under xdist a worker cannot end the run
        from collection, so its cases without an answer are skipped and carry the reason to the controller."""
        self.stopped = reason
        if not xdist.is_worker(self.config):
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

    def interrupted_path(self) -> Path:
        """Where the xdist controller, interrupted, tells its workers to stop (plugin/signals.py)."""
        return self.cache_paths()[1] / "interrupted"

    def phase_progress(self) -> Progress | None:
        """This process's query phase so far (None before it starts)."""
        return self._phase.progress if self._phase is not None else None

    def phase(self) -> QueryPhase:
        """The query phase and its response store (CacheError when the store cannot be opened)."""
        if self._phase is None:
            path, state = self.cache_paths()
            writer = self.progress_writer()
            try:
                store = ResponseStore(path, notify=writer.notice if writer is not None else None)
            except (OSError, sqlite3.Error) as exc:
                raise CacheError(f"--medcode-cache {path}: cannot open the response cache ({exc})") from None
            self._phase = QueryPhase(store, self.engine, state, self.started, self.settings.retry_errors, writer)
            routes = {m: r for m, c in self.coders.items() if self.settings.batch and (r := batch_route(c))}
            if routes:
                self._phase.batch = BatchRunner(store, routes, self._phase.owner,
                                                writer.notice if writer is not None else None)
        return self._phase

    def response_store(self) -> ResponseStore | None:
        """The run's response cache for what is kept beside the answers (similarity scores): the query phase's
        store where this process has one, else the file opened here (an xdist controller). None without
        ``--medcode-cache`` or when the file cannot be opened (the caller then keeps nothing)."""
        if self.settings.cache is None:
            return None
        if self._phase is not None:
            return self._phase.store
        if self._own_store is None:
            try:
                self._own_store = ResponseStore(self.cache_paths()[0])
            except (CacheError, OSError, sqlite3.Error) as exc:
                warnings.warn(f"pytest-medcode: {exc}; similarity scores are not kept this run", stacklevel=2)
                return None
        return self._own_store

    def announce_batch(self) -> None:
        """--medcode-batch: the models that have no batch API stream as usual; one line says which."""
        if not self.settings.batch or not self.reporting:
            return
        streamed = [m for m, c in self.coders.items() if batch_route(c) is None]
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if streamed and tr is not None:
            tr.write_line(f"medcode: --medcode-batch: {', '.join(streamed)} "
                          f"{'has' if len(streamed) == 1 else 'have'} no batch API and "
                          f"{'streams' if len(streamed) == 1 else 'stream'} as usual")

    def progress_writer(self) -> ProgressLine | None:
        """Where the phase's progress line goes: the terminal of a process that has one, unless -q."""
        if not self.reporting or self.config.get_verbosity() < 0:
            return None
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return None
        return ProgressLine(tr)

    # -- running ----------------------------------------------------------------------------
    def request_for(self, case: Case | DocumentCase) -> Question:
        """What the case's coder is asked: the case stays here, so the reference code never reaches a coder."""
        system = self.system(case.system)
        if isinstance(case, DocumentCase):  # the text and the document prompt; never the gold set
            messages = document_messages(system.prompt_name, case.text, system.example)
            return Question(
                system=case.system,
                description=case.text,
                messages=tuple((m["role"], m["content"]) for m in messages),
                temperature=self.settings.temperature,
                max_tokens=max(self.settings.max_tokens, DOCUMENT_MAX_TOKENS),
                task="document",
            )
        messages = self.template.messages(system.prompt_name, case.asked_description, system.example)
        return Question(
            system=case.system,
            description=case.asked_description,
            messages=tuple((m["role"], m["content"]) for m in messages),
            temperature=self.settings.temperature if case.temperature is None else case.temperature,
            max_tokens=self.settings.max_tokens,
            repeat=case.repeat or 0,
        )

    def call_for(self, case: Case | DocumentCase) -> Call:
        return Call(case.model, self.request_for(case))

    def key_for(self, model: str, question: Question) -> str:
        """Response-cache key: the model's coder identity and the prompt and generation parameters.

        Exactly the fields the key has always had, so the caches of earlier runs stay valid."""
        fields = {name: getattr(question, name) for name in _KEYED}
        return request_key({**self.coders[model].identity(), **fields})

    def engine(self) -> QueryEngine:
        if self._engine is None:
            s = self.settings
            self._engine = QueryEngine(self.coders, s.concurrency, s.attempts, s.timeout, s.rpm, s.circuit_breaker,
                                       s.max_wait)
            if s.max_cost:  # the spend is counted where the calls are made, shared through the state folder
                counter = TokenCounter()
                budget = Budget(self.prices, dict(s.max_cost), lambda m, q: counter.count(m, q.chat()))
                budget.load(self.cache_paths()[1] / "budget.json")
                self._engine.budget = budget
        return self._engine

    def ask(self, case: Case | DocumentCase) -> dict[str, Any]:
        outcome: Outcome | None
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
        if isinstance(case, DocumentCase):
            return build_document_record(case, self.system(case.system), outcome)
        return build_record(case, self.system(case.system), outcome, self.settings.profile)

    def _skip_stopped(self) -> None:
        """A case the stopped phase never asked: the run ends with the reason (exit 4), the case is not scored."""
        if self.reporting:
            pytest.exit(self.stopped or "", returncode=pytest.ExitCode.USAGE_ERROR)
        raise CaseNotAsked(self.stopped or "")

    # -- the end ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the engine and the coders (local:MODEL stops its server), close the cache; the reporting
        process also removes this run's lock, progress and stop files."""
        if self._engine is not None:
            self._engine.close()
        for coder in self.coders.values():  # local:MODEL stops its server here
            coder.close()
        if self._phase is not None:
            self._phase.store.close()
        if self._own_store is not None:
            self._own_store.close()
        if self.reporting and (self._phase is not None or xdist.is_distributed(self.config)):
            self.remove_state()

    def remove_state(self) -> None:
        """This run's lock, progress and stop files (the reporting process's, at the end or on a hard stop)."""
        shutil.rmtree(self.cache_paths()[1], ignore_errors=True)
        for stop in stop_paths(self.cache_paths()[1]):
            stop.unlink(missing_ok=True)


def _confidence_rule(settings: Settings) -> str:
    """The option that asks for a confidence, as the user wrote it."""
    from pytest_medcode.results.rules import coverage_target

    gate = settings.gate
    coverage = [t for t in gate.thresholds if coverage_target(t.metric) is not None]
    if coverage:
        return f"--medcode-fail-under {coverage[0].text}"
    drops = [d for d in gate.max_drops if coverage_target(d.metric) is not None]
    if drops:
        return f"--medcode-max-drop {drops[0].text}"
    return "--medcode-threshold-from-baseline" if gate.threshold_from_baseline else "--medcode-threshold"


class CaseNotAsked(Exception):
    """A worker's case the stopped query phase never asked; the fixture skips it and tells the controller."""


def release_free_memory() -> None:
    """Hand memory that was freed back to the OS (glibc keeps it otherwise): the prompts built to key every
    case are gone after the query phase, and with -n each worker would go on holding their pages."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _param(item: pytest.Item, name: str) -> Any:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get(name)


def _cases_of(items: list[pytest.Item]) -> list[Case | DocumentCase]:
    out: list[Case | DocumentCase] = []
    for item in items:
        for param in (CASE_PARAM, DOCUMENT_PARAM):
            case = _param(item, param)
            if isinstance(case, (Case, DocumentCase)):
                out.append(case)
    return out


#: A test that takes document cases, as a benchmark file names it.
_DOCUMENT_TEST = re.compile(rf"def \w+\([^)]*\b{DOCUMENT_PARAM}\b")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
