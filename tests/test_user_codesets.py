"""A code system from the user's own table: options, validity, fabrication, closeness, reports, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from conftest import BENCHMARK
from helpers import cases_of, summary_of
from pytest_medcode.cli import main
from pytest_medcode.codesystems import CodeFileError, load_system
from pytest_medcode.codesystems.user import read
from pytest_medcode.scoring.hierarchy import closeness
from pytest_medcode.testing.responders import Request
from pytest_medcode.testing.server import ScriptedServer

FAST = ("-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-no-cache")

# A payer's local procedure codes: two families, three levels; the group rows are not billable.
TABLE = """code,description,parent,billable
100,Cardiology services,,0
110,Echocardiography,100,0
111,Transthoracic echocardiogram complete,110,1
112,Transesophageal echocardiogram,110,1
120,Cardiac catheterization,100,0
121,Left heart catheterization with angiography,120,1
200,Imaging services,,0
210,Chest radiograph two views,200,1
"""
# What the scripted model answers per description, and what that must score.
PLAN = {
    "Transthoracic echocardiogram complete": "111",  # right: closeness 1
    "Transesophageal echocardiogram": "111",  # sibling: common ancestor 110 (depth 2) of depth 3 → 2/3
    "Left heart catheterization with angiography": "112",  # cousin: common ancestor 100 → 1/3
    "Chest radiograph two views": "999",  # not in the table: fabricated, 0
}
EXPECTED = {"111": 1.0, "112": 2 / 3, "121": 1 / 3, "210": 0.0}


def test_the_table_and_closeness_by_the_parent_chain(tmp_path: Path) -> None:
    path = tmp_path / "local.csv"
    path.write_text(TABLE)
    system = load_system("local-proc", path)
    assert [c for c, _ in system.billable_codes()] == ["111", "112", "121", "210"]
    assert system.example == "111" and system.prompt_name == "local-proc"
    assert system.lookup("110").description == "Echocardiography" and not system.lookup("110").billable
    assert closeness(system, "111", "111") == 1.0
    assert closeness(system, "111", "112") == pytest.approx(2 / 3)
    assert closeness(system, "111", "121") == pytest.approx(1 / 3)
    assert closeness(system, "111", "210") == 0.0
    assert closeness(system, "111", "999") == 0.0
    assert closeness(system, "111", None) == 0.0


def test_closeness_by_common_prefix_without_parents(tmp_path: Path) -> None:
    path = tmp_path / "flat.tsv"
    path.write_text("code\tdescription\nAB-123\tone\nAB-129\ttwo\nXY-100\tthree\n")
    system = load_system("flat", path)
    assert closeness(system, "AB-123", "AB-129") == pytest.approx(5 / 6)
    assert closeness(system, "AB-123", "XY-100") == 0.0


def planned_run(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> tuple[pytest.RunResult, list[str]]:
    """The local table against a scripted model that answers as PLAN says; the run and the prompts it got."""
    (pytester.path / "local.csv").write_text(TABLE)
    prompts: list[str] = []

    def planned(request: Request) -> str:
        prompts.append(request.last_user_message)
        return f"Code: {PLAN[request.description or '']}"

    runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    with ScriptedServer(planned) as server:
        pytester.makepyfile(test_code_query=BENCHMARK)
        result = runner(*FAST, *args, "--model", "openai/payer-model", "--medcode-api-base", server.base_url,
                        "--medcode-codeset", "localproc:Acme Payer Procedure=local.csv", "--medcode-system",
                        "localproc")
    return result, prompts


def test_a_user_system_end_to_end(pytester: pytest.Pytester) -> None:
    result, prompts = planned_run(pytester)
    result.assert_outcomes(passed=1, failed=3)
    assert len(prompts) == 4
    assert all("most correct Acme Payer Procedure billing code" in p and p.endswith("Code: 111") for p in prompts)
    by_code = {r["code"]: r for r in cases_of(pytester)}
    assert set(by_code) == set(EXPECTED)  # only billable codes become cases
    for code, value in EXPECTED.items():
        assert by_code[code]["closeness"] == pytest.approx(value)
    assert by_code["210"]["fabricated"] and not by_code["210"]["valid"]
    assert by_code["121"]["valid"] and not by_code["121"]["fabricated"]
    row = summary_of(pytester)["results"][0]
    assert row["system"] == "localproc"
    assert row["closeness"]["value"] == pytest.approx(sum(EXPECTED.values()) / 4)
    assert row["fabricated"]["value"] == 0.25 and row["exact_match"]["value"] == 0.25
    assert row["top_codes"][0] == {**row["top_codes"][0], "code": "111", "is_example": True}
    result.stdout.fnmatch_lines(["*openai/payer-model*localproc*", "Hierarchy closeness, mean (95% CI)*0.500*"])
    folder = (pytester.path / "reports" / "latest").resolve()
    assert "localproc" in (folder / "report.md").read_text()
    assert "Hierarchy closeness" in (folder / "report.html").read_text()
    # The command line reads the run as well: report, compare (with a threshold on the user system), rescore.
    # A fresh process re-renders the run: the table is read again (from the run's config) for its example.
    subprocess.run([sys.executable, "-m", "pytest_medcode.cli", "report", str(folder), "--out", "again"],
                   cwd=pytester.path, check=True, capture_output=True, timeout=120)
    again = json.loads((pytester.path / "again" / "summary.json").read_text())
    assert again["results"][0]["top_codes"][0]["is_example"]
    assert main(["report", str(folder), "--out", str(pytester.path / "again2")]) == 0
    assert main(["compare", str(folder), str(folder), "--fail-under", "localproc:closeness=0.4"]) == 0
    assert main(["compare", str(folder), str(folder), "--fail-under", "localproc:closeness=0.6"]) == 1
    assert main(["rescore", str(folder), "--profile", "paper", "--no-similarity",
                 "--out", str(pytester.path / "paper")]) == 0
    rescored = pq.read_table(pytester.path / "paper" / "cases.parquet").to_pylist()
    assert sorted(r["predicted_code"] for r in rescored) == ["111", "111", "112", "999"]
    assert main(["lookup", "localproc", "112", "--codeset", str(pytester.path / "local.csv")]) == 0


def test_a_user_system_gates_on_its_own_metrics(pytester: pytest.Pytester) -> None:
    (pytester.path / "local.csv").write_text(TABLE)
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(*FAST, "--medcode-codeset", "localproc=local.csv", "--medcode-system",
                                "localproc,icd9cm", "--medcode-sample", "4",
                                "--medcode-fail-under", "localproc:exact_match=1,localproc:closeness=1")
    assert result.ret == 0  # the lookup coder finds every description of the table
    rows = {r["system"]: r for r in summary_of(pytester)["results"]}
    assert rows["localproc"]["exact_match"]["value"] == 1.0 and rows["icd9cm"]["closeness"]["value"] is None


# -- bad input: one line naming the file, the row and the problem; exit 4 ---------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("code,description\n100,a\n100,b\n", "*local.csv: row 3: duplicate code 100 (first at row 2*"),
        ("code,description\n10.0,a\n100,b\n", "*local.csv: row 3: duplicate code 100 (first at row 2*"),
        ("code,description\n100,a\n110,\n", "*local.csv: row 3: code 110: empty description"),
        ("code,description\n100,a\n,b\n", "*local.csv: row 3: empty code"),
        ("code,description,parent\n100,a,\n110,b,105\n", "*local.csv: row 3: code 110: parent 105 is not a code*"),
        ("code,description,parent\n100,a,120\n110,b,100\n120,c,110\n",
         "*local.csv: row 2: code 100: cycle in the parent chain (100 > 120 > 110 > 100)"),
        ("code,description,parent\n100,a,100\n", "*local.csv: row 2: code 100: cycle in the parent chain*"),
        ("code,description,billable\n100,a,maybe\n", "*local.csv: row 2: billable 'maybe' is not one of*"),
        ("code,label\n100,a\n", "*local.csv: missing column(s) description (found: code, label)"),
        ("code,description\n", "*local.csv: no codes"),
        ("", "*local.csv: the file is empty"),
        ("code,description\n100,a\n110," + "x" * 5_000_000 + "\n",
         "*local.csv: row 3: a cell longer than 131,072 characters (a quote left open?)"),
        ('code,description\n100,"Acute widget\nsyndrome\n110,b\n',
         "*local.csv: row 2: a quote opened in this row is never closed"),
        ("code,description\n100,Chronic widget disorder, left\n",
         "*local.csv: row 2: 3 cells but the header has 2 (a description that holds a comma or tab must be quoted)"),
        ('code,description\n100,"Acute widget\nsyndrome"\n200,"b" c\n',
         "*local.csv: row 4: not readable as CSV (',' expected after '\"')"),
        ("code,\x1b]0;pwned\x07\x1b[2Jlabel\n100,a\n", "*missing column(s) description (found: code, \\x1b]0;pwned*"),
        ("code,description,Code\n100,a,b\n", "*local.csv: column 'Code' appears twice in the header"),
        ("code,description\n\x1b[2J1\u20280,a\n\x1b[2J1\u20280,b\n",
         "*local.csv: row 3: duplicate code \\x1b?2J1\\u20280 (first at row 2*"),
    ],
    ids=["duplicate", "duplicate-by-dots", "empty-description", "empty-code", "unknown-parent", "cycle",
         "own-parent", "billable-value", "missing-column", "no-rows", "empty-file", "huge-cell", "quote-left-open",
         "extra-cell", "bad-quoting", "escape-codes-in-header", "column-twice", "escape-codes-in-code"],
)
def test_a_bad_table_stops_the_run_with_one_line(pytester: pytest.Pytester, content: str, message: str) -> None:
    (pytester.path / "local.csv").write_text(content)
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(*FAST, "--medcode-codeset", "local=local.csv", "--medcode-system", "local")
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.str()
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "reports").exists()  # nothing half-loaded, nothing asked


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--medcode-codeset", "local=missing.csv", "--medcode-system", "local"), "*missing.csv: no such file"),
        (("--medcode-codeset", "local=broken.parquet", "--medcode-system", "local"),
         "*broken.parquet: not a readable Parquet file*"),
        (("--medcode-codeset", "icd-10-cm=local.csv"), "*'icd-10-cm' reads as the built-in icd10cm*"),
        (("--medcode-codeset", "ICD10_PCS=local.csv"), "*'icd10_pcs' reads as the built-in icd10pcs*"),
        (("--medcode-codeset", "icd10cm:My ICD=local.csv"), "*icd10cm is built in and the prompt names it ICD10CM*"),
        (("--medcode-codeset", "9local=local.csv"), "*a system name is a letter, then letters*"),
        (("--medcode-codeset", "lo,cal=local.csv"), "*a system name is a letter, then letters*"),
        (("--medcode-codeset", "local:=local.csv"), "*empty title after ':'"),
        (("--medcode-codeset", "local=local.csv", "--medcode-codeset", "local=other.csv"), "*local is given twice"),
        (("--medcode-system", "local"), "*unknown system local*--medcode-codeset local=PATH*"),
    ],
    ids=["no-file", "bad-parquet", "looks-built-in", "looks-built-in-pcs", "title-for-built-in", "bad-name",
         "comma-in-name", "empty-title", "given-twice", "no-table"],
)
def test_bad_codeset_options_stop_the_run(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    (pytester.path / "local.csv").write_text(TABLE)
    (pytester.path / "broken.parquet").write_bytes(b"PAR1 not really")
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(*FAST, *args)
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_reading_a_document_file_first_does_not_lift_the_code_table_cell_limit(tmp_path: Path) -> None:
    """csv's cell limit is one setting for the whole process: the document reader (which allows a long
    note) must put it back, or a code table read after it in the same process accepts a 5 MB cell."""
    import csv

    from pytest_medcode.dataset.document_cases import read_documents

    before = csv.field_size_limit()
    notes = tmp_path / "notes.csv"
    notes.write_text("id,text,system,codes\nd1," + "y" * 99_000 + ",icd10cm,J45.909\n")
    read_documents(notes, load_system)
    assert csv.field_size_limit() == before
    table = tmp_path / "local.csv"
    table.write_text("code,description\n100,a\n110," + "x" * 200_000 + "\n")
    with pytest.raises(CodeFileError, match="row 3: a cell longer than 131,072 characters"):
        read(table)
    csv.field_size_limit(2**31 - 1)  # even when someone else lifted it for the process
    try:
        with pytest.raises(CodeFileError, match="row 3: a cell longer than 131,072 characters"):
            read(table)
    finally:
        csv.field_size_limit(before)


def test_cells_are_read_exactly_as_written(tmp_path: Path) -> None:
    """csv reads the file itself: a quoted line break stays, U+2028 and a form feed are characters of a
    cell (not row ends), a quoted comma stays, an empty trailing cell is no extra cell, rows are named by
    the line they start on."""
    path = tmp_path / "t.csv"
    path.write_bytes("code,description,parent\r\n100,\"Acute widget\nsyndrome\",\r\n"
                     "110,Line\u2028separated\x0cform feed,100\r\n\r\n"
                     "120,\"Chronic widget disorder, left\",100,\r\n130,fewer cells\n".encode())
    rows = {code: (description, parent, line) for code, description, _, parent, line in read(path)}
    assert rows == {"100": ("Acute widget\nsyndrome", None, 2), "110": ("Line\u2028separated\x0cform feed", "100", 4),
                    "120": ("Chronic widget disorder, left", "100", 6), "130": ("fewer cells", None, 7)}


@pytest.mark.parametrize(
    ("encoding", "bom", "description"),
    [("utf-8", b"", "Crohn’s disease"), ("utf-8", b"\xef\xbb\xbf", "Crohn’s disease"),
     ("cp1252", b"", "Crohn’s disease"), ("latin-1", b"", "Ménière\x81"), ("utf-16-le", b"\xff\xfe", "Crohn’s disease"),
     ("utf-16-be", b"\xfe\xff", "Crohn’s disease")],
    ids=["utf-8", "utf-8-bom", "windows-1252", "latin-1", "utf-16-le", "utf-16-be"],
)
def test_the_file_s_encoding_is_read(tmp_path: Path, encoding: str, bom: bytes, description: str) -> None:
    path = tmp_path / "t.tsv"
    path.write_bytes(bom + f"code\tdescription\n100\t{description}\n".encode(encoding))
    assert [d for _, d, _, _, _ in read(path)] == [description]


def _parquet(path: Path, **columns: Any) -> Path:
    import pyarrow as pa

    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_columns_must_hold_text_or_integer_codes(tmp_path: Path) -> None:
    import pyarrow as pa

    good = _parquet(tmp_path / "good.parquet", code=pa.array([100, 110], pa.int32()),
                    description=pa.array(["a", "b"]).dictionary_encode(), parent=pa.array([None, 100], pa.int64()),
                    billable=[False, True], extra=[[1, 2], [3]])
    assert [(c, d, b, p) for c, d, b, p, _ in read(good)] == [("100", "a", False, None), ("110", "b", True, "100")]
    for name, values, kind in [("code", [[1, 2]], "list<element: int64>"), ("code", [{"a": 1}], "struct<a: int64>"),
                               ("code", [b"\x00\x01"], "binary"), ("description", [1.5], "double"),
                               ("parent", [True], "bool")]:
        columns: dict[str, Any] = {"code": ["100"], "description": ["a"], name: values}
        with pytest.raises(CodeFileError, match=rf"bad.parquet: column '{name}' holds {re.escape(kind)} values; a "
                                                r"code file's columns must hold text \(or integer codes\)$"):
            read(_parquet(tmp_path / "bad.parquet", **columns))


def test_a_bad_parquet_column_stops_the_run_with_one_line(pytester: pytest.Pytester) -> None:
    _parquet(pytester.path / "local.parquet", code=[[1, 2]], description=["a"])
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(*FAST, "--medcode-codeset", "local=local.parquet", "--medcode-system", "local")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: --medcode-codeset local=*local.parquet: column 'code' holds "
                                 "list<element: int64> values; *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "reports").exists()


def test_a_cpt_file_is_read_by_the_same_reader(tmp_path: Path) -> None:
    path = tmp_path / "cpt.csv"
    path.write_text('code,description\n99213,"Office visit,\nestablished"\n99214,Office visit, long\n')
    with pytest.raises(CodeFileError, match=r"cpt.csv: row 4: 3 cells but the header has 2"):
        load_system("cpt", path)
    path.write_text('code,description\n99213,"Office visit,\nestablished"\n\x1b[2J9921,x\n')
    with pytest.raises(CodeFileError, match=r"1 bad CPT row\(s\) .*: row 4 '\\x1b\[2J9921'$"):
        load_system("cpt", path)
    path.write_text('code,description\n99213,"Office visit,\nestablished"\n')
    assert load_system("cpt", path).lookup("99213").description == "Office visit,\nestablished"


def test_read_reports_the_first_problem_only(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("code,description\n1,a\n1,b\n2,\n")
    with pytest.raises(CodeFileError, match=r"row 3: duplicate code 1 "):
        read(path)


def test_under_xdist_every_worker_names_the_system_by_its_title(pytester: pytest.Pytester) -> None:
    result, prompts = planned_run(pytester, "-n", "2", subprocess=True)
    result.assert_outcomes(passed=1, failed=3)
    assert len(prompts) == 4 and all("Acme Payer Procedure billing code" in p for p in prompts)
    closeness_by_code = {r["code"]: r["closeness"] for r in cases_of(pytester)}
    assert closeness_by_code == pytest.approx(EXPECTED)


def test_an_edited_table_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "t.csv").write_text("code,description\n100,first\n")
    (tmp_path / "b" / "t.csv").write_text("code,description\n200,second\n300,third\n")
    monkeypatch.chdir(tmp_path / "a")
    assert len(load_system("edited", Path("t.csv"))) == 1
    monkeypatch.chdir(tmp_path / "b")  # the same relative path, another file
    assert len(load_system("edited", Path("t.csv"))) == 2
    (tmp_path / "b" / "t.csv").write_text("code,description\n200,second\n")
    assert len(load_system("edited", Path("t.csv"))) == 1
