"""The document benchmark: synthetic notes, set scoring, the lookup coder on texts, real pytest runs with
lookup and with the scripted OpenAI-compatible server, the gate on document cases, and bad documents files."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import cases_of, summary_of
from pytest_medcode.asking.coders.lookup import find_codes, index_for
from pytest_medcode.codesystems import load_system
from pytest_medcode.dataset.document_cases import SYNTHETIC_HEADER, synthetic_documents
from pytest_medcode.reports.verdict import verdict_reason, verdict_warnings
from pytest_medcode.results.document_summary import per_code_f1, pooled
from pytest_medcode.results.gate import evaluate
from pytest_medcode.results.rules import parse_max_drops, parse_thresholds
from pytest_medcode.results.stats import bootstrap_ratio
from pytest_medcode.runs.rescore import rescore_run
from pytest_medcode.scoring.code_sets import prf, score_document
from pytest_medcode.testing.server import ScriptedServer

BENCHMARK = "def test_document_coding(medcode_document, medcode):\n    medcode.check_document(medcode_document)\n"
CODE_QUERY = "def test_code_query(medcode_case, medcode):\n    medcode.check(medcode_case)\n"
FAST = ("-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-no-cache", "--medcode-report-dir", "reports")


@pytest.fixture(scope="module")
def icd10() -> Any:
    return load_system("icd10cm")


# -- synthetic notes ----------------------------------------------------------------------------------


def test_synthetic_notes_are_deterministic_labelled_and_valid(icd10) -> None:
    docs = synthetic_documents(icd10, 40, seed=3)
    assert docs == synthetic_documents(icd10, 40, seed=3)
    assert docs != synthetic_documents(icd10, 40, seed=4)
    assert [d.id for d in docs] == [f"synthetic-{i:04d}" for i in range(1, 41)]
    for doc in docs:
        assert doc.synthetic and doc.text.startswith(SYNTHETIC_HEADER + "\n")
        assert 1 <= len(doc.codes) <= 6
        assert all(icd10.lookup(c) is not None and icd10.lookup(c).billable for c in doc.codes)
    assert len({c for d in docs for c in d.codes}) < sum(len(d.codes) for d in docs)  # codes recur


_NEGATED = re.compile(r"(?:^|(?<=\. ))(?:No history of |Denies |Negative for |No evidence of )(.+?)\.(?= |$)")


def test_negated_conditions_are_in_the_text_but_not_in_the_gold_set(icd10) -> None:
    by_description = {d.lower(): c for c, d in icd10.billable_codes()}
    negated = 0
    for doc in synthetic_documents(icd10, 60, seed=0):
        body = doc.text.splitlines()[1]
        for match in _NEGATED.finditer(body):
            code = by_description.get(match.group(1).lower())
            if code is not None:
                negated += 1
                assert code not in doc.codes, (code, doc.text)
    assert negated >= 10


def test_lookup_finds_several_codes_and_skips_negated_ones(icd10) -> None:
    index = index_for(icd10)
    text = ("Vital signs stable. Assessment: type 2 diabetes mellitus without complications. "
            "No history of essential (primary) hypertension. Patient seen today for acute bronchitis, unspecified. "
            "Follow-up in two weeks.")
    assert find_codes(index, text) == ["E11.9", "J20.9"]


# -- per-document metrics by hand ---------------------------------------------------------------------


def test_precision_recall_f1_by_hand() -> None:
    assert prf({"E11.9", "I10"}, {"E11.9", "E11.65"}) == (0.5, 0.5, 0.5)
    assert prf({"E11.9", "I10"}, set()) == (0.0, 0.0, 0.0)
    assert prf(set(), set()) == (1.0, 1.0, 1.0)
    assert prf({"A"}, {"A", "B", "C"}) == pytest.approx((1 / 3, 1.0, 0.5))


def test_score_document_counts_invalid_fabricated_and_category_credit(icd10) -> None:
    # E11.65 is a near miss (same category as E11.9); E11 exists but is not billable; Q99.99 is invented.
    fields = score_document(icd10, ("E11.9", "I10"), "Codes:\nE11.65\nI10\nE11\nq99.99")
    assert fields["predicted_codes"] == ["E11.65", "I10", "E11", "Q99.99"]
    assert (fields["true_positives"], fields["false_positives"], fields["false_negatives"]) == (1, 3, 1)
    assert fields["precision"] == 0.25 and fields["recall"] == 0.5 and fields["f1"] == pytest.approx(1 / 3)
    assert fields["category_f1"] == pytest.approx(2 * 2 / (2 + 3))  # {E11, I10} vs {E11, I10, Q99}
    assert fields["invalid_codes"] == ["E11", "Q99.99"] and fields["fabricated_codes"] == ["Q99.99"]
    assert fields["set_match"] is False
    assert score_document(icd10, ("I10", "E11.9"), "E11.9, I10 and I10 again")["set_match"] is True


def _record(gold: list[str], predicted: list[str], **extra: Any) -> dict[str, Any]:
    tp = len(set(gold) & set(predicted))
    return {"kind": "document", "model": "m", "system": "icd10cm", "gold_codes": gold, "predicted_codes": predicted,
            "n_codes": len(predicted), "true_positives": tp, "false_positives": len(predicted) - tp,
            "false_negatives": len(gold) - tp, "n_invalid": 0, "n_fabricated": 0, "outcome": "incorrect", **extra}


def test_micro_pools_codes_and_per_code_f1_by_hand() -> None:
    records = [_record(["A", "B"], ["A"]), _record(["A", "C", "D"], ["A", "C", "D", "E"]),
               _record(["B"], [], outcome="error")]  # a failed call is left out
    micro = pooled(records, "micro_f1", seed=0)
    assert micro.value == pytest.approx(2 * 4 / (2 * 4 + 1 + 1)) and micro.n == 2
    assert pooled(records, "micro_precision").value == pytest.approx(4 / 5)
    assert pooled(records, "micro_recall").value == pytest.approx(4 / 5)
    codes = {c["code"]: c for c in per_code_f1(records)}
    assert codes["A"] == {"code": "A", "support": 2, "predicted": 2, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert codes["B"]["f1"] == 0.0 and codes["B"]["support"] == 1


def test_bootstrap_ratio_interval_holds_the_value_and_is_seeded() -> None:
    num, den = [2, 0, 4, 6, 1] * 10, [3, 2, 4, 8, 1] * 10
    est = bootstrap_ratio(num, den, seed=1)
    assert est.value == pytest.approx(sum(num) / sum(den))
    assert est.low < est.value < est.high
    assert est == bootstrap_ratio(num, den, seed=1)
    assert bootstrap_ratio([], []).value is None


# -- real pytest sessions -----------------------------------------------------------------------------


def test_lookup_on_synthetic_notes_summary_matches_its_cases(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK)
    result = pytester.runpytest(*FAST, "--medcode-document-sample", "12", "--medcode-seed", "5")
    cases = cases_of(pytester)
    assert len(cases) == 12 and {c["kind"] for c in cases} == {"document"}
    assert all(c["synthetic"] and c["code"] is None for c in cases)
    wrong = [c for c in cases if not c["set_match"]]
    result.assert_outcomes(passed=12 - len(wrong), failed=len(wrong))
    row = summary_of(pytester)["documents"]["results"][0]
    tp = sum(c["true_positives"] for c in cases)
    fp = sum(c["false_positives"] for c in cases)
    fn = sum(c["false_negatives"] for c in cases)
    assert row["micro_f1"]["value"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert row["macro_f1"]["value"] == pytest.approx(sum(c["f1"] for c in cases) / 12)
    assert row["set_match"]["value"] == pytest.approx((12 - len(wrong)) / 12)
    assert row["micro_f1"]["low"] <= row["micro_f1"]["value"] <= row["micro_f1"]["high"]
    assert summary_of(pytester)["documents"]["synthetic"] is True
    report = (pytester.path / "reports" / "latest" / "report.md").read_text()
    assert "## Document coding" in report and "SYNTHETIC" in report
    assert 'id="documents"' in (pytester.path / "reports" / "latest" / "report.html").read_text()
    result.stdout.fnmatch_lines(["Document coding (12 cases*", "SYNTHETIC documents*", "lookup / icd10cm *"])
    # medcode rescore reads the same folder: document cases keep their scores and their own section
    again = rescore_run(pytester.path / "reports" / "latest", "paper", similarity=False)
    assert again.summary["documents"]["results"] == summary_of(pytester)["documents"]["results"]
    assert again.summary["results"] == []


def test_both_benchmarks_in_one_run_keep_their_own_numbers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK, test_code_query=CODE_QUERY)
    result = pytester.runpytest(*FAST, "--medcode-document-sample", "3", "--medcode-system", "icd10cm",
                                "--medcode-sample", "5")
    summary = summary_of(pytester)
    assert summary["n_cases"] == 8
    assert [r["n"] for r in summary["results"]] == [5]  # the code-query table counts its own cases only
    assert summary["documents"]["n_documents"] == 3
    assert result.ret in (0, 1)


DOCS = [
    {"id": "n1", "system": "icd10cm", "codes": ["E11.9", "I10"],
     "text": "Assessment: type 2 diabetes. Hypertension, on lisinopril."},
    {"id": "n2", "system": "icd10cm", "codes": ["J20.9", "R05.9"], "text": "Acute bronchitis with cough."},
    {"id": "n3", "system": "icd10cm", "codes": ["N39.0"], "text": "Urinary tract infection."},
]
#: The scripted model: right on n1, half right on n2, wrong with an invented code on n3.
ANSWERS = {"n1": "Codes:\nI10\nE11.9", "n2": "Codes:\nJ20.9", "n3": "Codes:\nN30.00\nZ99.999"}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scripted_model_partial_and_wrong_sets(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK)
    docs = write_jsonl(pytester.path / "notes.jsonl", DOCS)
    seen: list[str] = []

    def respond(request: Any) -> str:
        seen.append(request.last_user_message)
        return next(ANSWERS[d["id"]] for d in DOCS if d["text"] in request.last_user_message)

    with ScriptedServer() as server:
        server.responder = respond
        result = pytester.runpytest(*FAST, "--model", "openai/tiny", "--medcode-api-base", server.base_url,
                                    "--medcode-documents", str(docs), "--medcode-no-preflight")
    result.assert_outcomes(passed=1, failed=2)
    assert len(seen) == 3
    assert not any(code in message for message in seen for d in DOCS for code in d["codes"])  # no gold set
    result.stdout.fnmatch_lines(["*coded document n2 as {J20.9}, expected {J20.9, R05.9}*", "*missed:*R05.9*"])
    row = summary_of(pytester)["documents"]["results"][0]
    # TP 2+1+0 = 3, FP 0+0+2 = 2, FN 0+1+1 = 2
    assert row["micro_precision"]["value"] == pytest.approx(3 / 5)
    assert row["micro_recall"]["value"] == pytest.approx(3 / 5)
    assert row["micro_f1"]["value"] == pytest.approx(6 / 10)
    assert row["macro_f1"]["value"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert row["set_match"]["value"] == pytest.approx(1 / 3)
    assert row["invalid_code_rate"]["value"] == pytest.approx(1 / 5)  # Z99.999 of 5 predicted codes
    assert row["category_f1"]["value"] == pytest.approx((1 + 2 / 3 + 0) / 3)  # N30 vs N39: another category
    assert row["synthetic"] is False
    assert summary_of(pytester)["documents"]["synthetic"] is False


PRODUCT = """
import json

def code(question):
    with open("asked.jsonl", "a") as f:
        f.write(json.dumps({"task": question.task, "description": question.description,
                            "fields": sorted(vars(question)), "messages": question.messages}) + "\\n")
    return "Codes: I10, E11.9"
"""


def test_a_python_product_gets_the_text_and_never_the_gold_set(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK, product=PRODUCT)
    pytester.syspathinsert()
    docs = write_jsonl(pytester.path / "notes.jsonl", DOCS)
    result = pytester.runpytest(*FAST, "--model", "python:product:code", "--medcode-documents", str(docs),
                                "--junitxml", "junit.xml")
    result.assert_outcomes(passed=1, failed=2)
    junit = (pytester.path / "junit.xml").read_text()
    assert '<property name="expected_codes" value="J20.9 R05.9" />' in junit
    assert '<property name="predicted_codes" value="I10 E11.9" />' in junit
    asked = [json.loads(line) for line in (pytester.path / "asked.jsonl").read_text().splitlines()]
    assert sorted(a["description"] for a in asked) == sorted(d["text"] for d in DOCS)
    assert {a["task"] for a in asked} == {"document"}
    assert not any(code in json.dumps(a) for a in asked for d in DOCS for code in d["codes"])


# -- the gate on document cases -----------------------------------------------------------------------


def test_gate_threshold_on_micro_f1_in_a_real_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK)
    args = (*FAST, "--medcode-document-sample", "12")
    passed = pytester.runpytest(*args, "--medcode-fail-under", "micro_f1=0.5", "-v")
    assert passed.ret == 0  # gate mode: a wrong set is a mismatch, not a failure; the gate decides
    wrong = sum(1 for c in cases_of(pytester) if not c["set_match"])
    assert 0 < wrong == passed.stdout.str().count(" MISMATCH")
    assert f"{12 - wrong} passed, {wrong} mismatched" in passed.stdout.str()
    check = next(c for c in summary_of(pytester)["gate"]["checks"] if c["metric"] == "micro_f1")
    assert check["scope"] == "lookup / icd10cm documents" and check["ci"][0] <= check["observed"] <= check["ci"][1]
    failed = pytester.runpytest(*args, "--medcode-fail-under", "micro_f1=0.99")
    assert failed.ret == 1
    assert "micro f1" in failed.stdout.str() and "below the limit 99.0%" in failed.stdout.str()


def _doc_records(pytester: pytest.Pytester, n: int) -> list[dict[str, Any]]:
    pytester.makepyfile(test_document_coding=BENCHMARK)
    pytester.runpytest(*FAST, "--medcode-document-sample", str(n))
    return cases_of(pytester)


def _worse(record: dict[str, Any]) -> dict[str, Any]:
    """The record as if the coder had answered nothing."""
    gold = len(record["gold_codes"])
    return {**record, "predicted_codes": [], "n_codes": 0, "true_positives": 0, "false_positives": 0,
            "false_negatives": gold, "precision": 0.0, "recall": 0.0, "f1": 0.0, "set_match": False,
            "exact_match": False, "outcome": "no_code"}


def test_gate_baseline_paired_tests_on_documents(pytester: pytest.Pytester) -> None:
    base = _doc_records(pytester, 60)
    drops = parse_max_drops("f1=2pp,set_match=2pp")
    same = evaluate(base, base, max_drops=drops)
    assert same.passed, verdict_reason(same)
    assert {c.details.get("test") for c in same.checks if c.kind == "regression"} == {"paired_bootstrap",
                                                                                      "mcnemar_exact"}
    worse = [_worse(r) if i % 3 == 0 else r for i, r in enumerate(base)]
    verdict = evaluate(worse, base, max_drops=drops)
    assert not verdict.passed
    f1 = next(c for c in verdict.checks if c.metric == "f1")
    assert not f1.passed and f1.scope == "lookup / icd10cm documents" and f1.ci[1] < 0
    default = evaluate(worse, base)  # no margin given: per-document F1 at 2pp
    assert [c.metric for c in default.checks if c.kind == "regression"] == ["f1"] and not default.passed
    with pytest.raises(ValueError, match="pooled over documents"):
        parse_max_drops("micro_f1=2pp")
    th = evaluate(base, thresholds=parse_thresholds("micro_f1=0.3,exact_match=0.5", "under"))
    assert th.passed and any("exact_match=0.5 matched no cases" in w for w in verdict_warnings(th))


# -- bad documents files ------------------------------------------------------------------------------


def _big() -> str:
    return "x" * (10 * 1024 * 1024)


BAD = {
    "code-not-in-system": ("notes.jsonl", [DOCS[0], {**DOCS[1], "codes": ["J20.9", "Q99.999"]}],
                           "*notes.jsonl: line 2: code 'Q99.999' of document 'n2' is not in ICD-10-CM*"),
    "empty-text": ("notes.jsonl", [DOCS[0], {**DOCS[1], "text": "  "}],
                   "*notes.jsonl: line 2: document 'n2' has an empty text"),
    "missing-codes-column": ("notes.csv", "id,text,system\nn1,Some text,icd10cm\n",
                             "*notes.csv: missing column(s) codes*"),
    "ten-megabyte-document": ("notes.jsonl", [DOCS[0], DOCS[1], {**DOCS[2], "text": None}],
                              "*notes.jsonl: line 3: document 'n3' is 10,485,760 characters long (at most 100,000)"),
    "unreadable-parquet": ("notes.parquet", b"PAR1 this is not parquet",
                           "*--medcode-documents *notes.parquet: not a readable Parquet file*"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_documents_file_is_one_line_exit_4(pytester: pytest.Pytester, name: str) -> None:
    filename, content, error = BAD[name]
    pytester.makepyfile(test_document_coding=BENCHMARK)
    path = pytester.path / filename
    if name == "ten-megabyte-document":
        content = [*content[:2], {**content[2], "text": _big()}]
    if isinstance(content, list):
        write_jsonl(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = pytester.runpytest(*FAST, "--medcode-documents", str(path))
    assert result.ret == 4
    lines = [line for line in result.stderr.lines if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), lines
    assert fnmatch(lines[0], "ERROR: " + error), lines[0]
    assert not (pytester.path / "reports").exists()  # nothing ran, nothing half-written


def test_csv_and_parquet_documents_load_like_jsonl(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK)
    csv_path = pytester.path / "notes.csv"
    csv_path.write_text("id,text,codes,system\n" + "".join(
        f'{d["id"]},"{d["text"]}",{";".join(d["codes"])},{d["system"]}\n' for d in DOCS))
    pq.write_table(pa.Table.from_pylist(DOCS), pytester.path / "notes.parquet")
    for path in (csv_path, pytester.path / "notes.parquet"):
        result = pytester.runpytest(*FAST, "--medcode-documents", str(path))
        assert result.ret in (0, 1)
        assert sorted((c["document"], tuple(c["gold_codes"])) for c in cases_of(pytester)) == sorted(
            (d["id"], tuple(sorted(d["codes"]))) for d in DOCS)


# -- each task only when asked: documents of the selected systems, no call for a case that will not run ----

#: Documents of two systems: an ICD-9-CM run must ask for the ICD-9-CM ones only.
ICD9_DOCS = [
    {"id": "p1", "system": "icd9cm", "codes": ["250.00", "401.9"], "text": "Diabetes type II. Essential hypertension."},
    {"id": "p2", "system": "icd9cm", "codes": ["V58.61"], "text": "Long-term use of anticoagulants."},
]
ACME = "code,description\nA100,Acme widget check\nA200,Acme gadget review\nA300,Acme gizmo repair\n"


class Recorder:
    """The scripted model's answers, and every prompt it was asked (the server counts the requests)."""

    def __init__(self, code_answer: str = "E11.9") -> None:
        self.asked: list[str] = []
        self.code_answer = code_answer

    def __call__(self, request: Any) -> str:
        message = request.last_user_message
        self.asked.append(message)
        for doc in (*DOCS, *ICD9_DOCS):
            if doc["text"] in message:
                return "Codes:\nI10\nE11.9" if doc["system"] == "icd10cm" else "Codes:\n250.00\n401.9"
        return "Codes:\nI10" if SYNTHETIC_HEADER in message else self.code_answer


def scripted(server: ScriptedServer, *more: str) -> tuple[str, ...]:
    return ("--model", "openai/scripted", "--medcode-api-base", server.base_url, *more)


def document_prompts(asked: list[str]) -> list[str]:
    return [m for m in asked if SYNTHETIC_HEADER in m or any(d["text"] in m for d in (*DOCS, *ICD9_DOCS))]


@pytest.mark.parametrize("system", ["icd9cm", "acme"])
def test_a_system_without_documents_asks_for_no_document(pytester: pytest.Pytester, system: str) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK, test_code_query=CODE_QUERY)
    (pytester.path / "acme.csv").write_text(ACME)
    recorder = Recorder()
    with ScriptedServer(recorder) as server:
        result = pytester.runpytest(*FAST, *scripted(server, "--medcode-system", system, "--medcode-sample", "3",
                                                     "--medcode-codeset", f"acme={pytester.path / 'acme.csv'}"))
        requests = server.stats.total_requests
    result.assert_outcomes(failed=3, deselected=1)  # the document benchmark's placeholder, never asked
    assert requests == 3 and len(recorder.asked) == 3 and document_prompts(recorder.asked) == []
    summary = summary_of(pytester)
    assert summary["n_cases"] == 3 and [(r["system"], r["n"]) for r in summary["results"]] == [(system, 3)]
    assert not summary.get("documents") or not summary["documents"]["results"]
    assert [c.get("kind") for c in cases_of(pytester) if c.get("kind") == "document"] == []


def test_icd10cm_selected_runs_its_synthetic_notes_beside_the_codes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK, test_code_query=CODE_QUERY)
    recorder = Recorder()
    with ScriptedServer(recorder) as server:
        result = pytester.runpytest(*FAST, *scripted(server, "--medcode-system", "icd10cm,icd9cm", "--medcode-sample",
                                                     "2", "--medcode-document-sample", "3"))
        requests = server.stats.total_requests
    assert result.ret == 1 and requests == 2 * 2 + 3 and len(document_prompts(recorder.asked)) == 3
    assert sorted(c["system"] for c in cases_of(pytester) if c["kind"] == "document") == ["icd10cm"] * 3


def test_the_document_benchmark_named_without_documents_is_one_line_exit_4(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK, test_code_query=CODE_QUERY)
    with ScriptedServer(Recorder()) as server:
        result = pytester.runpytest(*FAST, *scripted(server, "--medcode-system", "icd9cm"),
                                    "test_document_coding.py::test_document_coding")
        requests = server.stats.total_requests
    assert result.ret == 4 and requests == 0
    lines = [line for line in result.stderr.lines if line.strip()]
    assert lines == ["ERROR: test_document_coding.py::test_document_coding: no documents for the selected system(s) "
                     "icd9cm: the synthetic notes are ICD-10-CM (--medcode-system icd10cm); --medcode-documents "
                     "FILE codes your own"]


def test_a_documents_file_is_asked_for_the_selected_systems_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK)
    docs = write_jsonl(pytester.path / "notes.jsonl", [*DOCS, *ICD9_DOCS])
    recorder = Recorder()
    with ScriptedServer(recorder) as server:
        result = pytester.runpytest(*FAST, *scripted(server, "--medcode-system", "icd9cm"),
                                    "--medcode-documents", str(docs))
        requests = server.stats.total_requests
    result.assert_outcomes(passed=1, failed=1)
    assert requests == 2 and sorted(c["document"] for c in cases_of(pytester)) == ["p1", "p2"]
    assert not any(d["text"] in m for m in recorder.asked for d in DOCS)


def test_a_documents_file_with_no_row_for_the_selected_systems_is_one_line_exit_4(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK, test_code_query=CODE_QUERY)
    docs = write_jsonl(pytester.path / "notes.jsonl", [*DOCS, {**DOCS[0], "id": "n4"}, ICD9_DOCS[0]])
    (pytester.path / "acme.csv").write_text(ACME)
    with ScriptedServer(Recorder()) as server:
        result = pytester.runpytest(*FAST, *scripted(server, "--medcode-system", "icd9cm-proc,acme"),
                                    "--medcode-codeset", f"acme={pytester.path / 'acme.csv'}",
                                    "--medcode-documents", str(docs))
        requests = server.stats.total_requests
    assert result.ret == 4 and requests == 0
    lines = [line for line in result.stderr.lines if line.strip()]
    assert lines == [f"ERROR: --medcode-documents {docs}: its documents are for icd10cm (4), icd9cm (1), none for "
                     "the selected system(s) icd9cm-proc, acme; add their system to --medcode-system, or give a file "
                     "for these"]


def test_the_first_run_codes_its_eight_notes(pytester: pytest.Pytester) -> None:
    """``make benchmark`` runs ``pytest benchmarks/ @benchmarks/first-run.args``: its systems include ICD-10-CM,
    so its 8 notes stay (collected here with lookup in place of the local models)."""
    root = Path(__file__).resolve().parents[1]
    lines = (root / "benchmarks" / "first-run.args").read_text().splitlines()
    models = [line for line in lines if line.startswith("--model")]
    assert models and "--medcode-system=icd10cm,icd9cm" in lines and "--medcode-document-sample=8" in lines
    (pytester.path / "first-run.args").write_text("\n".join([*(x for x in lines if x not in models),
                                                             "--model=lookup"]) + "\n")
    for name in ("test_code_query.py", "test_document_coding.py"):
        (pytester.path / name).write_text((root / "benchmarks" / name).read_text())
    result = pytester.runpytest(*FAST, "--collect-only", "-q", "@first-run.args")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert len([i for i in ids if "test_document_coding[lookup-doc-synthetic-" in i]) == 8
    assert len([i for i in ids if "test_code_query[" in i]) == 16


def _two_tasks(pytester: pytest.Pytester) -> tuple[str, ...]:
    """Four ICD-10-CM codes and three documents; the document benchmark carries a marker for -m."""
    pytester.makepyfile(test_document_coding="import pytest\n\n\n@pytest.mark.notes\n" + BENCHMARK,
                        test_code_query=CODE_QUERY)
    pytester.makeini("[pytest]\nmarkers =\n    notes: the document benchmark\n")
    codes = pytester.path / "codes.csv"
    codes.write_text("code\nE11.9\nI10\nJ45.909\nN39.0\n")
    docs = write_jsonl(pytester.path / "notes.jsonl", DOCS)
    return ("--medcode-no-similarity", "--medcode-no-cache", "--medcode-report-dir", "reports",
            "--medcode-system", "icd10cm", "--medcode-codes", str(codes), "--medcode-documents", str(docs))


@pytest.mark.parametrize("workers", ["0", "2"])
def test_deselected_cases_are_never_asked(pytester: pytest.Pytester, workers: str) -> None:
    """-k, -m, --deselect, --lf and --collect-only: the query phase asks only the cases that will run."""
    base = _two_tasks(pytester)
    recorder = Recorder()
    # Under -n the controller's preflight probe may pick a case the workers then deselect (README, Preflight).
    local = workers == "0"  # xdist's workers deselect: the controller's summary does not count them
    probe = () if local else ("--medcode-no-preflight",)
    with ScriptedServer(recorder) as server:
        def run(*more: str) -> tuple[pytest.RunResult, int, list[str]]:
            server.reset_stats()
            recorder.asked.clear()
            result = pytester.runpytest(*base, *scripted(server), *probe, "-n", workers, *more)
            return result, server.stats.total_requests, list(recorder.asked)

        full, requests, _ = run()
        full.assert_outcomes(passed=2, failed=5)  # E11.9 and n1 right
        assert requests == 7
        # Files named on the command line keep every case at collection; --lf deselects the passed ones after
        # every plain modifyitems hook has run.
        last_failed, requests, asked = run("--lf", "test_code_query.py", "test_document_coding.py")
        last_failed.assert_outcomes(failed=5, deselected=2 if local else 0)
        assert requests == 5 and not any(DOCS[0]["text"] in m for m in asked)
        assert not any("Type 2 diabetes mellitus without complications" in m for m in asked)
        keyword, requests, _ = run("-k", "I10 or n2")
        keyword.assert_outcomes(failed=2, deselected=5 if local else 0)
        assert requests == 2
        marked, requests, asked = run("-m", "not notes", "--deselect",
                                      "test_code_query.py::test_code_query[openai/scripted-icd10cm-I10]")
        marked.assert_outcomes(passed=1, failed=2, deselected=4 if local else 0)
        assert requests == 3 and document_prompts(asked) == []
        collected, requests, _ = run("--collect-only")
        assert collected.ret == 0 and requests == 0
