"""What the gate's tests share (test_gate, test_verdict, test_pairing): real records of the offline
``lookup`` coder, the one hand-made change :func:`spoil` (a wrong answer of the kind a model gives),
hand-built cases, and the look-up of one check in a verdict."""

from __future__ import annotations

__all__ = ["FAST", "LOOKUP_RIGHT", "LOOKUP_WRONG", "TEST_FILE", "case", "fail_call", "last_lines", "lookup_run_once",
           "only", "regression_of", "spoil"]

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import TEST_FILE
from pytest_medcode.codesystems import load_system
from pytest_medcode.results.gate import Check, Verdict, evaluate
from pytest_medcode.results.rules import parse_max_drops
from pytest_medcode.runs.folder import Run, load_run
from pytest_medcode.scoring.codes import code_metrics
from pytest_medcode.testing.responders import wrong_code

#: ICD-9-CM codes whose description an earlier code shares: ``lookup`` answers the earlier one.
LOOKUP_WRONG = ["755.39", "E958.8", "E958.9", "V36.01", "V61.22"]
LOOKUP_RIGHT = ["001.0", "001.1", "002.0", "003.0", "003.1", "004.0", "005.0", "008.00", "010.00", "011.00",
                "250.00", "401.9", "428.0", "486", "496"]
#: Options every run here shares: no pytest cache, and no METEOR/BERTScore pass (the gate needs neither).
FAST = ("-p", "no:cacheprovider", "--medcode-no-similarity")


def spoil(record: dict[str, Any]) -> dict[str, Any]:
    """The record as if the model had answered a wrong code of the same shape."""
    bad = wrong_code(record["code"])
    metrics = code_metrics(load_system(record["system"]), record["code"], bad)
    return {**record, **metrics, "predicted_code": bad, "codes": [bad], "raw_answer": f"Code: {bad}",
            "outcome": "incorrect"}


def fail_call(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "outcome": "error", "error": "APIError: 500", "raw_answer": None, "exact_match": None,
            "valid": None, "billable": None, "fabricated": None, "predicted_code": None}


def only(verdict: Verdict, kind: str, metric: str, scope_part: str = "") -> Check:
    found = [c for c in verdict.checks if c.kind == kind and c.metric == metric and scope_part in c.scope]
    assert len(found) == 1, [c.scope for c in verdict.checks]
    return found[0]


def lookup_run_once(lookup_run_folder: Callable[..., Path]) -> Run:
    """1,000 ICD-10-CM cases answered by the offline lookup coder (all exact), recorded once per session by
    conftest's ``lookup_run_folder``. perf/mutation.py records this run once and names its folder in
    ``MEDCODE_TEST_LOOKUP_RUN``, so no mutant's test run makes it again."""
    recorded = os.environ.get("MEDCODE_TEST_LOOKUP_RUN")
    if recorded:
        return load_run(Path(recorded))
    return load_run(lookup_run_folder("--medcode-system", "icd10cm", "--medcode-sample", "1000"))


def last_lines(text: str, n: int) -> list[str]:
    return [line for line in text.splitlines() if line.strip()][-n:]


def case(i: int, **metrics: Any) -> dict[str, Any]:
    """A scored ICD-10-CM case of model ``m``; ``metrics`` are the per-case values under test."""
    return {"model": "m", "system": "icd10cm", "code": f"C{i:03d}", "outcome": "correct", **metrics}


def regression_of(new: list[dict[str, Any]], base: list[dict[str, Any]], drops: str, **kw: Any) -> Check:
    metric = drops.split("=")[0]
    return only(evaluate(new, base, max_drops=parse_max_drops(drops), **kw), "regression", metric)
