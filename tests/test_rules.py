"""The gate's rules as the options give them (results/rules.py): thresholds and margins parsed into values,
with a one-line error naming the item and why."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pytest_medcode.results.rules import MaxDrop, Threshold, parse_max_drops, parse_thresholds


@pytest.mark.parametrize(
    ("items", "direction", "expected"),
    [
        ("exact_match=0.45", "under", [Threshold("exact_match", 0.45, "under")]),
        (["valid=90%", "icd10cm:exact_match=0.3"], "under",
         [Threshold("valid", 0.9, "under"), Threshold("exact_match", 0.3, "under", "icd10cm")]),
        ("fabricated=0.1", "over", [Threshold("fabricated", 0.1, "over")]),
        ("exact_match=0.4,exact_match=0.5", "under", [Threshold("exact_match", 0.5, "under")]),
        (" Exact-Match = 0.4 ", "under", [Threshold("exact_match", 0.4, "under")]),
    ],
)
def test_parse_thresholds(items: Any, direction: str, expected: list[Threshold]) -> None:
    assert list(parse_thresholds(items, direction, ["icd10cm", "icd9cm"])) == expected


@pytest.mark.parametrize(
    ("items", "direction", "message"),
    [
        ("exact_mtch=0.4", "under", "unknown metric 'exact_mtch'"),
        ("fabricated=0.1", "under", "lower-is-better; limit it with --medcode-fail-over fabricated=0.1"),
        ("exact_match=0.9", "over", "higher-is-better; limit it with --medcode-fail-under"),
        ("exact_match", "under", "expected METRIC=LIMIT"),
        ("exact_match=1.5", "under", "must be between 0 and 1"),
        ("exact_match=2pp", "under", "write a fraction, e.g. 0.45, or a percentage"),
        ("exact_match=abc", "under", "is not a number"),
        ("icd11:exact_match=0.4", "under", "unknown system 'icd11'"),
        (":exact_match=0.4", "under", "empty system"),
    ],
)
def test_parse_thresholds_rejects(items: str, direction: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_thresholds(items, direction, ["icd10cm"])


def test_parse_max_drops() -> None:
    expected = (MaxDrop("exact_match", 0.02), MaxDrop("meteor", 0.02))
    assert parse_max_drops("exact_match=2pp,meteor=0.02") == expected
    assert parse_max_drops(["digit_match=0.5pp"])[0].margin == pytest.approx(0.005)
    assert MaxDrop("exact_match", 0.02).text == "exact_match=2pp"
    for bad, message in (("exact_match=2%", "percentage points"), ("exact_match=1", "below 1"),
                         ("icd10cm:exact_match=2pp", "every system"), ("x=2pp", "unknown metric")):
        with pytest.raises(ValueError, match=message):
            parse_max_drops(bad)


@pytest.mark.parametrize(
    ("parse", "item", "message"),
    [
        ("under", "exact_match=0.4=0.5", "'exact_match=0.4=0.5': '0.4=0.5' is not a number"),
        ("under", "exact_match=", "'exact_match=': expected METRIC=LIMIT or SYSTEM:METRIC=LIMIT, e.g. "),
        ("under", "icd11:exact_match=0.4", "'icd11:exact_match=0.4': unknown system 'icd11'; choose from icd10cm, "
                                           "icd9cm"),
        ("under", "exact_mtch=0.4", "'exact_mtch=0.4': unknown metric 'exact_mtch'; choose from exact_match, valid, "),
        ("under", "exact_match=1.5", "'exact_match=1.5': must be between 0 and 1 (or 0% and 100%), got '1.5'"),
        ("drop", "exact_match=2pp=3", "'exact_match=2pp=3': '2pp=3' is not a number"),
        ("drop", "exact_match= ", "'exact_match=': expected METRIC=MARGIN, e.g. exact_match=2pp or exact_match=0.02"),
        ("drop", "exact_mtch=2pp", "'exact_mtch=2pp': unknown metric 'exact_mtch'; choose from exact_match, "),
        ("drop", "exact_match=abc", "'exact_match=abc': 'abc' is not a number"),
    ],
)
def test_bad_limits_and_margins_say_which_item_and_why(parse: str, item: str, message: str) -> None:
    def parsed() -> object:
        return parse_max_drops(item) if parse == "drop" else parse_thresholds(item, parse, ["icd9cm", "icd10cm"])

    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parsed()


def test_margins_are_shown_in_percentage_points_as_given() -> None:
    assert MaxDrop("exact_match", 0.005).text == "exact_match=0.5pp"
    assert MaxDrop("digit_match", 0.0125).text == "digit_match=1.25pp"
    assert MaxDrop("meteor", 0.0125).text == "meteor=0.0125"  # similarity scores are not percentages
