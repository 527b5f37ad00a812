"""Reading a run folder back and pairing two runs' cases (pytest_medcode.runs.folder)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pytest_medcode.reports.verdict import comparison_lines
from pytest_medcode.results import gate
from pytest_medcode.results.pairing import PairingError, pair_records
from pytest_medcode.results.rules import parse_max_drops
from pytest_medcode.runs import folder as files
from pytest_medcode.runs.folder import SCHEMA_METADATA_KEY, Run, RunFormatError, load_run


@pytest.fixture(scope="module")
def run_folder(lookup_run_folder: Callable[..., Path]) -> Path:
    """A real run: 40 ICD-9-CM and 40 ICD-10-CM cases answered by the lookup coder."""
    return lookup_run_folder("--medcode-system", "icd9cm,icd10cm", "--medcode-sample", "40")


@pytest.fixture
def run(run_folder: Path) -> Run:
    return load_run(run_folder)


def copy_run(run_folder: Path, target: Path) -> Path:
    shutil.copytree(run_folder, target)
    return target


# -- load_run ----------------------------------------------------------------------------------


def test_a_run_reads_back_from_its_folder_its_parquet_or_its_summary(run_folder: Path) -> None:
    by_folder = load_run(run_folder)
    assert len(by_folder.records) == 80 and by_folder.summary is not None
    assert by_folder.summary["n_cases"] == 80 and by_folder.folder == run_folder
    assert by_folder.records[0]["digit_positions"] and isinstance(by_folder.records[0]["exact_match"], bool)
    for path in (run_folder / "cases.parquet", run_folder / "summary.json", run_folder.parent / "latest"):
        assert load_run(path).records == by_folder.records


def test_the_cases_file_carries_its_schema_version(run_folder: Path) -> None:
    meta = pq.read_schema(run_folder / "cases.parquet").metadata
    assert meta[SCHEMA_METADATA_KEY] == str(files.SCHEMA_VERSION).encode()


def test_the_cases_file_is_written_a_row_group_at_a_time(run: Run, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "ROWS_PER_GROUP", 30)
    files.write_cases(run.records, tmp_path / "cases.parquet")
    assert pq.ParquetFile(tmp_path / "cases.parquet").metadata.num_row_groups == 3  # 80 rows
    assert load_run(tmp_path / "cases.parquet").records == run.records
    files.write_cases([], tmp_path / "empty.parquet")
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0


def test_a_parquet_without_a_summary_still_reads(run_folder: Path, tmp_path: Path) -> None:
    shutil.copy(run_folder / "cases.parquet", tmp_path / "baseline.parquet")
    run = load_run(tmp_path / "baseline.parquet")
    assert run.summary is None and len(run.records) == 80


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("summary-version", "summary schema version 2, this pytest-medcode reads version 1"),
        ("parquet-version", "cases schema version '7', this pytest-medcode reads version 1"),
        ("not-parquet", "not a readable Parquet file"),
        ("missing-column", "not a pytest-medcode cases table (missing column(s) outcome)"),
        ("summary-list", "not a pytest-medcode summary"),
        ("summary-garbage", "unreadable summary"),
        ("no-cases", "no cases.parquet in this folder"),
    ],
)
def test_unreadable_runs_raise_one_line(run_folder: Path, tmp_path: Path, damage: str, message: str) -> None:
    folder = copy_run(run_folder, tmp_path / "run")
    cases, summary = folder / "cases.parquet", folder / "summary.json"
    if damage == "summary-version":
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "schema_version": 2}))
    elif damage == "parquet-version":
        table = pq.read_table(cases)
        pq.write_table(table.replace_schema_metadata({SCHEMA_METADATA_KEY: b"7"}), cases)
    elif damage == "not-parquet":
        cases.write_text("model,system\n")
    elif damage == "missing-column":
        pq.write_table(pq.read_table(cases).drop(["outcome"]), cases)
    elif damage == "summary-list":
        summary.write_text("[]")
    elif damage == "summary-garbage":
        summary.write_text("{")
    elif damage == "no-cases":
        cases.unlink()
    with pytest.raises(RunFormatError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_run(folder)
    assert "\n" not in str(info.value)


def test_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RunFormatError, match="no such run folder or file"):
        load_run(tmp_path / "nowhere")


# -- pairing -----------------------------------------------------------------------------------


def test_pairs_by_model_system_and_code(run: Run) -> None:
    new = list(reversed(run.records[10:]))
    pairing = pair_records(run.records, new)
    assert pairing.key_columns[:3] == ("model", "system", "code")  # + variant, which every case now has
    assert len(pairing.pairs) == 70 and (pairing.only_base, pairing.only_new) == (10, 0)
    assert all(b["case_id"] == w["case_id"] for b, w in pairing.pairs)
    assert {(w["model"], w["system"]) for _, w in pairing.pairs} == {("lookup", "icd9cm"), ("lookup", "icd10cm")}
    assert pairing.notes() == ["10 baseline case(s) are not in this run and were not compared"]


def test_variant_columns_join_the_key_only_when_both_runs_have_them(run: Run) -> None:
    base = [{**r, "temperature": t} for t in (0.2, 1.0) for r in run.records]
    new = [{**r, "temperature": 1.0} for r in run.records]
    pairing = pair_records(base, new)
    assert pairing.key_columns[:3] == ("model", "system", "code") and "temperature" in pairing.key_columns
    assert len(pairing.pairs) == 80 and all(b["temperature"] == 1.0 for b, _ in pairing.pairs)
    without = [{k: v for k, v in r.items() if k != "temperature"} for r in run.records]
    with pytest.raises(PairingError, match="the baseline run has two cases with model=lookup, system="):
        pair_records(base, without)  # the new run has no temperature column: the baseline is ambiguous


def test_a_model_swap_pairs_only_between_single_model_runs(run: Run) -> None:
    swapped = [{**r, "model": "gpt-4o"} for r in run.records]
    pairing = pair_records(run.records, swapped)
    assert pairing.model_map == {"lookup": "gpt-4o"} and len(pairing.pairs) == 80
    two_models = swapped + [{**r, "model": "claude"} for r in run.records]
    assert pair_records(run.records, two_models).pairs == []


def test_comparison_lines(run: Run) -> None:
    worse = [{**r, "exact_match": False, "outcome": "incorrect"} if i % 4 == 0 else r
             for i, r in enumerate(run.records)]
    drops = parse_max_drops("exact_match=2pp,digit_match=0.01")
    verdict = gate.evaluate(worse, run.records, max_drops=drops)
    lines = comparison_lines(verdict)
    assert lines[0].split() == ["scope", "metric", "n", "baseline", "new", "change", "worse/better", "p",
                                "allowed", "verdict"]
    exact = next(line for line in lines if "all systems" in line and "exact_match" in line)
    assert all(part in exact for part in ("80", "75.0%", "-25.0 pp", "20/0", "REGRESSED"))
    digits = next(line for line in lines if "icd9cm" in line and "digit_match" in line)
    assert "CI " in digits and digits.rstrip().endswith("ok")
    assert comparison_lines(gate.evaluate(run.records)) == []
