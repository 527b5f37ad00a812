"""Per-case code metrics, on the study's definitions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_medcode.codesystems import load_system
from pytest_medcode.scoring.codes import code_metrics, digit_match, digit_positions, length_match


def test_seed_exact_match_example() -> None:
    reference = ["A123", "B456", "C789", "D012", "E345"]
    predicted = ["A123", "B456", "C788", "D012", "E346"]
    assert sum(r == p for r, p in zip(reference, predicted)) / len(reference) == 0.6


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
