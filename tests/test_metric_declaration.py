"""Adding a metric is one entry in ``METRICS`` plus its per-case function: the entry alone makes it a value of
every results row, a row of the error-analysis table (and so of the terminal, report.md and report.html), and a
name the gate's rules take."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from pytest_medcode.codesystems import load_system
from pytest_medcode.reports import html, markdown, terminal
from pytest_medcode.reports.tables import build_tables
from pytest_medcode.results.aggregate import summarize, summarize_group
from pytest_medcode.results.gate import evaluate
from pytest_medcode.results.records import score_record
from pytest_medcode.results.rules import parse_max_drops, parse_thresholds
from pytest_medcode.results.stats import bootstrap_mean, wilson
from pytest_medcode.scoring.codes import unscored_fields
from pytest_medcode.scoring.hierarchy import FLAG_LEVELS
from pytest_medcode.vocabulary import (
    BOOTSTRAP_MEAN,
    ERROR,
    METRICS,
    POOLED,
    POOLED_RATIO,
    RATE,
    SCORE,
    WILSON,
    Metric,
    answered,
    judged_metrics,
)

ANSWERS = ["Code: E11.9", "Code: E11.65", "E11.9", "I would say the code is E11.9", "no idea", None]


def short_answer(record: Mapping[str, Any]) -> bool | None:
    """The new metric's per-case function: the answer has at most 12 characters (None: the call failed)."""
    raw = record.get("raw_answer")
    return None if record["outcome"] == ERROR else len(raw or "") <= 12


def answer_brevity(record: Mapping[str, Any]) -> float | None:
    """A score per case: 1 for an empty answer, falling towards 0 as the answer grows."""
    return None if record["outcome"] == ERROR else 1.0 / (1 + len(record.get("raw_answer") or "") / 10)


def scored(answers: list[str | None], per_case: Any, model: str = "m") -> list[dict[str, Any]]:
    """Real records (each answer scored against the real ICD-10-CM table), with the new metric's field filled
    by its per-case function, as scoring fills every other metric's field."""
    system = load_system("icd10cm")
    out = []
    for i, answer in enumerate(answers):
        base: dict[str, Any] = {"model": model, "system": "icd10cm", "code": ["E11.9", "E11.65"][i % 2],
                                "description": "d", "raw_answer": answer, "repeat": i}
        rec = {**base, "outcome": ERROR, **unscored_fields()} if answer is None else score_record(base, system, answer)
        rec[per_case.__name__] = per_case(rec)
        out.append(rec)
    return out


CASES = [
    pytest.param(Metric("short_answer", RATE, "Short answer, % (95% CI)", row=65), short_answer, id="rate"),
    pytest.param(Metric("answer_brevity", SCORE, "Answer brevity, mean (95% CI)", row=65, shown="score"),
                 answer_brevity, id="score"),
]


@pytest.mark.parametrize(("new", "per_case"), CASES)
def test_one_entry_makes_a_metric_summarized_tabled_shown_and_gated(
    monkeypatch: pytest.MonkeyPatch, new: Metric, per_case: Any
) -> None:
    records = scored(ANSWERS, per_case)
    with pytest.raises(ValueError, match=f"unknown metric '{new.name}'"):
        parse_thresholds(f"{new.name}=0.5", "under")  # before the entry: no such metric

    monkeypatch.setitem(METRICS, new.name, new)  # the one entry

    # results: the group's estimate, as its kind says (a Wilson share or a bootstrap mean over answered cases)
    values = [per_case(r) for r in answered(records)]
    expected = (wilson(sum(values), len(values)) if new.kind == RATE else bootstrap_mean(values)).to_dict()
    row = summarize_group(records)
    assert row[new.name] == expected
    assert expected["value"] is not None and 0 < expected["value"] < 1 and expected["n"] == 5
    (summarized,) = summarize(records)
    assert summarized[new.name] == expected

    # tables: its row, titled and shown as declared, placed by its rank (between matched length and digits)
    (table,) = build_tables([summarized])["error_analysis"]
    keys = [r["key"] for r in table["rows"]]
    assert keys.index("length_match") < keys.index(new.name) < keys.index("digit_match")
    (mine,) = [r for r in table["rows"] if r["key"] == new.name]
    assert (mine["title"], mine["kind"], mine["cells"]) == (new.title, new.shown, [expected])

    # the terminal, report.md and report.html render that row
    summary = {"results": [summarized], "tables": build_tables([summarized])}
    assert any(line.startswith(new.title) for line in terminal.render_summary(summary, width=200))
    assert f"| {new.title} |" in markdown.render(records, summary)
    assert f"<tr><td>{new.title}</td>" in html.render(records, summary)

    # the gate: a limit on it by name, judged on the records' field
    (limit,) = parse_thresholds(f"{new.name}=0.9", "under")
    failing = evaluate(records, thresholds=[limit], max_error_rate=1.0)  # the one failed call is not the point
    (check,) = [c for c in failing.checks if c.metric == new.name]
    assert not check.passed and check.observed == pytest.approx(expected["value"])
    assert evaluate(records, thresholds=parse_thresholds(f"{new.name}=0.1", "under"), max_error_rate=1.0).passed

    # ...and a margin against a baseline: the same cases, now all answered at length, are a worsening
    worse = scored(["I would say the code is E11.9 (type 2 diabetes)" if a is not None else None for a in ANSWERS]
                   * 4, per_case)
    base = scored(ANSWERS * 4, per_case)
    (drop,) = parse_max_drops(f"{new.name}=1pp")
    verdict = evaluate(worse, base, max_drops=[drop], max_error_rate=1.0)
    (regression,) = [c for c in verdict.checks if c.kind == "regression" and c.metric == new.name]
    assert not regression.passed
    assert evaluate(base, base, max_drops=[drop], max_error_rate=1.0).passed


def test_a_shown_only_metric_reads_its_value_from_the_record_and_the_gate_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``value=`` computes a case's value from its record (no field to fill); such a metric is shown, not judged."""
    records = scored(ANSWERS, short_answer)
    for r in records:
        del r["short_answer"]
    monkeypatch.setitem(METRICS, "long_answer", Metric(
        "long_answer", RATE, "Long answer, %", row=155, judged=False,
        value=lambda r: None if r["outcome"] == ERROR else not short_answer(r)))
    row = summarize_group(records)
    assert row["long_answer"] == wilson(1, 5).to_dict()  # one answer of the five is longer than 12 characters
    (table,) = build_tables([{"model": "m", "system": "icd10cm", **row}])["error_analysis"]
    assert table["rows"][-1]["key"] == "long_answer"  # the highest rank: the last row
    with pytest.raises(ValueError, match="unknown metric 'long_answer'"):
        parse_thresholds("long_answer=0.5", "over")


def test_results_rows_list_every_code_query_metric_in_the_declared_order() -> None:
    row = summarize_group(scored(ANSWERS, short_answer))
    declared = [name for name, m in METRICS.items() if not m.documents]
    assert [key for key in row if key in METRICS] == declared


def test_each_kind_names_its_estimate_and_the_gate_takes_only_judged_metrics() -> None:
    assert {m.kind: m.estimate for m in METRICS.values()} == {RATE: WILSON, SCORE: BOOTSTRAP_MEAN,
                                                               POOLED: POOLED_RATIO}
    for name in ("incorrect", "code_frequency", "example_echo", "same_block"):
        assert name in METRICS and name not in judged_metrics()
        with pytest.raises(ValueError, match=f"unknown metric '{name}'; choose from exact_match, valid, "):
            parse_thresholds(f"{name}=0.5", "under")
    assert set(judged_metrics()) >= {"exact_match", "fabricated", "digit_match", "meteor", "f1", "micro_f1"}


def test_rows_have_distinct_ranks_and_every_shared_level_is_a_metric() -> None:
    ranks = [m.row for m in METRICS.values() if m.row is not None]
    assert len(ranks) == len(set(ranks))
    assert all(f"same_{lv}" in METRICS for lv in FLAG_LEVELS)
    assert all(m.title for m in METRICS.values())


def test_a_pooled_metric_of_code_queries_is_refused_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METRICS, "pooled_thing", Metric("pooled_thing", POOLED))
    with pytest.raises(ValueError, match="pooled_thing: a pooled metric is summarized over documents"):
        summarize_group(scored(ANSWERS, short_answer))
