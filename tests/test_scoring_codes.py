"""Per-case code metrics, on the study's definitions; the paper profile; hierarchy and other-system credit."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_medcode.codesystems import load_system
from pytest_medcode.results.records import score_record
from pytest_medcode.scoring.codes import (
    billable_keys,
    code_metrics,
    digit_match,
    digit_positions,
    length_match,
    score_answer,
    unscored_fields,
)
from pytest_medcode.scoring.crosswalk import crosswalk_metrics, gem_pairs
from pytest_medcode.scoring.hierarchy import hierarchy_metrics, levels_of, lineage


@pytest.mark.parametrize(
    ("system", "reference", "predicted"),
    [
        ("icd10cm", "T38.3X5A", "T38.3X5D"),  # adverse effect of insulin: initial vs subsequent encounter
        ("icd10cm", "T38.3X5A", "T38.3X5S"),  # ... vs sequela
        ("icd10cm", "S72.001A", "S72.001B"),  # closed vs open fracture, initial encounter
        ("icd10cm", "E11.65", "E11.69"),  # the 5th character of a 6-character code
        ("icd9cm", "250.00", "250.01"),  # type II vs type I diabetes, the 5th digit
    ],
)
def test_exact_match_tells_codes_apart_that_differ_only_in_their_last_character(
    system: str, reference: str, predicted: str
) -> None:
    """Real billable codes one character apart: a near miss, not a match and not a fabrication. Hand count:
    every non-dot character but the last agrees at the same index, so k - 1 of k digits match."""
    table = load_system(system)
    m = code_metrics(table, reference, predicted)
    k = len(reference.replace(".", ""))
    assert m["exact_match"] is False
    assert m["length_match"] is True
    assert m["digit_match"] == pytest.approx((k - 1) / k)
    assert m["digit_positions"] == [True] * (k - 1) + [False]
    assert (m["valid"], m["billable"], m["fabricated"]) == (True, True, False)
    assert code_metrics(table, reference, reference)["exact_match"] is True
    for profile in ("default", "paper"):  # what a run records for the answer, under both profiles
        record = score_record({"code": reference}, table, f"Code: {predicted}", profile)
        assert record["exact_match"] is False and record["outcome"] == "incorrect", (profile, record)


def test_icd10cm_7th_character_near_misses_read_from_answers() -> None:
    """The answer's whole code is read, 7th character included: ``T38.3X5D`` is not ``T38.3X5A``, and the
    bare subcategory ``T38.3X5`` (7 non-dot characters of the reference, 6 given) is a header, not a match."""
    table = load_system("icd10cm")
    wrong_extension = score_answer(table, "T38.3X5A", "Code: T38.3X5D")
    assert (wrong_extension["predicted_code"], wrong_extension["exact_match"]) == ("T38.3X5D", False)
    header = score_answer(table, "T38.3X5A", "Code: T38.3X5")
    assert header["predicted_code"] == "T38.3X5" and header["exact_match"] is False
    assert (header["valid"], header["billable"], header["valid_not_billable"]) == (True, False, True)
    assert header["length_match"] is False and header["digit_match"] == pytest.approx(6 / 7)
    lower = score_answer(table, "T38.3X5A", "code: t38.3x5a")
    assert (lower["predicted_code"], lower["exact_match"]) == ("T38.3X5A", True)
    # The paper profile cuts the 7th character (README, Profiles): even the right answer is not a match.
    paper = score_answer(table, "T38.3X5A", "Code: T38.3X5A", "paper")
    assert (paper["predicted_code"], paper["exact_match"]) == ("T38.3X", False)


@pytest.mark.parametrize(
    ("reference", "predicted", "expected"),
    [
        ("E11.9", "E11.9", 1.0),
        ("E11.9", "E11.65", 3 / 4),  # E,1,1 match; 9 vs 6
        ("I82.409", "I82.49", 4 / 6),  # I,8,2,4 match at the same index; 0/9 do not
        ("250.00", "25000", 4 / 5),  # dots count in indexing: index 3 is skipped, index 5 is missing
        ("E11.9", None, 0.0),
    ],
)
def test_digit_match(reference: str, predicted: str | None, expected: float) -> None:
    assert digit_match(reference, predicted) == pytest.approx(expected)


def test_length_match_counts_dots() -> None:
    assert length_match("250.00", "250.01")
    assert not length_match("250.00", "25000")
    assert not length_match("250.00", None)


@given(st.text(alphabet="ABC0123.", min_size=1, max_size=8), st.text(alphabet="ABC0123.", max_size=8))
def test_digit_match_in_unit_interval_and_one_only_when_equal_at_non_dots(ref: str, pred: str) -> None:
    score = digit_match(ref, pred)
    assert 0.0 <= score <= 1.0
    if ref == pred and ref.replace(".", ""):
        assert score == 1.0
    assert sum(digit_positions(ref, pred)) == round(score * len([c for c in ref if c != "."]))


def test_metrics_tell_valid_billable_and_fabricated_apart() -> None:
    system = load_system("icd10cm")
    exact = code_metrics(system, "E11.9", "E11.9")
    assert exact["exact_match"] and exact["valid"] and exact["billable"] and not exact["fabricated"]
    header = code_metrics(system, "E11.9", "E11")
    assert header["valid"] and not header["billable"] and not header["fabricated"]
    made_up = code_metrics(system, "E11.9", "E11.99")
    assert not made_up["valid"] and made_up["fabricated"]
    nothing = code_metrics(system, "E11.9", None)
    assert not nothing["valid"] and not nothing["fabricated"] and nothing["digit_match"] == 0.0


@given(st.text(alphabet="ABC0123", min_size=1, max_size=8), st.text(alphabet="ABC0123", min_size=1, max_size=8))
def test_digit_match_is_one_exactly_when_equal_for_same_length_codes(ref: str, pred: str) -> None:
    """For two codes of one length and dot layout (two canonical codes of a system, or two CPT codes), matched
    digits is 1 exactly when they are equal. (In general a longer prediction that extends the reference,
    E11.65 for E11.6, also scores 1: the study's definition walks the reference only.)"""
    pred = (pred * 8)[: len(ref)]
    assert (digit_match(ref, pred) == 1.0) == (ref == pred)
    dotted_ref, dotted_pred = ref[:3] + "." + ref[3:], pred[:3] + "." + pred[3:]
    assert (digit_match(dotted_ref, dotted_pred) == 1.0) == (dotted_ref == dotted_pred)
    assert digit_match(ref, ref) == 1.0


# -- the paper profile's metric definitions ------------------------------------------------------------------


def test_paper_validity_is_billable_list_membership() -> None:
    system = load_system("icd10cm")
    header = code_metrics(system, "E11.9", "E11", "paper")
    assert header["valid"] is False and header["billable"] is False and header["fabricated"] is True
    assert code_metrics(system, "E11.9", "E11")["valid"] is True  # default: a header exists
    dotless = code_metrics(system, "E11.9", "E119", "paper")
    # Dots removed before the list lookup: valid; but not the same string, and not a spelling UMLS resolves.
    assert dotless["valid"] and not dotless["exact_match"] and dotless["predicted_description"] is None
    exact = code_metrics(system, "E11.9", "E11.9", "paper")
    assert exact["exact_match"] and exact["valid"] and exact["predicted_description"]
    nothing = code_metrics(system, "E11.9", None, "paper")
    assert nothing["valid"] is False and nothing["fabricated"] is True  # valid + fabricated = 100 %
    assert nothing["length_match"] is False and nothing["digit_match"] == 0.0


def test_paper_profile_checks_no_cpt_code(tmp_path: Path) -> None:
    path = tmp_path / "cpt.csv"
    path.write_text("code,description\n99213,Office visit\n84120,Porphyrins\n")
    cpt = load_system("cpt", path)
    paper = code_metrics(cpt, "99213", "99999", "paper")
    assert paper["valid"] is None and paper["billable"] is None and paper["fabricated"] is None
    default = code_metrics(cpt, "99213", "99999")
    assert default["valid"] is False and default["fabricated"] is True


def test_profiles_score_the_same_answer_differently() -> None:
    system = load_system("icd10cm")
    default = score_answer(system, "T38.3X5A", "Code: T38.3X5A", "default")
    paper = score_answer(system, "T38.3X5A", "Code: T38.3X5A", "paper")
    assert default["exact_match"] and default["predicted_code"] == "T38.3X5A"
    assert paper["predicted_code"] == "T38.3X" and not paper["exact_match"] and not paper["valid"]
    assert paper["profile"] == "paper" and paper["n_codes"] == 1  # codes are counted the default way
    assert set(default) == set(paper) == set(unscored_fields())


_ANSWER_FORMS = st.sampled_from(["Code: {c}", "{c}", "code: {l}", "Code: {d}.", "It is {c} or maybe {o}", "{junk}"])


@settings(deadline=None, max_examples=60)
@given(st.sampled_from(["icd10cm", "icd9cm", "icd9cm-proc"]), st.data())
def test_an_exact_match_is_always_valid(system_name: str, data: st.DataObject) -> None:
    system = load_system(system_name)
    codes = system.billable_codes()
    ref = codes[data.draw(st.integers(0, len(codes) - 1))][0]
    other = codes[data.draw(st.integers(0, len(codes) - 1))][0]
    junk = data.draw(st.text(alphabet="0123456789.ABEVXabe :", max_size=20))
    form = data.draw(_ANSWER_FORMS)
    text = form.format(c=ref, l=ref.lower(), d=ref.replace(".", ""), o=other, junk=junk)
    fields = score_answer(system, ref, text)
    if fields["exact_match"]:
        assert fields["valid"] and fields["billable"] and not fields["fabricated"]
        assert fields["hierarchy_level"] == "code" and fields["digit_match"] == 1.0
    assert 0.0 <= fields["digit_match"] <= 1.0


# -- hierarchy partial credit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "reference", "predicted", "level"),
    [
        ("icd10cm", "E11.9", "E11.9", "code"),
        ("icd10cm", "E11.65", "E11.69", "subcategory"),  # both under E11.6
        ("icd10cm", "E11.9", "E11.65", "category"),
        ("icd10cm", "E11.9", "E11.99", "category"),  # fabricated, placed under its existing prefix E11
        ("icd10cm", "E11.9", "E10.9", "block"),  # E08-E13 Diabetes mellitus
        ("icd10cm", "E11.9", "E66.9", "chapter"),  # chapter 4
        ("icd10cm", "E11.9", "A00.0", "none"),
        ("icd10cm", "T38.3X5A", "T38.3X1A", "subcategory"),  # several subcategory levels: T38.3X shared
        ("icd10cm", "B20", "B20", "code"),  # a one-code block
        ("icd10cm", "I10", "I10.1", "category"),  # a 3-character code is its own category
        ("icd10cm", "E11.9", None, None),
        ("icd9cm", "250.00", "250.01", "subcategory"),
        ("icd9cm", "250.00", "250.10", "category"),
        ("icd9cm", "250.00", "251.1", "chapter"),
        ("icd9cm", "E849.0", "E849.9", "category"),
        ("icd9cm-proc", "81.54", "81.55", "subcategory"),
        ("icd9cm-proc", "81.54", "80.26", "chapter"),  # 76-84 musculoskeletal
    ],
)
def test_hierarchy_level(system: str, reference: str, predicted: str | None, level: str | None) -> None:
    table = load_system(system)
    metrics = hierarchy_metrics(table, reference, predicted)
    assert metrics["hierarchy_level"] == level
    order = ["chapter", "block", "category", "subcategory"]
    present = levels_of(table)
    for lv in order:
        if lv not in present:
            assert metrics[f"same_{lv}"] is None
    # Shared levels nest: sharing a deeper level means sharing every broader one the system has.
    flags = [metrics[f"same_{lv}"] for lv in order if lv in present]
    assert flags == sorted(flags, reverse=True)


def test_levels_come_from_the_tables(tmp_path: Path) -> None:
    assert levels_of(load_system("icd10cm")) == ("chapter", "block", "category", "subcategory")
    assert levels_of(load_system("icd9cm")) == ("chapter", "category", "subcategory")
    path = tmp_path / "cpt.csv"
    path.write_text("code,description\n99213,Office visit\n")
    cpt = load_system("cpt", path)
    assert levels_of(cpt) == ()
    assert hierarchy_metrics(cpt, "99213", "99214")["hierarchy_level"] is None
    lin = lineage(load_system("icd10cm"), "E11.65")
    assert (lin.chapter, lin.block, lin.category, lin.subcategories) == ("4", "E08-E13", "E11", {"E11.6"})


# -- valid in another system -------------------------------------------------------------------------------------


def test_an_icd9_answer_to_an_icd10_question_is_found_and_crosswalked() -> None:
    icd10 = load_system("icd10cm")
    fields = score_answer(icd10, "E11.9", "Code: 250.00")
    assert fields["predicted_code"] is None and not fields["fabricated"]
    assert fields["other_system"] == "icd9cm" and fields["other_system_code"] == "250.00"
    assert fields["crosswalk_match"] is True  # GEM: 25000 <-> E119
    wrong = crosswalk_metrics(icd10, "I10", None, "Code: 250.00")
    assert wrong["other_system"] == "icd9cm" and wrong["crosswalk_match"] is False


def test_an_icd10_answer_to_an_icd9_question_and_no_false_alarms() -> None:
    icd9 = load_system("icd9cm")
    fields = score_answer(icd9, "250.00", "Code: E11.9")
    assert fields["other_system"] == "icd10cm" and fields["crosswalk_match"] is True
    assert score_answer(icd9, "250.00", "Code: 250.00")["other_system"] is None  # valid in its own system
    assert score_answer(icd9, "250.00", "Code: 999.99")["other_system"] is None  # exists nowhere
    proc = score_answer(icd9, "250.00", "Code: 81.54")
    assert proc["other_system"] == "icd9cm-proc" and proc["crosswalk_match"] is None  # no GEM for procedures
    assert gem_pairs() is not None and ("25000", "E119") in gem_pairs()


def test_billable_keys_are_the_dotless_codes_of_each_table_built_once(tmp_path: Path) -> None:
    """The paper profile's billable list: each table's billable codes without dots, computed once per table and
    never handed to another table (two user tables, different codes)."""
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("code,description\nA00.0,Cholera A\nA00.1,Cholera B\n")
    second.write_text("code,description\nB00.0,Eczema herpeticum\n")
    one, two = load_system("icd10cm", first), load_system("icd10cm", second)
    keys = billable_keys(one)
    assert keys == frozenset({"A000", "A001"})
    assert billable_keys(one) is keys  # built once
    assert billable_keys(two) == frozenset({"B000"})
    assert billable_keys(one) is keys


def test_answer_fields_that_depend_on_the_profile(tmp_path: Path) -> None:
    """Hand-read: the paper profile predicts the first match only, but codes and their count are the default
    reading of the whole answer; a billable code is not "valid but not billable"; a code of the asked system
    is not looked for in other systems; the study checked no CPT code, so CPT's validity fields are None."""
    icd10 = load_system("icd10cm")
    paper = score_answer(icd10, "E11.9", "Code: E11.9, or E11.65", "paper")
    assert (paper["predicted_code"], paper["codes"], paper["n_codes"]) == ("E11.9", ["E11.9", "E11.65"], 2)
    assert paper["valid_not_billable"] is False
    near = score_answer(icd10, "T38.3X5A", "Code: T38.3X5D")
    assert (near["valid"], near["billable"], near["valid_not_billable"]) == (True, True, False)
    both = score_answer(icd10, "E11.9", "Code: E11.9 (ICD-9-CM 250.00)")
    assert (both["other_system"], both["other_system_code"], both["crosswalk_match"]) == (None, None, None)
    path = tmp_path / "cpt.csv"
    path.write_text("code,description\n99213,Office visit\n")
    cpt = score_answer(load_system("cpt", path), "99213", "Code: 99213", "paper")
    assert (cpt["exact_match"], cpt["valid"], cpt["billable"], cpt["fabricated"], cpt["valid_not_billable"]) == (
        True, None, None, None, None)
    with pytest.raises(ValueError, match=r"^unknown scoring profile 'nope'; choose from default, paper$"):
        code_metrics(icd10, "E11.9", "E11.9", "nope")


def test_fields_of_an_unanswered_case() -> None:
    """A failed call reads nothing and scores nothing: every answer-derived field empty or None."""
    assert unscored_fields("paper") == {
        "profile": "paper", "codes": [], "predicted_code": None, "n_codes": 0, "exact_match": None, "valid": None,
        "billable": None, "fabricated": None, "outdated": None, "not_yet_valid": None,
        "release_note": None, "length_match": None, "digit_match": None, "digit_positions": [],
        "predicted_description": None, "valid_not_billable": None, "hierarchy_level": None, "same_chapter": None,
        "same_block": None, "same_category": None, "same_subcategory": None, "closeness": None, "other_system": None,
        "other_system_code": None, "crosswalk_match": None}
    assert unscored_fields()["profile"] == "default"


def test_a_reference_without_characters_matches_no_digit() -> None:
    assert digit_match("", "E11.9") == 0.0 and digit_match(".", ".") == 0.0 and digit_positions("", "E") == []


def test_prefix_closeness_is_a_share_of_the_reference_code(tmp_path: Path) -> None:
    # CPT has no parent links: closeness is the common prefix over the reference's length. Over the
    # prediction's length, a truncated 992 for 99213 would score 1.0, as close as the right code.
    path = tmp_path / "cpt.csv"
    path.write_text("code,description\n99213,Office visit\n99214,Office visit moderate\n")
    cpt = load_system("cpt", path)
    assert hierarchy_metrics(cpt, "99213", "992")["closeness"] == pytest.approx(3 / 5)
    assert hierarchy_metrics(cpt, "99213", "99214")["closeness"] == pytest.approx(4 / 5)
    assert hierarchy_metrics(cpt, "99213", "99213")["closeness"] == 1.0
    assert hierarchy_metrics(cpt, "99213", "99213-25")["closeness"] == 1.0  # the whole reference is matched
