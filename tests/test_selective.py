"""Straight-through coding numbers (results/selective.py) against brute force: every threshold tried, every case
binned by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_medcode.results import selective
from pytest_medcode.results.stats import resampled_counts

# Confidences on a coarse grid so ties are common; None: no confidence.
_CONF = st.one_of(st.none(), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0]))
_CASE = st.tuples(_CONF, st.booleans(), st.booleans())  # confidence, correct, abstained
_TARGET = st.sampled_from([0.5, 0.8, 0.95, 0.99, 1.0])


def _brute_coverage(cases: list[tuple[float | None, bool, bool]], target: float) -> tuple[float, float | None]:
    """Every distinct confidence tried as a threshold: the largest coverage at target accuracy, its threshold."""
    n = len(cases)
    eligible = [(c, ok) for c, ok, declined in cases if c is not None and not declined]
    best: tuple[float, float | None] = (0.0, None)
    for t in sorted({c for c, _ in eligible}):
        admitted = [ok for c, ok in eligible if c >= t]
        if sum(admitted) >= target * len(admitted) - 1e-9 and len(admitted) / n > best[0]:
            best = (len(admitted) / n, t)
    return best


@settings(max_examples=300, deadline=None)
@given(st.lists(_CASE, min_size=1, max_size=40), _TARGET)
def test_coverage_at_target_is_the_best_threshold_tried_by_brute_force(cases, target):
    lv = selective.levels(*zip(*cases, strict=True))
    got = selective.coverage_at(lv, target)
    coverage, threshold = _brute_coverage(cases, target)
    assert got.coverage == pytest.approx(coverage)
    assert got.threshold == threshold
    if threshold is not None:  # ties whole: the threshold admits every case of its confidence
        admitted = [ok for c, ok, d in cases if c is not None and not d and c >= threshold]
        assert got.auto_coded == len(admitted)
        assert got.accuracy == pytest.approx(sum(admitted) / len(admitted))


@settings(max_examples=200, deadline=None)
@given(st.lists(_CASE, min_size=1, max_size=40))
def test_curve_area_and_fixed_coverage_against_brute_force(cases):
    lv = selective.levels(*zip(*cases, strict=True))
    n = len(cases)
    eligible = [(c, ok) for c, ok, d in cases if c is not None and not d]
    points = []
    for t in sorted({c for c, _ in eligible}, reverse=True):
        admitted = [ok for c, ok in eligible if c >= t]
        points.append((len(admitted) / n, 1 - sum(admitted) / len(admitted), t))
    curve = selective.risk_coverage(lv)
    assert len(curve) == len(points)
    for got, want in zip(curve, points, strict=True):
        assert got == pytest.approx(want)
    area, previous = 0.0, 0.0
    for coverage, risk, _ in points:  # a step function: each level's risk over the coverage it adds
        area += risk * (coverage - previous)
        previous = coverage
    assert (selective.aurc(lv) is None) == (not points)
    if points:
        assert selective.aurc(lv) == pytest.approx(area)
    for share in (0.3, 0.5, 0.8):
        reaching = [p for p in points if p[0] >= share - 1e-9]
        expected = 1 - reaching[0][1] if reaching else None
        assert selective.accuracy_at_coverage(lv, share) == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=60))
def test_ece_is_the_direct_binning(pairs):
    conf, hit = zip(*pairs, strict=True)
    bins: dict[int, list[tuple[float, bool]]] = {}
    for c, ok in pairs:
        bins.setdefault(min(int(c * 10), 9), []).append((c, ok))
    expected = sum(len(b) / len(pairs) * abs(sum(ok for _, ok in b) / len(b) - sum(c for c, _ in b) / len(b))
                   for b in bins.values())
    got = selective.calibration(conf, hit)
    assert got["ece"] == pytest.approx(expected, abs=1e-12)
    assert [b["n"] for b in got["bins"]] == [len(bins.get(i, [])) for i in range(10)]


def test_resampled_counts_are_seeded_and_draw_every_case():
    counts = np.array([5, 0, 3, 12])
    first = np.concatenate(list(resampled_counts(counts, 50, seed=3)))
    again = np.concatenate(list(resampled_counts(counts, 50, seed=3)))
    assert first.shape == (50, 4) and (first.sum(axis=1) == 20).all()
    assert (first[:, 1] == 0).all()  # a category without cases is never drawn
    assert np.array_equal(first, again)
    many = np.concatenate(list(resampled_counts(np.ones(40, dtype=int), 30, seed=1)))  # the index path
    assert many.shape == (30, 40) and (many.sum(axis=1) == 40).all()


def test_interval_brackets_the_estimate_and_narrows_with_more_cases():
    rng = np.random.default_rng(0)

    def rows(n):
        conf = rng.random(n)
        return selective.levels(list(conf), list(rng.random(n) < conf))

    small, large = rows(400), rows(20_000)
    for lv in (small, large):
        low, high = selective.coverage_interval(lv, 0.9, seed=1)
        assert low <= selective.coverage_at(lv, 0.9).coverage <= high
    width = [(lambda iv: iv[1] - iv[0])(selective.coverage_interval(lv, 0.9, seed=1)) for lv in (small, large)]
    assert width[1] < width[0] / 3
    assert selective.coverage_interval(large, 0.9, seed=1) == selective.coverage_interval(large, 0.9, seed=1)


def test_groups_without_confidence_have_no_numbers_and_a_run_without_any_has_no_rows():
    plain = [{"model": "m", "system": "icd10cm", "outcome": "correct", "exact_match": True}]
    assert selective.selective_rows(plain) == []
    mixed = [*plain, {"model": "lookup", "system": "icd10cm", "outcome": "incorrect", "exact_match": False,
                      "confidence": 0.4, "confidence_source": "coder"}]
    rows = {r["model"]: r for r in selective.selective_rows(mixed, resamples=50)}
    assert rows["m"]["coverage"] is None and rows["m"]["with_confidence"] == 0
    assert rows["lookup"]["coverage"]["95"]["value"] == 0.0  # nothing reaches 95 %: nothing auto-coded
    assert rows["lookup"]["coverage"]["95"]["threshold"] is None


def test_abstained_cases_are_never_auto_coded_and_scored_apart():
    records = [{"model": "p", "system": "cpt", "outcome": "correct", "exact_match": True, "confidence": 0.9},
               {"model": "p", "system": "cpt", "outcome": "correct", "exact_match": True, "confidence": 0.99,
                "abstained": True},
               {"model": "p", "system": "cpt", "outcome": "incorrect", "exact_match": False, "confidence": 0.2},
               {"model": "p", "system": "cpt", "outcome": "error", "exact_match": None, "confidence": None}]
    (row,) = selective.selective_rows(records, resamples=20)
    assert row["n"] == 3  # the failed call is left out
    assert row["coverage"]["95"]["value"] == pytest.approx(1 / 3)
    assert row["coverage"]["95"]["threshold"] == 0.9
    assert row["abstained"]["value"] == pytest.approx(1 / 3)
    assert row["accuracy_abstained"]["value"] == 1.0 and row["accuracy_answered"]["value"] == 0.5


def test_repeat_agreement_fills_only_cases_without_a_confidence():
    def rec(code, repeat, confidence=None):
        return {"model": "m", "system": "icd10cm", "code": "E11.9", "outcome": "correct", "repeat": repeat,
                "predicted_code": code, "confidence": confidence, "confidence_source": None}

    rows = [rec("E11.9", 0), rec("E11.9", 1), rec("E11.8", 2), rec("E11.9", 3, confidence=0.3)]
    assert selective.fill_repeat_agreement(rows) == 3
    assert [r["confidence"] for r in rows] == [0.75, 0.75, 0.25, 0.3]
    assert [r["confidence_source"] for r in rows] == ["repeats", "repeats", "repeats", None]


@pytest.mark.parametrize("target", [0.0, -0.1, 1.01, math.nan])
def test_a_target_outside_zero_one_is_refused(target):
    with pytest.raises(ValueError, match="target accuracy"):
        selective.coverage_at(selective.levels([0.5], [True]), target)


def test_the_straight_through_sentence_and_the_one_warning_per_coder():
    from pytest_medcode.reports import straight_through

    entry = {"target": 0.95, "value": 0.713, "low": 0.689, "high": 0.735, "threshold": 0.8312}
    assert straight_through.coverage_sentence(entry) == \
        "auto-codes 71.3 % (68.9–73.5) of cases at ≥ 95 % accuracy, threshold 0.83"
    assert straight_through.coverage_sentence({**entry, "threshold": None, "value": 0.0}).startswith(
        "auto-codes nothing at ≥ 95 % accuracy")
    records = [{"model": "python:p:f", "confidence_invalid": "1.7"},
               {"model": "python:p:f", "confidence_invalid": "nan"},
               {"model": "lookup", "confidence_invalid": None}]
    (line,) = straight_through.invalid_confidence_lines(records)
    assert line.startswith("warning: python:p:f gave 2 confidence(s) outside [0, 1] or not a number (first: 1.7)")


def test_history_shows_the_share_auto_coded_at_95(tmp_path):
    import json

    from pytest_medcode.reports.history import render_terminal
    from pytest_medcode.runs.history import run_entry

    row = {"model": "lookup", "system": "icd10cm"}
    summary = {"schema_version": 1, "run_id": "r1", "n_cases": 10,
               "results": [{**row, "exact_match": {"value": 0.9, "low": 0.6, "high": 0.98, "n": 10}}],
               "selective": [{**row, "coverage": {"95": {"value": 0.713, "threshold": 0.83}}}]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    entry = run_entry(tmp_path)
    assert entry["points"][0]["coverage@95"] == 0.713
    assert "90.0% (60.0–98.0), auto-codes 71.3% at 95%" in "\n".join(render_terminal([entry]))
