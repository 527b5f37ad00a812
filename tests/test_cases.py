"""Case selection: deterministic samples, the user's own code lists, stable unique ids."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pytest_medcode.codesystems import CodeFileError, load_system
from pytest_medcode.dataset.cases import Case, CodeList, build_cases, read_code_list, select_codes


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


def test_a_temperature_sweep_with_zero_keeps_the_t0_suffix() -> None:
    # Without it the t=0 cases would take the short id of a single-temperature run: a re-run with one
    # temperature would be mistaken for them, and t=0 and t=0.7 results would not be told apart by id.
    per_system = {"icd10cm": [("E11.9", "Type 2 diabetes mellitus without complications")]}
    cases = build_cases(["m"], per_system, temperatures=(0.0, 0.7))
    assert [c.id for c in cases] == ["m-icd10cm-E11.9-t0", "m-icd10cm-E11.9-t0.7"]
    assert [c.temperature for c in cases] == [0.0, 0.7]
    assert Case("m", "icd10cm", "I10", "d", "typo", "w", 0.0, 0).id == "m-icd10cm-I10-typo-t0-r0"
    assert [c.id for c in build_cases(["m"], per_system, temperatures=(0.0,))] == ["m-icd10cm-E11.9"]


def test_a_code_listed_twice_weighs_its_counts_added_up(tmp_path: Path) -> None:
    # Two rows for E11.9 (say, two months of claims) weigh 2 + 3; keeping only the last row would draw it
    # as if it were as rare as a code billed 3 times.
    path = tmp_path / "codes.csv"
    path.write_text("code,count\nE11.9,2\nI10,5\nE11.9,3\nJ20.9\nJ20.9\n")
    assert read_code_list(path, ["icd10cm"]).counts == {"icd10cm": {"E11.9": 5.0, "I10": 5.0, "J20.9": 2.0}}


def test_spellings_of_one_code_add_their_weights_in_the_draw() -> None:
    # E119 and E11.9 are one code: the draw must see weight 1 + 1 = 2, as if it were listed once with count 2.
    system = load_system("icd10cm")
    spelled = CodeList({"icd10cm": {"E119": 1.0, "E11.9": 1.0, "I10": 2.0, "J20.9": 2.0}})
    merged = CodeList({"icd10cm": {"E11.9": 2.0, "I10": 2.0, "J20.9": 2.0}})
    draws = [select_codes(system, 1, seed, spelled) for seed in range(60)]
    assert draws == [select_codes(system, 1, seed, merged) for seed in range(60)]
    assert {c for d in draws for c, _ in d} == {"E11.9", "I10", "J20.9"}
