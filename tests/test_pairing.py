"""Pairing a run with its baseline (results/pairing.py), as the gate uses it: cases pair across a model swap
and by the repeat columns, failed calls stay out of the pairs, and what cannot be paired is said."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gate_helpers import case, lookup_run_once, only, spoil
from pytest_medcode.reports.verdict import check_dict, check_reason, verdict_reason, verdict_warnings
from pytest_medcode.results.gate import evaluate
from pytest_medcode.results.rules import parse_thresholds
from pytest_medcode.runs.folder import Run


@pytest.fixture(scope="module")
def lookup_run(lookup_run_folder: Callable[..., Path]) -> Run:
    return lookup_run_once(lookup_run_folder)


def test_cases_pair_across_a_model_swap_and_unpaired_cases_are_reported(lookup_run: Run) -> None:
    base = lookup_run.records[:300]
    new = [{**r, "model": "gpt-4o"} for r in lookup_run.records[100:400]]
    verdict = evaluate(new, base)
    assert verdict.passed
    assert only(verdict, "regression", "exact_match").n == 200
    notes = " | ".join(verdict_warnings(verdict))
    assert "baseline model lookup paired with gpt-4o" in notes
    assert "100 case(s) of this run have no baseline partner" in notes
    assert "100 baseline case(s) are not in this run" in notes


def test_no_common_cases_or_no_cases_fail(lookup_run: Run) -> None:
    base = [{**r, "model": "a"} for r in lookup_run.records[:10]] + [{**r, "model": "b"} for r in
                                                                        lookup_run.records[:10]]
    verdict = evaluate(lookup_run.records[10:20], base)
    assert not verdict.passed and "no case of this run is in the baseline" in verdict_reason(verdict)
    empty = evaluate([], None)
    assert not empty.passed and "no benchmark cases ran" in verdict_reason(empty)
    dupes = evaluate(lookup_run.records[:5], lookup_run.records[:5] * 2)
    assert not dupes.passed and "two cases with model=lookup" in verdict_reason(dupes)


def test_repeat_columns_join_the_pairing_key(lookup_run: Run) -> None:
    base = [{**r, "repeat": k} for k in (0, 1) for r in lookup_run.records[:50]]
    new = [spoil(r) if r["repeat"] == 1 else r for r in base]
    check = only(evaluate(new, base), "regression", "exact_match")
    assert check.n == 100 and check.details["lost"] == 50


def test_pairing_problems_and_pooled_scopes_are_reported() -> None:
    base = [case(i, exact_match=True) for i in range(10)]
    dupes = evaluate(base, base + base[:1], thresholds=parse_thresholds("icd9cm:valid=0.5", "under"))
    (pairing,) = [c for c in dupes.checks if c.kind == "regression"]
    assert (pairing.metric, pairing.scope, pairing.passed, dupes.passed) == ("pairing", "run", False, False)
    assert check_reason(pairing).startswith("the baseline run has two cases with model=m, system=icd10cm, code=C000")
    assert verdict_warnings(dupes) == ("threshold icd9cm:valid=0.5 matched no cases in this run",)
    elsewhere = evaluate(base, [{**r, "model": "a"} for r in base] + [{**r, "model": "b"} for r in base])
    (check,) = [c for c in elsewhere.checks if c.kind == "regression"]
    assert check_dict(check) | {"details": None} == {
        "kind": "regression", "metric": "pairing", "scope": "run", "passed": False,
        "reason": "no case of this run is in the baseline (paired by model, system, code): wrong baseline, or other "
                  "models, systems or codes",
        "observed": None, "limit": None, "n": 0, "p_value": None, "baseline": None, "delta": None, "ci": None,
        "warnings": [], "details": None}
    # Two systems pool into "all systems"; a system the baseline lacks is said, not checked.
    icd9 = [{**case(i, exact_match=True), "system": "icd9cm"} for i in range(10)]
    extra = [{**case(i, exact_match=True), "system": "icd9cm-proc"} for i in range(3)]
    verdict = evaluate(base + icd9 + extra, base + icd9)
    scopes = [c.scope for c in verdict.checks if c.kind == "regression"]
    assert scopes == ["m / icd10cm", "m / icd9cm", "m / all systems"]
    assert only(verdict, "regression", "exact_match", "all systems").n == 20
    assert verdict_warnings(verdict)[-1] == "m / icd9cm-proc: not in the baseline, so not checked for regressions"
    # Variants pool into "all cases"; temperatures show in the scope.
    swept = [{**case(i, exact_match=True), "variant": v, "temperature": t} for i in range(4)
             for v, t in (("exact", 0.2), ("typo", 0.6))]
    verdict = evaluate(swept, swept)
    assert {c.scope for c in verdict.checks if c.kind == "regression"} == {
        "m / icd10cm [exact] T=0.2", "m / icd10cm [typo] T=0.6", "m / all cases"}


def test_failed_calls_on_either_side_are_left_out_of_the_pairs() -> None:
    base = [{**case(0), "outcome": "error"}] + [case(i, exact_match=True) for i in range(1, 10)]
    new = [case(i, exact_match=True) for i in range(9)] + [{**case(9), "outcome": "error"}]
    check = only(evaluate(new, base, max_error_rate=0.5), "regression", "exact_match")
    assert check.n == 8
