"""report.html's case explorer text made as the records arrive: the same page as made at the end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pytest_medcode.reports import html
from pytest_medcode.reports.explorer import EXPLORER_ANSWER_LIMIT, ExplorerText, explorer_data
from pytest_medcode.reports.page import json_script
from pytest_medcode.runs.folder import load_run
from pytest_medcode.vocabulary import ERROR


def _records() -> list[dict[str, object]]:
    essay = "Consider <b>laterality</b>\x07 and api_key=sk-abcdefghijklmnop " * 20
    base = {"model": "m1", "system": "icd10cm", "variant": None, "code": "E11.9",
            "description": "Type 2 diabetes mellitus without complications", "outcome": "exact",
            "predicted_code": "E11.9", "predicted_description": "Type 2 diabetes mellitus without complications",
            "raw_answer": "Code: E11.9", "answer_chars": 11, "error": None}
    return [
        base,
        {**base, "model": "m2\x1b[31m", "predicted_code": "E11.65", "outcome": "incorrect",
         "predicted_description": "Type 2 diabetes mellitus with hyperglycemia", "raw_answer": essay,
         "answer_chars": len(essay)},
        {**base, "variant": "typo", "outcome": ERROR, "raw_answer": None, "predicted_code": None,
         "predicted_description": None, "error": "HTTP 401: bearer sk-secretsecretsecret rejected"},
        {**base, "code": "I10", "description": "Essential (primary) hypertension", "predicted_code": "I10",
         "predicted_description": "Essential (primary) hypertension", "raw_answer": "Code: I10"},
        base,
    ]


def test_text_made_in_any_order_gives_the_same_explorer_data() -> None:
    records = _records()
    warm = ExplorerText()
    for record in reversed(records):  # workers' reports arrive in any order
        warm.add(record)
    cold = explorer_data(records)
    assert explorer_data(records, warm) == cold
    assert json_script(explorer_data(records, warm), "x") == json_script(cold, "x")
    answers = [row[8] for row in cold["rows"]]
    assert "sk-abcdefghijklmnop" not in answers[1] and "\x07" not in answers[1]
    assert len(answers[1]) < len(records[1]["raw_answer"]) and len(records[1]["raw_answer"]) > EXPLORER_ANSWER_LIMIT
    assert answers[2].startswith("(call failed)") and "sk-secretsecretsecret" not in answers[2]
    assert "\x1b" not in "".join(cold["models"])


def test_the_sessions_page_is_the_page_made_from_the_run_folder(lookup_run_folder: Callable[..., Path]) -> None:
    """The session renders report.html with the text it made as the records arrived; rendered again from
    cases.parquet and summary.json alone (as ``medcode report`` does), the page is byte for byte the same."""
    folder = lookup_run_folder("--medcode-system", "icd10cm", "--medcode-sample", "1000")
    run = load_run(folder)
    summary = dict(run.summary or {})
    seed = int((summary.get("config") or {}).get("seed") or 0)
    assert html.render(run.records, summary, seed).encode() == (folder / "report.html").read_bytes()
