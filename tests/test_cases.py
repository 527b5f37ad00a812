"""Case selection: deterministic samples, the user's own code lists, stable unique ids."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pytest_medcode.codesystems import CodeFileError, load_system
from pytest_medcode.dataset.cases import build_cases, read_code_list, select_codes


def test_sample_is_deterministic_and_seed_dependent() -> None:
    system = load_system("icd10cm")
    a = select_codes(system, 50, 1, None)
    assert a == select_codes(system, 50, 1, None)
    assert a != select_codes(system, 50, 2, None)
    assert len({c for c, _ in a}) == 50


def test_ids_are_readable_and_unique() -> None:
    per_system = {"icd10cm": select_codes(load_system("icd10cm"), 30, 0, None)}
    cases = build_cases(["gpt-4", "lookup"], per_system)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)) == 60
    assert all(i.startswith(("gpt-4-icd10cm-", "lookup-icd10cm-")) for i in ids)


def test_code_list_with_counts_draws_frequent_codes_more_often(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    rows = ["code,count", "E11.9,1000", "I10,1000"] + [f"{c},1" for c, _ in
                                                     load_system("icd10cm").billable_codes()[:200]]
    path.write_text("\n".join(rows) + "\n")
    code_list = read_code_list(path, ["icd10cm"])
    hits: Counter[str] = Counter()
    for seed in range(40):
        hits.update(c for c, _ in select_codes(load_system("icd10cm"), 5, seed, code_list))
    assert hits["E11.9"] >= 35 and hits["I10"] >= 35  # weight 1000 vs 1: almost always drawn


def test_code_list_needs_a_system_column_when_several_systems_are_selected(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code\nE11.9\n")
    with pytest.raises(CodeFileError, match="system"):
        read_code_list(path, ["icd10cm", "icd9cm"])


def test_unknown_codes_in_a_code_list_are_named(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code\nE11.9\nQ99.999\n")
    code_list = read_code_list(path, ["icd10cm"])
    with pytest.raises(CodeFileError, match="Q99.999"):
        select_codes(load_system("icd10cm"), None, 0, code_list)


def test_bad_counts_are_named(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,count\nE11.9,many\nI10,-1\n")
    with pytest.raises(CodeFileError, match="row 2.*row 3"):
        read_code_list(path, ["icd10cm"])
