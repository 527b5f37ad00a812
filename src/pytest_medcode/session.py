"""The benchmark session: one object per pytest process, kept in ``config.stash``.

It owns the settings, the code systems, the coders and the query engine on every process that
runs cases, and the records and reports on the process that reports (the controller under xdist,
the only process otherwise). The plugin's hooks hand off to it in a line or two.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_medcode import __version__, distributed
from pytest_medcode.aggregate import summarize
from pytest_medcode.cases import Case, CodeList, build_cases, read_code_list, select_codes
from pytest_medcode.codesystems import SYSTEMS, CodeFileError, CodeSystem, load_system
from pytest_medcode.coders import CodeRequest, Coder, CoderUnavailable, resolve_coder
from pytest_medcode.options import Settings
from pytest_medcode.prompts import PromptTemplate, TemplateError, load_template
from pytest_medcode.querying import QueryEngine
from pytest_medcode.records import PROPERTY, build_record
from pytest_medcode.reports import files, terminal

CASE_PARAM = "medcode_case"


class MedcodeSession:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.reporting = not distributed.is_worker(config)
        self.started = time.time()
        self.run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.records: list[dict[str, Any]] = []
        self.run_dir: Path | None = None
        self.template: PromptTemplate
        self.coders: dict[str, Coder] = {}
        self._systems: dict[str, CodeSystem] = {}
        self._code_list: CodeList | None = None
        self._cases: list[Case] | None = None
        self._engine: QueryEngine | None = None

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
        self.coders = {m: resolve_coder(m, s) for m in s.models}
        for coder in self.coders.values():
            try:
                coder.check()
            except CoderUnavailable as exc:
                raise pytest.UsageError(str(exc)) from None

    # -- collection -----------------------------------------------------------------------
    def system(self, name: str) -> CodeSystem:
        if name not in self._systems:
            self._systems[name] = load_system(name, self.settings.codesets.get(name))
        return self._systems[name]

    def cases(self) -> list[Case]:
        if self._cases is None:
            s = self.settings
            try:
                per_system = {
                    name: select_codes(self.system(name), s.sample, s.seed, self._code_list) for name in s.systems
                }
            except CodeFileError as exc:
                raise pytest.UsageError(str(exc)) from None
            self._cases = build_cases(s.models, per_system)
        return self._cases

    def parametrize(self, metafunc: pytest.Metafunc) -> None:
        cases = self.cases()
        metafunc.parametrize(CASE_PARAM, cases, ids=[c.id for c in cases])

    def prefetch(self, items: list[pytest.Item]) -> None:
        """Start asking for every selected case now, so calls stream while tests run in order.

        Under xdist each worker runs only some of the items it collected, so it asks on demand.
        """
        if distributed.is_distributed(self.config):
            return
        requests = [self.request_for(c) for c in _cases_of(items)]
        if requests:
            self.engine().prefetch(requests)

    # -- running ----------------------------------------------------------------------------
    def request_for(self, case: Case) -> CodeRequest:
        system = self.system(case.system)
        messages = self.template.messages(system.prompt_name, case.description, system.example)
        return CodeRequest(
            case=case,
            messages=tuple((m["role"], m["content"]) for m in messages),
            temperature=self.settings.temperature,
            max_tokens=self.settings.max_tokens,
        )

    def engine(self) -> QueryEngine:
        if self._engine is None:
            s = self.settings
            self._engine = QueryEngine(self.coders, s.concurrency, s.attempts, s.timeout)
        return self._engine

    def ask(self, case: Case) -> dict[str, Any]:
        outcome = self.engine().submit(self.request_for(case)).result()
        return build_record(case, self.system(case.system), outcome)

    # -- reporting (controller) ---------------------------------------------------------------
    def add_report(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == PROPERTY:
                self.records.append(value)

    def ordered_records(self) -> list[dict[str, Any]]:
        """Records in case order, whatever order workers finished them in."""
        order = {c.id: i for i, c in enumerate(self.cases())}
        return sorted(self.records, key=lambda r: order.get(r["case_id"], len(order)))

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "schema_version": files.SUMMARY_SCHEMA_VERSION,
            "run_id": self.run_id,
            "created": dt.datetime.fromtimestamp(self.started, dt.timezone.utc).isoformat(),
            "duration_s": round(time.time() - self.started, 3),
            "plugin_version": __version__,
            "config": self.settings.to_dict(),
            "prompt_template": self.template.text,
            "code_systems": {n: self.system(n).version for n in self.settings.systems},
            "n_cases": len(records),
            "results": summarize(records, seed=self.settings.seed),
        }

    def finish(self) -> None:
        if self._engine is not None:
            self._engine.close()
        if not self.reporting or not self.records:
            return
        records = self.ordered_records()
        run_dir = self.settings.report_dir
        if not run_dir.is_absolute():
            run_dir = self.config.invocation_params.dir / run_dir
        self.run_dir = run_dir / self.run_id
        files.write_cases(records, self.run_dir / "cases.parquet")
        self.summary_data = self.summary(records)
        files.write_json(self.summary_data, self.run_dir / "summary.json")
        files.point_latest(self.run_dir)

    def display(self, tr: Any) -> None:
        if not self.reporting or self.run_dir is None:
            return
        tr.write_sep("=", "pytest-medcode")
        for line in terminal.render_table(self.summary_data["results"]):
            tr.write_line(line)
        tr.write_line("")
        tr.write_line("exact match: share of answered cases; 95% Wilson interval. errors: failed calls, not scored.")
        tr.write_line(f"run folder: {self.run_dir}")


def _cases_of(items: list[pytest.Item]) -> list[Case]:
    out = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and CASE_PARAM in callspec.params:
            out.append(callspec.params[CASE_PARAM])
    return out
