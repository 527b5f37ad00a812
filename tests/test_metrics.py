"""The study's metrics end to end: the end-of-session similarity pass, the paper-style tables, the profiles,
``medcode rescore``, and real runs through pytester (offline: no network, the bundled BERTScore model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from conftest import BENCHMARK
from pytest_medcode import cli
from pytest_medcode.codesystems import load_system
from pytest_medcode.reports.tables import build_tables, format_cell, merge_error_tables, render_table
from pytest_medcode.reports.terminal import render_summary
from pytest_medcode.results.aggregate import summarize
from pytest_medcode.runs.folder import SCHEMA_VERSION
from pytest_medcode.scoring.session_metrics import add_code_frequency, describe, score_similarity
from pytest_medcode.scoring.similarity import (
    MeteorScorer,
    SimilarityUnavailable,
    f1_from_precision_recall,
    greedy_match,
)
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SLIDE_REF = "diabetes mellitus without complication"
SLIDE_CAND = "diabetes without complications"


class FakeScorer:
    """Stands in for BERTScore: records what it was asked, answers a fixed score (1.0 for identical text)."""

    label = "fake"
    model_name = "fake-model"

    def __init__(self, value: float = 0.5, fail: Exception | None = None) -> None:
        self.value, self.fail, self.calls = value, fail, []

    def score(self, pairs):
        self.calls.append(list(pairs))
        if self.fail is not None:
            raise self.fail
        return [1.0 if r == c else self.value for r, c in pairs]


def rec(code: str, predicted_description: str | None, outcome: str = "incorrect", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "system": "icd10cm", "code": code, "description": "what the model was asked",
            "predicted_description": predicted_description, "outcome": outcome, **extra}


def systems(name: str):
    return load_system(name)


# -- golden examples from the presentation ---------------------------------------------------------------------


def test_bertscore_arithmetic_from_the_slide() -> None:
    """Candidate tokens (diabetes, without, complications) × reference tokens (diabetes, mellitus, without,
    complication): P = (1+1+0.98)/3, R = (1+1+0.98+0.40)/4, F1 ≈ 0.91."""
    cosines = [
        [1.00, 0.40, 0.10, 0.10],
        [0.10, 0.20, 1.00, 0.10],
        [0.10, 0.30, 0.10, 0.98],
    ]
    p, r, f1 = greedy_match(cosines)
    assert p == pytest.approx((1 + 1 + 0.98) / 3) and round(p, 2) == 0.99
    assert r == pytest.approx((1 + 1 + 0.98 + 0.40) / 4) and abs(r - 0.85) <= 0.005 + 1e-9  # 0.845 → "0.85"
    assert f1 == pytest.approx(f1_from_precision_recall(p, r)) and round(f1, 2) == 0.91


def test_meteor_slide_example_through_the_session_pass() -> None:
    """The session pass scores the slide's pair as METEOR does: 0.6553, the same with and without WordNet
    (no synonym is needed: 'complications' meets 'complication' through its Porter stem)."""
    records = [rec("E11.9", SLIDE_CAND)]
    fake = FakeScorer()
    report = score_similarity(records, lambda name: None, meteor=MeteorScorer(use_wordnet=False), bertscore=fake)
    # No table: the reference is the case's own description.
    assert fake.calls == [[("what the model was asked", SLIDE_CAND)]]
    records = [{**rec("X", SLIDE_CAND), "description": SLIDE_REF}]
    score_similarity(records, lambda name: None, meteor=MeteorScorer(use_wordnet=False), bertscore=fake)
    assert records[0]["meteor"] == pytest.approx(0.6553, abs=1e-4)
    assert report.scorable == 1


# -- the end-of-session pass -----------------------------------------------------------------------------------


def test_similarity_pass_scores_what_resolves_and_nothing_else() -> None:
    icd10 = load_system("icd10cm")
    ref = icd10.lookup("E11.9").description
    records = [
        rec("E11.9", ref, "correct"),  # identical → 1.0
        rec("E11.9", icd10.lookup("E11.65").description),
        rec("E11.9", icd10.lookup("E11.65").description),  # the same pair again
        rec("E11.9", None),  # fabricated / no description: not scorable
        rec("E11.9", None, "no_code"),
        rec("E11.9", ref, "error"),  # failed call: never scored
    ]
    fake = FakeScorer(0.7)
    report = score_similarity(records, systems, meteor=MeteorScorer(use_wordnet=False), bertscore=fake)
    assert [r["bertscore"] for r in records] == [1.0, 0.7, 0.7, None, None, None]
    assert records[0]["meteor"] == 1.0 and 0 < records[1]["meteor"] < 1 and records[3]["meteor"] is None
    # The reference is the table's description of the reference code, not what the case carried.
    assert all(pair[0] == ref for pair in fake.calls[0])
    assert len(fake.calls) == 1  # one call for the whole session
    assert (report.scorable, report.pairs) == (3, 2)
    assert report.available() == {"meteor": True, "bertscore": True}
    assert report.bertscore.model == "fake-model"


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (SimilarityUnavailable("BERTScore model 'x' could not be loaded: OSError: nope"), "could not be loaded"),
        (ImportError("No module named 'bert_score'"), "not installed"),
        (RuntimeError("CUDA out of memory\nsecond line"), "RuntimeError: CUDA out of memory"),
    ],
)
def test_an_unavailable_metric_is_one_line_and_the_others_still_run(failure: Exception, reason: str) -> None:
    records = [rec("E11.9", "Type 2 diabetes mellitus with hyperglycemia")]
    report = score_similarity(records, systems, meteor=MeteorScorer(use_wordnet=False),
                              bertscore=FakeScorer(fail=failure))
    assert records[0]["bertscore"] is None and records[0]["meteor"] is not None
    assert report.available() == {"meteor": True, "bertscore": False}
    (_meteor_line, bert_line) = report.lines()
    assert bert_line.startswith("BERTScore unavailable: ") and reason in bert_line and "\n" not in bert_line


def test_similarity_off_writes_empty_columns_and_says_so() -> None:
    records = [rec("E11.9", "anything", meteor=0.3)]
    report = score_similarity(records, systems, enabled=False, bertscore=FakeScorer())
    assert records[0]["meteor"] is None and records[0]["bertscore"] is None
    assert report.lines() == ["description similarity: off (--medcode-no-similarity)"]
    assert describe(None) == []


def test_code_frequency_per_group() -> None:
    records = [{"model": m, "system": "icd10cm", "outcome": o, "predicted_code": c} for m, o, c in [
        ("a", "incorrect", "M24.131"), ("a", "incorrect", "M24.131"), ("a", "correct", "E11.9"),
        ("b", "incorrect", "M24.131"), ("a", "no_code", None), ("a", "error", None)]]
    add_code_frequency(records)
    assert [r["code_frequency"] for r in records] == [2, 2, 1, 1, None, None]


# -- the tables ------------------------------------------------------------------------------------------------


def _results() -> list[dict[str, Any]]:
    icd10, icd9 = load_system("icd10cm"), load_system("icd9cm")
    from pytest_medcode.results.records import score_record

    rows = []
    for model, answers in (("gpt-x", ["Code: E11.9", "Code: M24.131", "Code: E11.65"]),
                           ("llama-x", ["Code: M24.131", "Code: M24.131", "I think E11.99"])):
        for answer in answers:
            base = {"model": model, "system": "icd10cm", "code": "E11.9", "description": "d"}
            rows.append(score_record(base, icd10, answer))
        base = {"model": model, "system": "icd9cm", "code": "250.00", "description": "d"}
        rows.append(score_record(base, icd9, "Code: 250.00" if model == "gpt-x" else "Code: 045.10"))
    score_similarity(rows, systems, meteor=MeteorScorer(use_wordnet=False), bertscore=FakeScorer(0.6))
    return summarize(rows)


def test_paper_style_tables_as_data() -> None:
    tables = build_tables(_results())
    exact = tables["exact_match"]
    assert [c["title"] for c in exact["columns"]] == ["ICD-10-CM", "ICD-9-CM"]
    assert [r["title"] for r in exact["rows"]] == ["gpt-x", "llama-x"]
    assert exact["rows"][0]["cells"][0]["value"] == pytest.approx(1 / 3)
    sim = tables["similarity"]
    assert [c["key"] for c in sim["columns"]] == ["meteor:icd10cm", "meteor:icd9cm", "bertscore:icd10cm",
                                                  "bertscore:icd9cm"]
    assert sim["rows"][0]["cells"][2]["value"] == pytest.approx((1.0 + 0.6 + 0.6) / 3)
    # llama-x: M24.131 twice (0.6 each), E11.99 fabricated (no description, counts 0).
    assert tables["similarity_all"]["rows"][1]["cells"][2]["value"] == pytest.approx(1.2 / 3)
    errors = {t["system"]: t for t in tables["error_analysis"]}
    keys = [r["key"] for r in errors["icd10cm"]["rows"]]
    assert keys[:9] == ["incorrect", "valid", "fabricated", "outdated", "not_yet_valid", "codes_per_answer",
                        "code_frequency", "length_match", "digit_match"]
    assert "same_block" in keys and "same_block" not in [r["key"] for r in errors["icd9cm"]["rows"]]
    incorrect = errors["icd10cm"]["rows"][0]["cells"]
    assert format_cell(incorrect[1], "count_percent") == "3 (100.0%)"
    top = {(t["model"], t["system"]): t for t in tables["top_codes"]}
    assert top[("llama-x", "icd10cm")]["codes"][0]["code"] == "M24.131"
    assert top[("llama-x", "icd9cm")]["codes"][0]["is_example"]  # 045.10: the ICD9CM prompt's example
    json.dumps(tables)  # plain data


def test_tables_render_as_text() -> None:
    results = _results()
    tables = build_tables(results)
    lines = render_table(tables["exact_match"])
    assert lines[0] == "Exact match, % (95% CI)"
    assert "33.3% (6.1–79.2)" in lines[3]
    assert merge_error_tables(tables["error_analysis"]) is None  # two models: one table per system
    one = build_tables([r for r in results if r["model"] == "gpt-x"])
    merged = merge_error_tables(one["error_analysis"])
    assert [c["title"] for c in merged["columns"]] == ["ICD-10-CM", "ICD-9-CM"]
    text = "\n".join(render_summary({"results": results, "tables": tables, "similarity": None}))
    assert "Error analysis: ICD-10-CM" in text and "Error analysis: ICD-9-CM" in text
    assert "M24.131* 667" in text  # llama-x returned the prompt's example for 2 of 3 prompts
    assert format_cell({"value": 0.5934, "low": 0.585, "high": 0.602}, "score") == "0.593 (0.585–0.602)"
    assert format_cell(None, "percent") == "-"


# -- real runs -------------------------------------------------------------------------------------------------

OFFLINE = {  # no network: the hub is off and every proxy points nowhere (the loopback server is exempt)
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
}


def _codes(pytester: pytest.Pytester, codes: list[str]) -> Path:
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(codes) + "\n")
    return path


def _run_folder(pytester: pytest.Pytester) -> Path:
    return (pytester.path / "reports" / "latest").resolve()


CODES = ["E11.9", "E11.65", "I10", "T38.3X5A"]


def _responder(wrong: dict[str, str]):
    """A model that knows CODES, except the answers in ``wrong`` (code → answer text)."""
    icd10 = load_system("icd10cm")
    by_description = {icd10.lookup(c).description: wrong.get(c, f"Code: {c}") for c in CODES}
    return lambda request: by_description.get(request.description, "Code: M24.131")


def test_default_run_reports_meteor_and_bertscore_offline(pytester: pytest.Pytester, monkeypatch) -> None:
    """The default run with no network: the lookup coder (identical descriptions → 1.0) beside a model that
    gets one code wrong (a real BERTScore from the bundled model, below 1)."""
    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    pytester.makepyfile(test_code_query=BENCHMARK)
    with ScriptedServer(_responder({"E11.9": "Code: E11.65"})) as server:
        result = pytester.runpytest(
            "--model", "lookup", "--model", "openai/x", "--medcode-api-base", server.base_url,
            "--medcode-system", "icd10cm", "--medcode-codes", str(_codes(pytester, CODES)), "-p", "no:cacheprovider",
        )
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines([
        "*pytest-medcode*", "scoring profile: default", "METEOR: METEOR*",
        "BERTScore: BERTScore F1 (sentence-transformers/all-MiniLM-L6-v2*)",
        "Exact match, % (95% CI)", "METEOR / BERTScore, mean (95% CI)*", "Error analysis: ICD-10-CM",
    ])
    assert "unavailable" not in result.stdout.str() and "Traceback" not in result.stdout.str()
    cases = pq.read_table(_run_folder(pytester) / "cases.parquet").to_pylist()
    lookup = [r for r in cases if r["model"] == "lookup"]
    assert lookup and all(r["meteor"] == 1.0 and r["bertscore"] == 1.0 for r in lookup)  # identical → 1.0
    (wrong,) = [r for r in cases if r["model"] == "openai/x" and not r["exact_match"]]
    assert 0.0 < wrong["bertscore"] < 1.0 and 0.0 < wrong["meteor"] < 1.0
    # E11.65 for E11.9: the same category; and the model returned E11.65 twice (here and for E11.65 itself).
    assert wrong["hierarchy_level"] == "category" and wrong["code_frequency"] == 2
    summary = json.loads((_run_folder(pytester) / "summary.json").read_text())
    assert summary["similarity"]["bertscore"]["available"] is True
    assert summary["similarity"]["bertscore"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"exact_match", "similarity", "similarity_all", "error_analysis", "top_codes"} <= set(summary["tables"])
    row = {r["model"]: r for r in summary["results"]}["openai/x"]
    assert row["bertscore"]["n"] == 4 and 0.0 < row["bertscore"]["value"] < 1.0


def test_a_model_that_cannot_load_is_one_line_not_a_traceback(pytester: pytest.Pytester, monkeypatch) -> None:
    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    pytester.makepyfile(test_code_query=BENCHMARK)
    with ScriptedServer(_responder({"E11.9": "Code: E11.65"})) as server:
        result = pytester.runpytest(
            "--model", "openai/x", "--medcode-api-base", server.base_url, "--medcode-system", "icd10cm",
            "--medcode-codes", str(_codes(pytester, CODES)), "-p", "no:cacheprovider",
            "--medcode-bertscore-model", str(pytester.path / "no-such-model"),
        )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["METEOR: METEOR*", "BERTScore unavailable: BERTScore model*could not be loaded*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    cases = pq.read_table(_run_folder(pytester) / "cases.parquet").to_pylist()
    assert all(r["bertscore"] is None for r in cases) and all(r["meteor"] is not None for r in cases)


def test_paper_profile_run_then_rescore_under_the_default_profile(pytester: pytest.Pytester) -> None:
    """One set of raw answers, two scorings: the run under the paper profile, then `medcode rescore` with no
    model call. T38.3X5A is cut to T38.3X by the paper's pattern; a lower-case answer is not read at all."""
    pytester.makepyfile(test_code_query=BENCHMARK)
    with ScriptedServer(_responder({"I10": "code: i10"})) as server:
        result = pytester.runpytest(
            "--model", "openai/x", "--medcode-api-base", server.base_url, "--medcode-system", "icd10cm",
            "--medcode-codes", str(_codes(pytester, CODES)), "-p", "no:cacheprovider", "--medcode-profile", "paper",
            "--medcode-no-similarity",
        )
        asked = server.stats.total_requests
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["scoring profile: paper", "description similarity: off (--medcode-no-similarity)"])
    run = _run_folder(pytester)
    paper = {r["code"]: r for r in pq.read_table(run / "cases.parquet").to_pylist()}
    assert paper["T38.3X5A"]["predicted_code"] == "T38.3X" and paper["T38.3X5A"]["valid"] is False
    assert paper["I10"]["outcome"] == "no_code" and paper["I10"]["fabricated"] is True
    assert {r["profile"] for r in paper.values()} == {"paper"} and paper["E11.9"]["meteor"] is None
    before = (run / "cases.parquet").read_bytes()

    assert cli.main(["rescore", str(run), "--profile", "default", "--no-similarity"]) == 0
    assert (run / "cases.parquet").read_bytes() == before  # the original run is untouched
    rescored = run.parent / f"{run.name}-default"
    default = {r["code"]: r for r in pq.read_table(rescored / "cases.parquet").to_pylist()}
    assert all(r["exact_match"] for r in default.values()) and {r["profile"] for r in default.values()} == {"default"}
    summary = json.loads((rescored / "summary.json").read_text())
    assert summary["rescored_from"] == str(run) and summary["config"]["profile"] == "default"
    assert summary["results"][0]["exact_match"]["value"] == 1.0
    assert asked == 4  # rescoring asked nothing
    assert cli.main(["rescore", str(run), "--profile", "paper", "--out", str(run)]) == 2  # never overwrite


def test_bad_profile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest("--medcode-profile", "authors")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--medcode-profile 'authors': choose from default, paper*"])


def test_show_prints_the_paper_tables_of_a_saved_run(tmp_path: Path, capsys) -> None:
    results = _results()
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "results": results,
                                                       "tables": build_tables(results),
                                                       "similarity": None, "config": {"profile": "default"}}))
    assert cli.main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "scoring profile: default" in out and "Exact match, % (95% CI)" in out and "Error analysis" in out
