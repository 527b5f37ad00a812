"""Straight-through coding of documents: a confidence per predicted code (LLM log-probabilities, a ``python:``
product's ``Reply.code_confidences``, lookup's match scores), the precision–coverage curve over predicted codes and
the share of documents auto-coded at a target precision — against brute force on generated data, with ties and
coders that give none — and real runs: the scripted server's per-code log-probabilities through the real openai
client, and ``python:`` products, in every report."""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import cases_of, summary_of
from pytest_medcode.api import Question, Reply
from pytest_medcode.asking.coders.logprobs import code_probabilities, confidences_of
from pytest_medcode.asking.coders.lookup import LookupCoder
from pytest_medcode.asking.engine import CODE_CONFIDENCES, CONFIDENCE_INVALID, confidence_usage
from pytest_medcode.codesystems import CodeSystem, load_system
from pytest_medcode.dataset.document_cases import synthetic_documents
from pytest_medcode.reports import document_section
from pytest_medcode.reports.straight_through import document_row_lines, document_section_lines
from pytest_medcode.results.document_selective import (
    auto_coded_at,
    auto_coded_intervals,
    code_levels,
    document_confidence,
    document_levels,
    document_selective_rows,
    precision_coverage,
)
from pytest_medcode.scoring.code_sets import predicted_confidences, score_document
from pytest_medcode.testing.responders import Request, token_logprobs
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BENCHMARK = "def test_document_coding(medcode_document, medcode):\n    medcode.check_document(medcode_document)\n"
FAST = ("-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-report-dir", "reports")


@pytest.fixture(scope="module")
def icd10() -> CodeSystem:
    return load_system("icd10cm")


# -- generated documents: (code confidences, which codes are right, declined) ------------------------------------

#: Few distinct values, so ties are common; None is a code the coder gave no confidence for.
CONFIDENCES = st.sampled_from([None, 0.2, 0.5, 0.5, 0.7, 0.9, 0.9, 1.0])
CODES = st.lists(st.tuples(CONFIDENCES, st.booleans()), max_size=4)
#: A document: its codes and whether the coder declined it (now and then).
DOCUMENTS = st.lists(st.tuples(CODES, st.sampled_from([False] * 7 + [True])), min_size=1, max_size=25)


def _records(documents: list[tuple[list[tuple[float | None, bool]], bool]], model: str = "m") -> list[dict[str, Any]]:
    """Document records as the session makes them: predicted codes, the gold set (the right ones and one the coder
    missed), the counts, and the confidences aligned with the predicted codes."""
    out = []
    for i, (codes, declined) in enumerate(documents):
        predicted = [f"D{i}C{j}" for j in range(len(codes))]
        gold = [p for p, (_, right) in zip(predicted, codes, strict=True) if right] + [f"D{i}MISSED"]
        tp = sum(right for _, right in codes)
        out.append({"kind": "document", "model": model, "system": "icd10cm", "outcome": "incorrect",
                    "gold_codes": gold, "predicted_codes": predicted, "n_codes": len(predicted), "true_positives": tp,
                    "code_confidences": [c for c, _ in codes], "abstained": declined})
    return out


def _brute_auto_coded(documents: list[tuple[list[tuple[float | None, bool]], bool]],
                      target: float) -> tuple[float, float | None, float | None]:
    """Every threshold tried: the largest share of documents whose codes all clear it, at ``target`` precision."""
    n = len(documents)
    confidence = []
    for codes, declined in documents:
        ok = codes and not declined and all(c is not None for c, _ in codes)
        confidence.append(min(c for c, _ in codes if c is not None) if ok else None)
    best: tuple[float, float | None, float | None] = (0.0, None, None)
    for t in sorted({c for c in confidence if c is not None}):
        taken = [documents[i][0] for i, c in enumerate(confidence) if c is not None and c >= t]
        codes = sum(len(c) for c in taken)
        hits = sum(right for c in taken for _, right in c)
        if codes and hits >= target * codes - 1e-9 and len(taken) / n > best[0]:
            best = (len(taken) / n, t, hits / codes)
    return best


def _brute_curve(documents: list[tuple[list[tuple[float | None, bool]], bool]]) -> list[tuple[float, float, float]]:
    """Every distinct code confidence as a threshold: the share of predicted codes kept and their precision."""
    codes = [(c, right) for cs, declined in documents for c, right in cs if not declined]
    total = sum(len(cs) for cs, _ in documents)
    out = []
    for t in sorted({c for c, _ in codes if c is not None}, reverse=True):
        kept = [right for c, right in codes if c is not None and c >= t]
        out.append((len(kept) / total, sum(kept) / len(kept), t))
    return out


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS, st.sampled_from([0.5, 0.8, 0.95, 1.0]))
def test_the_share_auto_coded_is_the_best_threshold_tried_by_brute_force(documents, target) -> None:
    records = _records(documents)
    dl = document_levels([(document_confidence(r["code_confidences"], r["abstained"]), r["true_positives"],
                           r["n_codes"]) for r in records])
    got = auto_coded_at(dl, target)
    share, threshold, precision = _brute_auto_coded(documents, target)
    assert got.coverage == pytest.approx(share)
    assert got.threshold == threshold
    assert (got.precision is None) == (precision is None)
    if precision is not None:
        assert got.precision == pytest.approx(precision) and got.precision >= target - 1e-9
    row = document_selective_rows(records, targets=(target,), resamples=50)
    if any(c is not None for cs, _ in documents for c, _ in cs):
        assert row[0]["coverage"][f"{round(target * 100, 6):g}"]["value"] == pytest.approx(share)
    else:
        assert row == []


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS)
def test_the_precision_coverage_curve_over_predicted_codes_against_brute_force(documents) -> None:
    curve = precision_coverage(code_levels(_records(documents)))
    brute = _brute_curve(documents)
    assert len(curve) == len(brute)
    for (c, p, t), (bc, bp, bt) in zip(curve, brute, strict=True):
        assert (c, p, t) == (pytest.approx(bc), pytest.approx(bp), bt)


def test_a_threshold_admits_tied_documents_together_or_not_at_all() -> None:
    # Two documents at 0.9: one right, one wrong (precision 1/2 together); one at 0.95, right.
    documents = [([(0.95, True)], False), ([(0.9, True)], False), ([(0.9, False), (0.99, True)], False)]
    dl = document_levels([(document_confidence([c for c, _ in cs]), sum(r for _, r in cs), len(cs))
                          for cs, _ in documents])
    assert list(dl.confidence) == [0.95, 0.9] and list(dl.documents) == [1, 2]
    at = auto_coded_at(dl, 0.95)
    assert (at.coverage, at.threshold, at.precision, at.auto_coded, at.codes) == (1 / 3, 0.95, 1.0, 1, 1)
    at = auto_coded_at(dl, 0.75)  # the tie whole: 3 of 4 codes right
    assert (at.coverage, at.threshold, at.precision) == (1.0, 0.9, 0.75)
    # On codes: 0.99 and 0.95 kept (both right), then the two 0.9 codes together.
    curve = precision_coverage(code_levels(_records(documents)))
    assert curve == [(0.25, 1.0, 0.99), (0.5, 1.0, 0.95), (1.0, 0.75, 0.9)]


def test_a_document_is_auto_coded_only_when_every_code_has_a_confidence() -> None:
    assert document_confidence([0.9, 0.4]) == 0.4
    assert document_confidence([0.9, None]) is None  # a code it is not sure of at all: a person looks
    assert document_confidence([]) is None  # nothing to code it with
    assert document_confidence([0.9], declined=True) is None
    # Documents never auto-coded stay in the denominator.
    records = _records([([(1.0, True)], False), ([(None, True)], False), ([], False), ([(1.0, True)], True)])
    (row,) = document_selective_rows(records, targets=(0.95,), resamples=50)
    assert row["coverage"]["95"]["value"] == 0.25 and row["auto_codable"] == 1 and row["declined"] == 1
    assert row["coverage"]["95"]["threshold"] == 1.0 and row["with_confidence"] == 2


def test_coders_without_confidences_have_no_numbers_and_a_run_without_any_has_no_section() -> None:
    with_them = _records([([(0.9, True)], False)], model="a")
    without = [{k: v for k, v in r.items() if k != "code_confidences"} for r in _records([([(0.9, True)], False)],
                                                                                         model="b")]
    assert document_selective_rows(without) == []
    rows = document_selective_rows(with_them + without)
    assert [r["model"] for r in rows] == ["a", "b"]
    assert rows[1]["coverage"] is None and rows[1]["curve"] is None and rows[1]["with_confidence"] == 0
    assert document_row_lines(rows[1]) == ["b / icd10cm: no confidence for its codes (no straight-through numbers)"]
    # No code confidence in the run: the documents block is what it was, without a straight-through part.
    data = document_section.section(without, 0, "documents-v1")
    assert data is not None and "selective" not in data
    assert "Straight-through" not in "\n".join(document_section.markdown_lines(data))
    assert "documents-straight-through" not in document_section.html_section(data)
    assert not any("straight-through" in line for line in document_section.terminal_lines(data))
    assert "selective" in (document_section.section(with_them + without, 0, "documents-v1") or {})


def test_the_interval_is_seeded_draws_documents_whole_and_brackets_the_estimate() -> None:
    documents = [(0.95, 2, 2)] * 30 + [(0.6, 1, 3)] * 10 + [(None, 1, 1)] * 10
    first = auto_coded_intervals(documents, (0.95, 0.99), seed=3)
    assert first == auto_coded_intervals(documents, (0.95, 0.99), seed=3)
    few = auto_coded_intervals(documents, (0.95,), resamples=25, seed=3)  # few: the quantiles fall between draws
    assert few != auto_coded_intervals(documents, (0.95,), resamples=25, seed=4)
    low, high = first[0.95] or (None, None)
    assert low < 30 / 50 < high
    # Every document alike: every resample is the same documents, so the interval is the point.
    same = [(0.9, 1, 1)] * 20
    assert auto_coded_intervals(same, (0.95,))[0.95] == (1.0, 1.0)
    assert auto_coded_intervals([(None, 0, 1)] * 5, (0.95,))[0.95] == (0.0, 0.0)
    assert auto_coded_intervals([], (0.95,)) == {0.95: None}


def test_terminal_lines_say_the_share_the_target_and_the_threshold() -> None:
    records = _records([([(0.97, True), (0.99, True)], False)] * 8 + [([(0.5, False)], False)] * 2)
    lines = document_section_lines(document_selective_rows(records, targets=(0.95,), resamples=100), 100)
    assert lines[1].startswith("straight-through document coding")
    # 8 of 10 notes sure of their right codes, 2 with a wrong one at 0.5 (taking them: 16 of 18 codes right).
    assert re.fullmatch(r"  m / icd10cm: auto-codes 80\.0 % \(\d+\.\d–\d+\.\d\) of documents at ≥ 95 % precision, "
                        r"threshold 0\.97", lines[2]), lines[2]
    assert lines[3] == "    precision of all 18 predicted codes 88.9 %"


# -- where each code's confidence comes from ---------------------------------------------------------------------


def test_an_llms_per_code_probabilities_are_its_code_tokens(icd10) -> None:
    text = "Codes:\nE11.9\nI10\nJ20.9"
    tokens = [(t["token"], t["logprob"]) for t in token_logprobs(text, [0.8, 0.5, 0.25])]
    assert "".join(t for t, _ in tokens) == text
    assert code_probabilities(tokens) == pytest.approx({"E11.9": 0.8, "I10": 0.5, "J20.9": 0.25})
    first, per_code = confidences_of({"logprobs": {"content": [{"token": t, "logprob": lp} for t, lp in tokens]}})
    assert first == pytest.approx(0.8) and per_code == pytest.approx({"E11.9": 0.8, "I10": 0.5, "J20.9": 0.25})
    assert confidences_of({"logprobs": None}) == (None, None)
    # A token across two codes counts in both; a word written twice keeps its first writing's.
    assert code_probabilities([("A1 B", math.log(0.5)), ("2 A1", math.log(0.8))]) == \
        pytest.approx({"A1": 0.5, "B2": 0.4})
    # Scoring reads them onto the predicted codes: the code as scored, the lowest of its writings.
    fields = score_document(icd10, ("E11.9", "I10"), text, per_code)
    assert fields["predicted_codes"] == ["E11.9", "I10", "J20.9"]
    assert fields["code_confidences"] == pytest.approx([0.8, 0.5, 0.25])
    assert "code_confidences" not in score_document(icd10, ("E11.9",), text)
    assert predicted_confidences("icd10cm", ["E11.9", "I10", "J20.9"], {"e11.9": 0.7, "E119": 0.9, "I10": 0.6}) == \
        [0.7, 0.6, None]


@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan, "0.9", True, None])
def test_a_per_code_confidence_that_is_no_probability_is_dropped_and_noted(bad) -> None:
    usage = confidence_usage(Reply("Codes: E11.9, I10", code_confidences={"E11.9": 0.9, "I10": bad}))
    assert usage[CODE_CONFIDENCES] == {"E11.9": 0.9} and usage[CONFIDENCE_INVALID] == repr(bad)
    assert confidence_usage(Reply("x", code_confidences=[0.9]))[CODE_CONFIDENCES] == {}  # not a mapping
    assert confidence_usage(Reply("x", code_confidences={"E11.9": 1})) == {CODE_CONFIDENCES: {"E11.9": 1.0}}
    assert confidence_usage(Reply("x", {"prompt_tokens": 3})) == {"prompt_tokens": 3}


def test_lookup_gives_each_code_of_a_note_its_match_score() -> None:
    question = Question("icd10cm", "Assessment: type 2 diabetes mellitus without complications. Acute bronchitis, "
                        "unspecified. Denies essential (primary) hypertension.", (), 0.2, 200, task="document")
    reply = asyncio.run(LookupCoder().answer(question))
    assert reply.text == "Codes:\nE11.9\nJ20.9"
    assert reply.code_confidences == {"E11.9": 1.0, "J20.9": 1.0}
    fuzzy = asyncio.run(LookupCoder().answer(Question("icd10cm", "Type 2 diabetis melitus without complicatons.", (),
                                                      0.2, 200, task="document")))
    assert fuzzy.code_confidences is not None and 0.75 <= fuzzy.code_confidences["E11.9"] < 1.0


class _Sure:
    """A model that names two codes of a note and says how sure it is of each."""

    name, cacheable = "sure", False

    def identity(self) -> dict[str, Any]:
        return {"coder": "sure"}

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None

    async def answer(self, question: Question) -> Reply:
        return Reply("Codes:\nE11.9\nI10", confidence=0.8, code_confidences={"E11.9": 0.8, "I10": 0.6})


def test_verify_and_rag_pass_their_models_per_code_confidences_on() -> None:
    from pytest_medcode.asking.coders.rag import RagCoder
    from pytest_medcode.asking.coders.verify import VerifyCoder

    question = Question("icd10cm", "Type 2 diabetes. Hypertension.", (("user", "Note: <...>"),), 0.2, 200,
                        task="document")
    for wrapper in (VerifyCoder("verify:sure", _Sure()), RagCoder("rag:sure", _Sure())):
        reply = asyncio.run(wrapper.answer(question))
        assert reply.code_confidences == {"E11.9": 0.8, "I10": 0.6}, wrapper.name


# -- real runs ----------------------------------------------------------------------------------------------------


def _notes(icd10: CodeSystem, path: Path, n: int = 20) -> list[dict[str, Any]]:
    docs = [{"id": d.id, "text": d.text, "codes": list(d.codes), "system": "icd10cm"}
            for d in synthetic_documents(icd10, n, seed=1)]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return docs


#: The scripted model's mistakes: every third note gets a made-up extra code, every fourth loses its last code.
WRONG = "R69"


def _answer(doc: dict[str, Any], i: int) -> list[str]:
    codes = list(doc["codes"])
    if i % 4 == 3 and len(codes) > 1:
        codes = codes[:-1]
    return [*codes, WRONG] if i % 3 == 2 else codes


def _probability(code: str, i: int) -> float:
    """Sure of the right codes (0.9–1.0), not of the made-up one (0.5)."""
    return 0.5 if code == WRONG else 0.9 + (sum(map(ord, code)) + i) % 10 / 100


def test_the_scripted_servers_per_code_log_probabilities_score_documents_end_to_end(pytester, icd10) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK)
    docs = _notes(icd10, pytester.path / "notes.jsonl")
    index = {d["text"]: i for i, d in enumerate(docs)}

    def which(request: Request) -> int:
        return next(i for text, i in index.items() if text in request.last_user_message)

    def respond(request: Request) -> str:
        i = which(request)
        return "Codes:\n" + "\n".join(_answer(docs[i], i))

    def confidence(request: Request, text: str) -> list[float]:
        i = which(request)
        return [_probability(code, i) for code in _answer(docs[i], i)]

    args = (*FAST, "--medcode-confidence", "--medcode-documents", str(pytester.path / "notes.jsonl"),
            "--medcode-document-sample", "all", "--medcode-cache", str(pytester.path / "cache.sqlite3"))
    with ScriptedServer(respond, confidence=confidence) as server:
        result = pytester.runpytest(*args, "--model", "openai/m", "--medcode-api-base", server.base_url)
        assert server.stats.total_requests == len(docs)  # each note once (the preflight probe's answer is kept)
        first = summary_of(pytester)["documents"]["selective"]
        server.reset_stats()
        rerun = pytester.runpytest(*args, "--model", "openai/m", "--medcode-api-base", server.base_url)
        assert server.stats.total_requests == 0 and rerun.ret == 1  # from the response cache: nothing asked again
    assert summary_of(pytester)["documents"]["selective"] == first  # the same confidences, read from the cache
    assert result.ret == 1
    records = sorted(cases_of(pytester), key=lambda r: r["document"])
    assert len(records) == len(docs)
    for record in records:
        i = next(j for j, d in enumerate(docs) if d["id"] == record["document"])
        assert record["predicted_codes"] == _answer(docs[i], i)
        assert record["code_confidences"] == pytest.approx([_probability(c, i) for c in _answer(docs[i], i)])
    assert pq.read_schema(pytester.path / "reports" / "latest" / "cases.parquet").field("code_confidences").type == \
        pa.list_(pa.float64())
    (row,) = summary_of(pytester)["documents"]["selective"]
    assert row == document_selective_rows(records, seed=0, targets=(0.95, 0.99))[0]
    # At 95 %: the notes without the made-up code (sure of every code) and none of those with it (0.5).
    clean = [i for i in range(len(docs)) if i % 3 != 2]
    assert row["precision"] < 0.95  # taking the notes with a made-up code too would fall below the target
    at95 = row["coverage"]["95"]
    assert at95["value"] == pytest.approx(len(clean) / len(docs)) and at95["precision"] == 1.0
    share = f"{100 * len(clean) / len(docs):.1f}"
    assert at95["threshold"] == pytest.approx(min(_probability(c, i) for i in clean for c in _answer(docs[i], i)))
    assert at95["low"] <= at95["value"] <= at95["high"]
    shown = " ".join(result.stdout.str().split())
    assert re.search(rf"openai/m / icd10cm: auto-codes {re.escape(share)} % \(\d+\.\d–\d+\.\d\) of documents at ≥ 95 % "
                     r"precision, threshold 0\.9\d", shown), shown
    report = (pytester.path / "reports" / "latest" / "report.md").read_text()
    assert "### Straight-through document coding" in report and f"| openai/m / icd10cm | 95 % | {share} % (" in report
    page = (pytester.path / "reports" / "latest" / "report.html").read_text()
    assert 'id="documents-straight-through"' in page and 'id="chart-document-precision"' in page


PRODUCTS = '''
from pytest_medcode.api import Reply

def sure(question):
    """Names two codes and how sure it is of each, one written as the product writes it (lower case)."""
    return Reply("Codes: I10, e11.9", code_confidences={"I10": 0.97, "e11.9": 0.6})

def unsure(question):
    """Per-code confidences that are no probability."""
    return Reply("Codes: I10", code_confidences={"I10": 7.0})

def silent(question):
    return "Codes: I10"
'''

DOCS = [
    {"id": "n1", "system": "icd10cm", "codes": ["E11.9", "I10"], "text": "Type 2 diabetes. Hypertension."},
    {"id": "n2", "system": "icd10cm", "codes": ["I10"], "text": "Hypertension, on lisinopril."},
    {"id": "n3", "system": "icd10cm", "codes": ["J20.9"], "text": "Acute bronchitis."},
]


def test_python_products_per_code_confidences_in_a_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_document_coding=BENCHMARK, products=PRODUCTS)
    pytester.syspathinsert()
    notes = pytester.path / "notes.jsonl"
    notes.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    result = pytester.runpytest(*FAST, "--medcode-no-cache", "--medcode-documents", str(notes), "--model",
                                "python:products:sure", "--model", "python:products:unsure", "--model",
                                "python:products:silent", "--medcode-coverage-at", "0.5")
    assert result.ret == 1
    rows = {r["model"]: r for r in summary_of(pytester)["documents"]["selective"]}
    sure = rows["python:products:sure"]
    # I10 at 0.97 (right in n1 and n2, not n3), E11.9 at 0.6 (right in n1 only): every note clears 0.6 with 3 of
    # its 6 codes right; none clears 0.97 (each has E11.9 at 0.6).
    assert sure["coverage"]["50"]["value"] == 1.0 and sure["coverage"]["50"]["threshold"] == 0.6
    assert sure["codes"]["50"]["threshold"] == 0.6 and sure["precision"] == 0.5
    assert sure["curve"] == [[0.5, 0.666667, 0.97], [1.0, 0.5, 0.6]]
    assert rows["python:products:unsure"]["coverage"] is None and rows["python:products:silent"]["coverage"] is None
    by_model = {(c["model"], c["document"]): c for c in cases_of(pytester)}
    assert by_model["python:products:sure", "n1"]["code_confidences"] == [0.97, 0.6]
    assert by_model["python:products:unsure", "n1"]["code_confidences"] == [None]
    assert by_model["python:products:silent", "n1"].get("code_confidences") is None
    shown = " ".join(result.stdout.str().split())
    assert ("warning: python:products:unsure gave 3 confidence(s) outside [0, 1] or not a number (first: 7.0); "
            "those cases are recorded as no confidence") in shown
    assert "python:products:silent / icd10cm: no confidence for its codes" in shown
