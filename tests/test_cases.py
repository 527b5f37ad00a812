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
    with pytest.raises(CodeFileError, match=r"Q99\.999"):
        select_codes(load_system("icd10cm"), None, 0, code_list)


def test_bad_counts_are_named(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,count\nE11.9,many\nI10,-1\n")
    with pytest.raises(CodeFileError, match=r"row 2.*row 3"):
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


def test_cases_are_model_major_with_variants_temperatures_and_repeats() -> None:
    from pytest_medcode.dataset.variants import perturb

    per_system = {"icd10cm": [("E11.9", "Type 2 diabetes mellitus without complications"), ("I10", "Essential "
                                                                                          "(primary) hypertension")],
                  "icd9cm": [("250.00", "Diabetes mellitus without mention of complication")]}
    cases = build_cases(["a", "b"], per_system, variants=("exact", "typo"), seed=3, temperatures=(0.2, 0.9),
                        repeats=2)
    assert len(cases) == 2 * 3 * 2 * 2 * 2
    assert [c.id for c in cases[:9]] == [
        "a-icd10cm-E11.9-t0.2-r0", "a-icd10cm-E11.9-t0.2-r1", "a-icd10cm-E11.9-t0.9-r0", "a-icd10cm-E11.9-t0.9-r1",
        "a-icd10cm-E11.9-typo-t0.2-r0", "a-icd10cm-E11.9-typo-t0.2-r1", "a-icd10cm-E11.9-typo-t0.9-r0",
        "a-icd10cm-E11.9-typo-t0.9-r1", "a-icd10cm-I10-t0.2-r0"]
    assert {c.model for c in cases[:24]} == {"a"} and cases[24].model == "b"
    assert len({c.id for c in cases}) == len(cases)
    exact, typo = cases[0], cases[4]
    assert exact.perturbed is None and exact.asked_description == exact.description
    assert typo.perturbed == perturb(typo.description, "typo", 3, "E11.9").text
    assert typo.asked_description == typo.perturbed != typo.description
    assert typo.to_dict() == {"model": "a", "system": "icd10cm", "code": "E11.9", "description": typo.description,
                              "variant": "typo", "perturbed": typo.perturbed, "temperature": 0.2, "repeat": 0}
    assert build_cases(["a"], per_system, repeats=1)[0].repeat is None
    assert build_cases(["a"], per_system, seed=4, variants=("typo",))[0].perturbed == perturb(
        per_system["icd10cm"][0][1], "typo", 4, "E11.9").text


def test_a_code_list_keeps_the_selected_systems_rows_and_counts_blank_as_one(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,system,count\nE11.9,icd10cm,\n250.00,icd9cm,4\nI10,icd10cm,2.5\n99213,cpt,1\n")
    assert read_code_list(path, ["icd10cm", "icd9cm"]).counts == {
        "icd10cm": {"E11.9": 1.0, "I10": 2.5}, "icd9cm": {"250.00": 4.0}}
    with pytest.raises(CodeFileError, match=r"no codes for the selected system\(s\) icd9cm-proc$"):
        read_code_list(path, ["icd9cm-proc"])


def test_more_than_five_bad_counts_are_summed_up(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,count\n" + "".join(f"E11.{i},0\n" for i in range(7)))
    with pytest.raises(CodeFileError) as err:
        read_code_list(path, ["icd10cm"])
    message = str(err.value)
    assert message.startswith(f"{path}: row 2: count '0' is not a positive number; row 3:")
    assert message.endswith("row 6: count '0' is not a positive number and 2 more")


def test_more_than_five_unknown_codes_are_summed_up() -> None:
    system = load_system("icd10cm")
    wanted = CodeList({"icd10cm": {f"Q99.99{i}": 1.0 for i in range(7)} | {"E11.9": 1.0}})
    with pytest.raises(CodeFileError) as err:
        select_codes(system, None, 0, wanted)
    assert str(err.value) == (f"--medcode-codes: 7 code(s) not in {system.title} {system.version}: "
                              "Q99.990, Q99.991, Q99.992, Q99.993, Q99.994 and 2 more")


def test_a_code_list_is_returned_in_table_order_and_whole_when_the_sample_is_larger() -> None:
    system = load_system("icd10cm")
    order = [c for c, _ in system.billable_codes()]
    listed = CodeList({"icd10cm": {"I10": 1.0, "E119": 3.0, "A00.0": 1.0}})
    expected = sorted(["I10", "E11.9", "A00.0"], key=order.index)
    for sample in (None, 3, 10):
        picked = select_codes(system, sample, 0, listed)
        assert [c for c, _ in picked] == expected
        assert dict(picked)["E11.9"] == system.lookup("E11.9").description
    two = select_codes(system, 2, 0, listed)
    assert len(two) == 2 and [c for c, _ in two] == sorted((c for c, _ in two), key=order.index)
    assert select_codes(system, None, 0, None) == system.billable_codes()
    assert select_codes(system, len(order), 0, None) == system.billable_codes()


def test_five_bad_rows_are_all_listed_with_nothing_more(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,count\n" + "".join(f"E11.{i},0\n" for i in range(5)))
    with pytest.raises(CodeFileError) as err:
        read_code_list(path, ["icd10cm"])
    assert str(err.value).endswith("row 6: count '0' is not a positive number")
    wanted = CodeList({"icd10cm": {f"Q99.99{i}": 1.0 for i in range(5)}})
    with pytest.raises(CodeFileError) as err:
        select_codes(load_system("icd10cm"), None, 0, wanted)
    assert str(err.value).endswith(": Q99.990, Q99.991, Q99.992, Q99.993, Q99.994")


def test_rows_of_other_systems_are_skipped_wherever_they_are(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,system\n99213,cpt\nE11.9,icd10cm\n")
    assert read_code_list(path, ["icd10cm"]).counts == {"icd10cm": {"E11.9": 1.0}}
    with pytest.raises(CodeFileError, match=r"selected system\(s\) icd9cm, icd9cm-proc$"):
        read_code_list(path, ["icd9cm", "icd9cm-proc"])
    # A list with no code of this system selects none of it.
    assert select_codes(load_system("icd10cm"), 3, 0, CodeList({"icd9cm": {"250.00": 1.0}})) == []
