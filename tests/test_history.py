"""``medcode history``: exact match per model × system over the run folders of real sessions.

Two gated sessions of the offline lookup coder write to one reports folder: one on ICD-9-CM codes it
always gets right (the gate passes), one with five codes whose description an earlier code shares, which
it gets wrong (exact match 75%: the gate fails). The history reads both, marks the failed gate, agrees
with each run's own summary and reads a run without results from its cases' columns.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_medcode.cli import main as medcode
from pytest_medcode.reports import history as history_report
from pytest_medcode.reports.page import json_script
from pytest_medcode.runs.folder import load_run
from pytest_medcode.runs.history import collect, run_entry

TEST_FILE = "def test_code_query(medcode_case, medcode):\n    medcode.check(medcode_case)\n"
LOOKUP_WRONG = ["755.39", "E958.8", "E958.9", "V36.01", "V61.22"]
LOOKUP_RIGHT = ["001.0", "001.1", "002.0", "003.0", "003.1", "004.0", "005.0", "008.00", "010.00", "011.00",
                "250.00", "401.9", "428.0", "486", "496"]
FAST = ("-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-report-dir", "reports",
        "--medcode-system", "icd9cm", "--medcode-fail-under", "exact_match=0.9")


@pytest.fixture
def two_runs(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(test_codes=TEST_FILE)
    right, mixed = pytester.path / "right.csv", pytester.path / "mixed.csv"
    right.write_text("code\n" + "\n".join(LOOKUP_RIGHT) + "\n")
    mixed.write_text("code\n" + "\n".join(LOOKUP_RIGHT + LOOKUP_WRONG) + "\n")
    assert pytester.runpytest(*FAST, "--medcode-codes", str(right)).ret == 0
    assert pytester.runpytest(*FAST, "--medcode-codes", str(mixed)).ret == 1  # 75% < 90%: the gate fails
    return pytester.path / "reports"


def _point(run: dict[str, Any]) -> dict[str, Any]:
    (point,) = run["points"]
    return point


def test_history_reads_every_run_once_and_marks_the_failed_gate(two_runs: Path) -> None:
    history = collect(two_runs)
    assert history.problems == []
    assert len(history.runs) == 2  # the ``latest`` link is not a third run
    first, second = history.runs
    assert first["gate"]["passed"] is True and second["gate"]["passed"] is False
    assert (_point(first)["label"], _point(first)["value"], _point(first)["n"]) == ("lookup / icd9cm", 1.0, 15)
    assert (_point(second)["value"], _point(second)["n"]) == (0.75, 20)
    for run in history.runs:
        own = load_run(run["folder"]).summary["results"][0]["exact_match"]
        assert {k: _point(run)[k] for k in ("value", "low", "high")} == {k: own[k] for k in ("value", "low", "high")}
        assert run["code_systems"]["icd9cm"].startswith("CMS v32") and run["prompt"] == "paper"
        assert len(run["prompt_hash"]) == 8


def test_a_run_without_results_is_read_from_its_cases(two_runs: Path, tmp_path: Path) -> None:
    """An interrupted session's summary has no results: exact match comes from the cases' columns."""
    done = collect(two_runs).runs[1]
    bare = tmp_path / "bare"
    shutil.copytree(done["folder"], bare)
    summary = json.loads((bare / "summary.json").read_text())
    del summary["results"]
    (bare / "summary.json").write_text(json.dumps(summary))
    entry = run_entry(bare)
    assert {k: _point(entry)[k] for k in ("label", "value", "low", "high", "n")} == {
        k: _point(done)[k] for k in ("label", "value", "low", "high", "n")
    }


def test_medcode_history_prints_the_table_and_writes_the_page(
    two_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = two_runs / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text("{not json")
    assert medcode(["history", str(two_runs)]) == 0
    out, err = capsys.readouterr()
    runs = collect(two_runs).runs
    lines = [line for line in out.splitlines() if line.startswith(tuple(r["run_id"] for r in runs))]
    assert len(lines) == 2
    assert "100.0% (79.6–100.0)" in lines[0] and " pass " in lines[0]
    assert "75.0% (53.1–88.8)" in lines[1] and "FAILED" in lines[1]
    assert err.count("\n") == 1 and "skipped" in err and "broken/summary.json: unreadable summary" in err
    page = (two_runs / "history.html").read_text()
    assert page.count('<tr class="failed">') == 1 and "<script" not in page
    assert f"wrote {two_runs / 'history.html'} (2 runs)" in out
    assert medcode(["history", str(two_runs), "--last", "1"]) == 0
    out = capsys.readouterr().out
    assert runs[0]["run_id"] not in out and runs[1]["run_id"] in out and "1 older runs not shown" in out


def test_medcode_history_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert medcode(["history", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"medcode history: {tmp_path / 'nowhere'}: no such reports directory\n"
    assert medcode(["history", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"medcode history: no run folders under {tmp_path}\n"
    assert medcode(["history", str(tmp_path), "--last", "0"]) == 2
    assert "--last 0: must be at least 1" in capsys.readouterr().err


def test_history_page_escapes_what_runs_carry() -> None:
    run = {"run_id": "<script>x</script>", "created": "2026", "code_systems": {"icd9cm": "<b>v</b>"},
           "prompt": "<i>p</i>", "prompt_hash": "", "gate": {"passed": False, "reason": '"><img src=x>'},
           "points": [{"label": "m<svg> / icd9cm", "value": 0.5, "low": 0.4, "high": 0.6, "n": 10}]}
    page = history_report.render_html([run])
    for evil in ("<script>x", "<b>v", "<i>p", "<img", "m<svg>"):
        assert evil not in page


def test_json_block_cannot_be_closed_by_its_data() -> None:
    data = {"answer": "</script><script>alert(1)</script><!-- & \u2028"}
    block = json_script(data, "d")
    inner = block[len('<script type="application/json" id="d">'):-len("</script>")]
    assert "<" not in inner and ">" not in inner and "&" not in inner
    assert json.loads(inner) == data
