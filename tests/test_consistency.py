"""Temperature sweeps and repeats: case dimensions with their own ids, cache keys and tables."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from conftest import BENCHMARK
from pytest_medcode.codesystems import load_system
from pytest_medcode.reports.terminal import render_consistency
from pytest_medcode.results.consistency import pivot, self_consistency
from pytest_medcode.testing.responders import Request
from pytest_medcode.testing.server import ScriptedServer
from pytest_medcode.vocabulary import group_fields

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _record(code: str, repeat: int, predicted: str | None, outcome: str = "correct", **extra) -> dict:
    return {
        "model": "m",
        "system": "icd10cm",
        "code": code,
        "variant": "exact",
        "temperature": None,
        "repeat": repeat,
        "predicted_code": predicted,
        "exact_match": predicted == code,
        "outcome": outcome,
        **extra,
    }


def test_self_consistency_numbers() -> None:
    records = [
        _record("A", 0, "A"),
        _record("A", 1, "A"),
        _record("A", 2, "A"),  # unanimous, right
        _record("B", 0, "B"),
        _record("B", 1, "X"),
        _record("B", 2, "X"),  # majority wrong, pass@3 right
        _record("C", 0, None),
        _record("C", 1, "C"),
        _record("C", 2, None, outcome="error"),
    ]
    [row] = self_consistency(records)
    assert row["repeats"] == 3 and row["cases"] == 3
    assert row["agreement"] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    assert row["unanimous"]["value"] == pytest.approx(1 / 3)
    assert row["majority_exact"]["value"] == pytest.approx(1 / 3)  # C ties: the first answer (no code) wins
    assert row["any_exact"]["value"] == pytest.approx(1.0)
    assert row["exact_per_repeat"] == [pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(1 / 2)]
    assert self_consistency([{**r, "repeat": None} for r in records]) == []
    assert any("agreement" in line for line in render_consistency([row]))


def test_group_fields_and_pivot() -> None:
    assert group_fields([{"variant": "exact", "temperature": None}]) == ("model", "system")
    assert group_fields([{"variant": "typo"}, {"temperature": 0.4}]) == (
        "model",
        "system",
        "variant",
        "temperature",
    )
    results = [
        {"model": "m", "system": "s", "variant": v, "exact_match": {"value": x}}
        for v, x in (("exact", 1.0), ("typo", 0.5))
    ]
    assert pivot(results, "variant") == (["model", "system"], ["exact", "typo"], [("m", "s", [1.0, 0.5])])


def test_sweep_and_repeats_through_the_plugin(pytester: pytest.Pytester) -> None:
    """Two temperatures × two repeats: four distinct requests per code reach the server (the repeat index
    keeps identical prompts apart in the cache); this model answers right only the first time."""
    pairs = load_system("icd10cm").billable_codes()[:2]
    answers = {d: c for c, d in pairs}
    temperatures: list[float] = []

    def first_time_right(request: Request) -> str:
        temperatures.append(request.temperature)
        return f"Code: {answers[request.description]}" if request.attempt == 0 else "Code: Z00.00"

    codes = pytester.path / "codes.csv"
    codes.write_text("code\n" + "\n".join(c for c, _ in pairs) + "\n")
    pytester.makepyfile(test_code_query=BENCHMARK)
    args = [
        "--model",
        "openai/any",
        "--medcode-system",
        "icd10cm",
        "--medcode-codes",
        str(codes),
        "--medcode-temperature",
        "0.2,0.8",
        "--medcode-repeats",
        "2",
        "--medcode-concurrency",
        "1",
        "--medcode-cache",
        str(pytester.path / "cache.sqlite3"),
        "-p",
        "no:cacheprovider",
        "--medcode-no-similarity",
    ]
    with ScriptedServer(first_time_right) as server:
        result = pytester.runpytest("--medcode-api-base", server.base_url, *args)
        assert server.stats.total_requests == 8
        # A second run asks nothing: every (temperature, repeat) answer is in the cache.
        pytester.runpytest("--medcode-api-base", server.base_url, *args)
        assert server.stats.total_requests == 8
    result.assert_outcomes(passed=4, failed=4)
    assert sorted(temperatures) == [0.2] * 4 + [0.8] * 4
    result.stdout.fnmatch_lines(
        [
            "*openai/any*icd10cm*0.2*",
            "exact match by temperature*",
            "self-consistency over repeats*",
            "*openai/any*icd10cm*0.2*2*2*50.0%*",
        ]
    )
    ids = [
        r["case_id"]
        for r in pq.read_table(pytester.path / "reports" / "latest" / "cases.parquet").to_pylist()
    ]
    assert ids[:2] == [
        f"openai/any-icd10cm-{pairs[0][0]}-t0.2-r0",
        f"openai/any-icd10cm-{pairs[0][0]}-t0.2-r1",
    ]
    summary = json.loads((pytester.path / "reports" / "latest" / "summary.json").read_text())
    by_temperature = {row["temperature"]: row for row in summary["consistency"]}
    assert by_temperature[0.2]["exact_per_repeat"] == [1.0, 0.0]
    assert by_temperature[0.8]["agreement"] == 0.5
