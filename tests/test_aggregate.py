"""Records → results rows: backward-compatible keys, Wilson/bootstrap estimates, None-aware denominators."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_medcode.codesystems import load_system
from pytest_medcode.results.aggregate import (
    axis_rates,
    digit_position_rates,
    example_echo,
    most_missed_axis,
    summarize,
    top_codes,
)
from pytest_medcode.results.records import score_record
from pytest_medcode.scoring.codes import unscored_fields
from pytest_medcode.vocabulary import CORRECT, ERROR, INCORRECT, NO_CODE, SIMILARITY

#: Keys the gate, compare and the HTML/Markdown reports read: never renamed.
STABLE_KEYS = {"exact_match", "valid", "fabricated", "billable", "length_match", "codes_per_answer", "digit_match",
               "n", "answered", "errors", "correct", "no_code"}


def record(answer: str | None, code: str = "E11.9", model: str = "m", system: str = "icd10cm",
           profile: str = "default", **extra: Any) -> dict[str, Any]:
    """A real record: the answer scored against the real table, as build_record would."""
    base: dict[str, Any] = {"model": model, "system": system, "code": code, "description": "d", "raw_answer": answer}
    if answer is None:
        return {**base, "outcome": ERROR, **unscored_fields(profile), **extra}
    return {**score_record(base, load_system(system), answer, profile), **extra}


def test_seed_exact_match_example_through_the_results() -> None:
    """The presentation's worked example: 3 of 5 predictions equal their reference → 60 %."""
    reference = ["A123", "B456", "C789", "D012", "E345"]
    predicted = ["A123", "B456", "C788", "D012", "E346"]
    rows = [{"model": "m", "system": "x", "code": r, "outcome": CORRECT if r == p else INCORRECT,
             "exact_match": r == p, "n_codes": 1, "digit_match": 1.0} for r, p in zip(reference, predicted)]
    (row,) = summarize(rows)
    assert row["exact_match"]["value"] == 0.6 and row["exact_match"]["n"] == 5
    assert row["exact_match"]["low"] == pytest.approx(0.2307, abs=1e-3)  # Wilson 95 %
    assert row["exact_match"]["high"] == pytest.approx(0.8824, abs=1e-3)
    assert row["incorrect_n"] == 2


def test_rows_keep_every_key_consumers_read_and_estimates_are_dicts() -> None:
    rows = summarize([record("Code: E11.9"), record("Code: E11.65"), record("no idea"), record(None)])
    (row,) = rows
    assert set(row) >= STABLE_KEYS
    assert (row["model"], row["system"], row["n"], row["answered"], row["errors"]) == ("m", "icd10cm", 4, 3, 1)
    assert (row["correct"], row["no_code"], row["incorrect_n"]) == (1, 1, 2)
    for key in ("exact_match", "valid", "billable", "fabricated", "length_match", "codes_per_answer", "digit_match",
                "incorrect", "valid_not_billable", "code_frequency", "same_chapter", "other_system"):
        assert set(row[key]) == {"value", "low", "high", "n"}, key
    assert row["valid"]["value"] == pytest.approx(2 / 3)
    assert row["profile"] == "default"


def test_none_values_leave_the_denominator() -> None:
    """Paper profile, CPT: validity is not checked, so it is None - not 0 %."""
    rows = [{"model": "m", "system": "cpt", "code": "99213", "outcome": INCORRECT, "exact_match": False,
             "valid": None, "billable": None, "fabricated": None, "length_match": True, "n_codes": 1,
             "digit_match": 0.8, "predicted_code": "99214", "profile": "paper"}]
    (row,) = summarize(rows)
    assert row["valid"] == {"value": None, "low": None, "high": None, "n": 0}
    assert row["fabricated"]["value"] is None and row["exact_match"]["value"] == 0.0
    # ICD-9-CM has no blocks: same_block is None per case, and so is its rate.
    (icd9,) = summarize([record("Code: 250.01", code="250.00", system="icd9cm")])
    assert icd9["same_block"]["value"] is None and icd9["same_subcategory"]["value"] == 1.0


def test_similarity_means_over_scorable_and_over_all_answered() -> None:
    rows = [
        {**record("Code: E11.9"), "meteor": 1.0, "bertscore": 1.0},
        {**record("Code: E11.65"), "meteor": 0.5, "bertscore": 0.8},
        {**record("Code: E11.99"), "meteor": None, "bertscore": None},  # fabricated: no description
        {**record("no code"), "meteor": None, "bertscore": None},
        {**record(None), "meteor": None, "bertscore": None},  # failed call: in no denominator
    ]
    (row,) = summarize(rows, similarity={"meteor": True, "bertscore": True})
    assert row["scorable"] == 2
    assert row["meteor"]["value"] == pytest.approx(0.75) and row["meteor"]["n"] == 2
    assert row["meteor_all"]["value"] == pytest.approx(1.5 / 4) and row["meteor_all"]["n"] == 4
    assert row["bertscore_all"]["value"] == pytest.approx(1.8 / 4)
    (off,) = summarize(rows, similarity={"meteor": False, "bertscore": False})
    for m in SIMILARITY:
        assert off[m]["value"] is None and off[f"{m}_all"]["value"] is None
    (inferred,) = summarize(rows)  # no flags: a metric with any value was computed
    assert inferred["meteor"] == row["meteor"]


def test_bootstrap_intervals_are_seeded() -> None:
    rows = [{**record("Code: E11.9"), "meteor": v} for v in (0.1, 0.5, 0.9, 0.3, 0.7)]
    a, b = summarize(rows, seed=1), summarize(rows, seed=1)
    assert a == b
    assert a[0]["meteor"]["low"] < 0.5 < a[0]["meteor"]["high"]


def test_digit_positions_as_the_study_tabulates_them() -> None:
    rows = [record("Code: E11.9"), record("Code: E11.65", code="E11.69"), record("Code: E10.9")]
    rates = digit_position_rates(rows)
    # Positions over references with at least k non-dot characters: E11.9 has 4, E11.69 has 5.
    assert [(r["position"], r["n"]) for r in rates] == [(1, 3), (2, 3), (3, 3), (4, 3), (5, 1)]
    assert rates[2]["value"] == pytest.approx(2 / 3)  # E10.9 misses the 3rd character
    assert rates[4]["value"] == 0.0  # 5 vs 9


def test_top_codes_flag_the_prompts_example_and_code_frequency() -> None:
    rows = [record("Code: M24.131", code=c) for c in ("E11.9", "I10", "J45.909")] + [record("Code: E11.9")]
    top = top_codes(rows, "icd10cm")
    assert top[0]["code"] == "M24.131" and top[0]["count"] == 3 and top[0]["is_example"]
    assert top[0]["per_1000"] == pytest.approx(750.0)
    assert not top[1]["is_example"]
    (row,) = summarize(rows)
    assert row["top_codes"] == top
    assert row["code_frequency"]["value"] == pytest.approx((3 * 3 + 1) / 4)  # per prompt: its code's count


def test_hierarchy_and_other_system_rates() -> None:
    rows = [record("Code: E11.9"), record("Code: E11.65"), record("Code: E10.9"), record("Code: 250.00")]
    (row,) = summarize(rows)
    assert row["same_category"]["value"] == pytest.approx(2 / 4)
    assert row["same_block"]["value"] == pytest.approx(3 / 4)
    assert row["hierarchy_levels"] == {"code": 1, "category": 1, "block": 1}
    assert row["other_system"]["value"] == pytest.approx(1 / 4) and row["other_systems"] == {"icd9cm": 1}
    assert row["crosswalk_match"]["value"] == pytest.approx(1 / 4)


def test_grouping_by_more_dimensions() -> None:
    rows = [record("Code: E11.9", variant="exact"), record("Code: E10.9", variant="typo"),
            record("Code: E11.9", model="n", variant="exact")]
    out = summarize(rows, by=("model", "system", "variant"))
    assert [(r["model"], r["variant"], r["exact_match"]["value"]) for r in out] == [
        ("m", "exact", 1.0), ("m", "typo", 0.0), ("n", "exact", 1.0)]
    assert [r["model"] for r in summarize(rows)] == ["m", "n"]


def test_outcomes_follow_the_profile() -> None:
    assert record("Code: T38.3X5A", code="T38.3X5A")["outcome"] == CORRECT
    assert record("Code: T38.3X5A", code="T38.3X5A", profile="paper")["outcome"] == INCORRECT
    assert record("Code: e11.9", profile="paper")["outcome"] == NO_CODE


def test_incorrect_is_a_share_of_the_answered_cases_not_of_failed_calls() -> None:
    # 1 wrong of 2 answers is 50 % incorrect, whatever the 2 failed calls; counting them would report 25 %.
    rows = summarize([record("Code: E11.9"), record("Code: I10"), record(None), record(None)])
    assert rows[0]["incorrect_n"] == 1 and rows[0]["errors"] == 2
    assert rows[0]["incorrect"]["value"] == 0.5 and rows[0]["incorrect"]["n"] == 2


NONE = {"value": None, "low": None, "high": None, "n": 0}


def test_a_mixed_group_counts_each_outcome_in_its_place() -> None:
    rows = [record("Code: E11.9"), record("Code: E11.65"), record("I am not sure"), record("Code: M24.131"),
            record("Code: E11.99"), record(None)]
    (row,) = summarize(rows)
    assert (row["n"], row["answered"], row["errors"], row["correct"], row["no_code"]) == (6, 5, 1, 1, 1)
    assert row["exact_match"]["value"] == pytest.approx(1 / 5) and row["exact_match"]["n"] == 5
    assert row["incorrect_n"] == 4 and row["incorrect"]["value"] == pytest.approx(4 / 5)
    assert row["valid"]["value"] == pytest.approx(3 / 5) and row["fabricated"]["value"] == pytest.approx(1 / 5)
    assert row["billable"]["value"] == pytest.approx(3 / 5)
    assert row["codes_per_answer"]["value"] == pytest.approx(4 / 5) and row["codes_per_answer"]["n"] == 5
    assert row["closeness"] == NONE  # ICD-10-CM has named levels: no closeness values
    assert row["profile"] == "default"
    assert row["example_echo"]["value"] == pytest.approx(1 / 5) and row["example_echo"]["n"] == 5
    assert row["axes"] == [] and row["most_missed_axis"] is None
    assert [t["code"] for t in row["top_codes"]] == ["E11.65", "E11.9", "E11.99", "M24.131"]
    assert row["scorable"] == 3  # answers whose code has a description
    for m in SIMILARITY:  # not computed in this run
        assert row[m] == NONE and row[f"{m}_all"] == NONE
    assert row["hierarchy_levels"] == {"code": 1, "category": 2, "none": 1}  # no code, no level


def test_similarity_given_by_the_run_even_without_values_and_profiles_listed() -> None:
    rows = [record("Code: E11.9"), record("Code: I10", profile="paper")]
    (row,) = summarize(rows, similarity={m: True for m in SIMILARITY})
    assert row["profile"] == "default,paper"
    for m in SIMILARITY:  # computed, but no record has a value: an estimate over nothing, and zeros over all
        assert row[m]["value"] is None and row[m]["n"] == 0
        assert row[f"{m}_all"]["value"] == 0.0 and row[f"{m}_all"]["n"] == 2
    (row,) = summarize([record(None)])
    assert row["profile"] is None and row["answered"] == 0 and row["top_codes"] == []


def test_most_missed_axis_is_the_first_lowest_and_none_when_all_match() -> None:
    axes = [{"axis": "a", "value": 0.9}, {"axis": "b", "value": 0.5}, {"axis": "c", "value": None},
            {"axis": "d", "value": 0.5}, {"axis": "e", "value": 1.0}]
    assert most_missed_axis(axes) == {"axis": "b", "value": 0.5}
    assert most_missed_axis([{"axis": "a", "value": 1.0}, {"axis": "b", "value": None}]) is None
    assert most_missed_axis([]) is None
    assert most_missed_axis([{"axis": "z", "value": 0.0}]) == {"axis": "z", "value": 0.0}


def test_axis_rates_name_each_character_and_stop_at_the_last_axis() -> None:
    answered = [{"digit_positions": [True, False, True]}, {"digit_positions": [True, True, False]}]
    rates = axis_rates(answered, ("Section", "Body system"))
    assert [(r["axis"], r["position"], r["value"], r["n"]) for r in rates] == [
        ("Section", 1, 1.0, 2), ("Body system", 2, 0.5, 2)]
    assert axis_rates(answered, ()) == []


def test_example_echo_is_a_share_of_answers_and_undefined_without_one_system() -> None:
    answered = [{"predicted_code": "84120"}, {"predicted_code": "99213"}, {"predicted_code": None}]
    echo = example_echo(answered, "cpt")
    assert echo["value"] == pytest.approx(1 / 3) and echo["n"] == 3 and 0 < echo["low"] < echo["high"] < 1
    assert example_echo(answered, None) == NONE
    assert example_echo(answered, "no-such-system") == NONE


def test_top_codes_order_limit_and_fields() -> None:
    rows = [record("Code: I10"), record("Code: E11.65"), record("Code: I10"), record("Code: E10.9"),
            record("I do not know")]
    top = top_codes(rows, "icd10cm", limit=2)
    assert [(t["code"], t["count"]) for t in top] == [("I10", 2), ("E10.9", 1)]  # ties by code
    assert top[0] == {"code": "I10", "count": 2, "per_1000": 400.0, "is_example": False, "valid": True,
                      "description": rows[0]["predicted_description"]}
    assert top[0]["description"]
    assert top_codes([], "icd10cm") == []
