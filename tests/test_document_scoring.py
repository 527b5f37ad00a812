"""Document scoring by hand: the set read from an answer, its precision, recall, F1 and category F1 against the
gold set, and the run's micro and macro numbers over documents whose false positives and false negatives differ.

Fast and in-process (no pytest session, no server): these are the tests perf/mutation.py runs against
scoring/code_sets.py and results/document_summary.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_medcode.codesystems import CodeSystem, load_system
from pytest_medcode.results.document_summary import TOP_CODES, per_code_f1, pooled, summarize_documents, summarize_group
from pytest_medcode.results.stats import bootstrap_mean, bootstrap_ratio, wilson
from pytest_medcode.scoring.code_sets import category, prf, read_codes, score_document, unscored_document_fields


@pytest.fixture(scope="module")
def icd10() -> CodeSystem:
    return load_system("icd10cm")


@pytest.fixture(scope="module")
def icd9() -> CodeSystem:
    return load_system("icd9cm")


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> CodeSystem:
    """A user's own table with no parent column: no categories."""
    path: Path = tmp_path_factory.mktemp("acme") / "acme.csv"
    path.write_text("code,description\nA100,Acme widget check\nA200,Acme gadget review\nA300,Acme gizmo repair\n")
    return load_system("acme", path)


# -- one document ---------------------------------------------------------------------------------------


def test_prf_of_two_sets_by_hand() -> None:
    assert prf({"A", "B"}, {"A", "C", "D"}) == pytest.approx((1 / 3, 1 / 2, 2 / 5))
    assert prf({"A", "B", "C"}, {"A"}) == pytest.approx((1.0, 1 / 3, 1 / 2))
    assert prf(set(), set()) == (1.0, 1.0, 1.0)  # nothing to code, nothing coded
    assert prf(set(), {"A"}) == (0.0, 0.0, 0.0)  # something coded where nothing was to be
    assert prf({"A"}, set()) == (0.0, 0.0, 0.0)
    assert prf(["A", "A", "B"], ("B", "B")) == pytest.approx((1.0, 1 / 2, 2 / 3))  # sets, not lists


def test_read_codes_word_by_word_in_order_without_repeats() -> None:
    assert read_codes("icd10cm", "Codes:\nI10\nE11.9") == ("I10", "E11.9")
    assert read_codes("icd10cm", "E11.9, I10; e11.9\tN39.0") == ("E11.9", "I10", "N39.0")
    assert read_codes("icd10cm", "I10 and E11.9") == ("I10", "E11.9")
    assert read_codes("icd10cm", "") == () and read_codes("icd10cm", None) == ()  # type: ignore[arg-type]
    assert read_codes("icd9cm", "E849.0 E840.1 250") == ("E849.0", "E840.1", "250")


def test_score_document_every_field_with_more_false_positives_than_negatives(icd10) -> None:
    fields = score_document(icd10, ("E11.9", "I10"), "Codes:\nE11.9\nI10\nJ45.909\nE11\nQ99.99")
    assert fields == {
        "codes": ["E11.9", "I10", "J45.909", "E11", "Q99.99"],
        "predicted_codes": ["E11.9", "I10", "J45.909", "E11", "Q99.99"],
        "n_codes": 5, "true_positives": 2, "false_positives": 3, "false_negatives": 0,
        "set_match": False, "exact_match": False,
        "precision": 2 / 5, "recall": 1.0, "f1": pytest.approx(4 / 7),
        "category_f1": pytest.approx(2 * 2 / (2 + 4)),  # {E11, I10} vs {E11, I10, J45, Q99}
        "n_invalid": 2, "n_fabricated": 1, "invalid_codes": ["E11", "Q99.99"], "fabricated_codes": ["Q99.99"],
    }


def test_score_document_with_more_false_negatives_than_positives(icd10) -> None:
    fields = score_document(icd10, ("N39.0", "R05.9", "J20.9"), "N39.0")
    assert (fields["true_positives"], fields["false_positives"], fields["false_negatives"]) == (1, 0, 2)
    assert (fields["precision"], fields["recall"], fields["f1"]) == pytest.approx((1.0, 1 / 3, 1 / 2))
    assert fields["set_match"] is False and fields["exact_match"] is False  # a subset is not the set
    assert fields["n_invalid"] == 0 and fields["n_fabricated"] == 0


def test_a_set_match_is_the_same_set_not_a_superset(icd10) -> None:
    assert score_document(icd10, ("I10",), "I10\nE11.9")["set_match"] is False  # extra codes: no match
    assert score_document(icd10, ("I10",), "I10\nE11.9")["exact_match"] is False
    same = score_document(icd10, ("I10", "E11.9"), "E11.9 then I10, I10 again")
    assert same["set_match"] is True and same["exact_match"] is True and same["n_codes"] == 2
    nothing = score_document(icd10, (), "No codes apply.")
    assert nothing["set_match"] is True and nothing["f1"] == 1.0 and nothing["n_codes"] == 0


def test_an_icd9_header_is_invalid_not_fabricated(icd9) -> None:
    """``250`` and ``250.0`` exist in the table (derived headers), as a code query's answer reads them."""
    fields = score_document(icd9, ("250.00",), "250\n250.0\n250.00\n999.99")
    assert fields["invalid_codes"] == ["250", "250.0", "999.99"] and fields["fabricated_codes"] == ["999.99"]
    assert fields["n_invalid"] == 3 and fields["n_fabricated"] == 1


def test_category_is_the_tables_category() -> None:
    icd9, proc, pcs, icd10 = (load_system(n) for n in ("icd9cm", "icd9cm-proc", "icd10pcs", "icd10cm"))
    assert category(icd9, "E849.0") == "E849"  # not E84: an E code's category has four characters
    assert category(icd9, "250.00") == "250" and category(icd9, "V58.61") == "V58"
    assert category(proc, "81.54") == "81"  # not 815: a procedure category has two digits
    assert category(pcs, "0DTJ4ZZ") == "0DT"  # a PCS table
    assert category(icd10, "E11.65") == "E11" and category(icd10, "E11.999") == "E11"  # made up, in E11
    assert category(icd10, "U99.9") == "U999"  # no such category: the code is its own


def test_category_f1_at_the_real_category() -> None:
    icd9, proc, pcs = (load_system(n) for n in ("icd9cm", "icd9cm-proc", "icd10pcs"))
    # E849.0 (place of occurrence) and E840.1 (aircraft accident) share only "E84" as characters
    assert score_document(icd9, ("E849.0",), "E840.1")["category_f1"] == 0.0
    assert score_document(icd9, ("E849.0",), "E849.3")["category_f1"] == 1.0
    # 81.54 and 81.04 are both in category 81 (operations on joints), though "815" and "810" differ
    assert score_document(proc, ("81.54",), "81.04")["category_f1"] == 1.0
    assert score_document(proc, ("81.54",), "80.51")["category_f1"] == 0.0
    assert score_document(pcs, ("0DTJ4ZZ",), "0DTJ0ZZ")["category_f1"] == 1.0
    assert score_document(pcs, ("0DTJ4ZZ",), "0DBJ4ZZ")["category_f1"] == 0.0


def test_a_table_without_categories_scores_category_f1_as_f1(flat) -> None:
    assert category(flat, "A100") == "A100" and category(flat, "a1.00") == "A100"
    fields = score_document(flat, ("A100", "A200"), "A100 A300")
    assert fields["category_f1"] == fields["f1"] == 0.5


def test_a_failed_call_has_nothing_scored() -> None:
    assert unscored_document_fields() == {
        "predicted_codes": [], "true_positives": None, "false_positives": None, "false_negatives": None,
        "set_match": None, "exact_match": None, "precision": None, "recall": None, "f1": None,
        "category_f1": None, "n_invalid": None, "n_fabricated": None, "invalid_codes": [],
        "fabricated_codes": [],
    }


# -- a run's documents ------------------------------------------------------------------------------------

#: (gold set, answer): TP 2+1+0+1 = 4, FP 3+0+2+0 = 5, FN 0+2+1+0 = 3, so precision, recall and F1 all differ.
DOCUMENTS = [
    (("E11.9", "I10"), "E11.9\nI10\nJ45.909\nE11\nQ99.99"),  # P 2/5, R 1, F1 4/7; invalid E11, Q99.99 (made up)
    (("N39.0", "R05.9", "J20.9"), "N39.0"),  # P 1, R 1/3, F1 1/2
    (("I10",), "E11.65\nE11.9"),  # P 0, R 0, F1 0
    (("J45.909",), "J45.909"),  # P 1, R 1, F1 1: the only set match
]


def records(icd10: CodeSystem, model: str = "m", synthetic: bool = False) -> list[dict[str, Any]]:
    out = [{"model": model, "system": "icd10cm", "outcome": "incorrect", "gold_codes": list(gold),
            "synthetic": synthetic, **score_document(icd10, gold, answer)} for gold, answer in DOCUMENTS]
    out.append({"model": model, "system": "icd10cm", "outcome": "error", "gold_codes": ["R05.9", "Z00.00"],
                "synthetic": synthetic, **unscored_document_fields()})  # a failed call: left out of every value
    return out


def test_micro_precision_recall_and_f1_pool_the_codes(icd10) -> None:
    done = records(icd10)
    assert pooled(done, "micro_precision").value == pytest.approx(4 / 9)
    assert pooled(done, "micro_recall").value == pytest.approx(4 / 7)
    assert pooled(done, "micro_f1").value == pytest.approx(8 / (8 + 5 + 3))
    assert pooled(done, "invalid_code_rate").value == pytest.approx(2 / 9)
    assert pooled(done, "fabricated_code_rate").value == pytest.approx(1 / 9)
    assert pooled(done, "micro_f1").n == 4


def test_pooled_interval_is_the_seeded_bootstrap_over_documents(icd10) -> None:
    done = records(icd10)
    tp = [2, 1, 0, 1]
    assert pooled(done, "micro_precision", seed=7) == bootstrap_ratio(tp, [5, 1, 2, 1], seed=7)
    assert pooled(done, "micro_recall", seed=7) == bootstrap_ratio(tp, [2, 3, 1, 1], seed=7)
    assert pooled(done, "micro_f1", seed=7) == bootstrap_ratio([4, 2, 0, 2], [7, 4, 3, 2], seed=7)
    assert pooled(done, "micro_f1") == bootstrap_ratio([4, 2, 0, 2], [7, 4, 3, 2], seed=0)
    counts = [{"outcome": "incorrect", "true_positives": i % 4, "false_positives": i % 3, "false_negatives": i % 5}
              for i in range(40)]  # enough documents for two seeds to draw two intervals
    assert pooled(counts, "micro_f1", seed=7) != pooled(counts, "micro_f1", seed=8)
    assert summarize_group(counts, seed=7)["micro_f1"] != summarize_group(counts, seed=8)["micro_f1"]
    assert summarize_group(counts, seed=7)["micro_f1"] == pooled(counts, "micro_f1", seed=7).to_dict()


def test_pooled_refuses_what_is_not_pooled(icd10) -> None:
    with pytest.raises(ValueError, match="f1 is not pooled"):
        pooled(records(icd10), "f1")
    with pytest.raises(ValueError, match="nonsense is not a pooled document metric"):
        pooled(records(icd10), "nonsense")
    assert pooled([], "micro_f1").value is None
    # a record without counts (an older run folder) adds nothing
    assert pooled([{"outcome": "incorrect"}], "micro_precision").value is None


def test_the_group_summary_by_hand(icd10) -> None:
    row = summarize_group(records(icd10), seed=3)
    assert (row["n_documents"], row["n_answered"], row["n_errors"]) == (5, 4, 1)
    assert row["gold_codes"] == 7 and row["predicted_codes"] == 9 and row["synthetic"] is False
    assert row["set_match"] == wilson(1, 4).to_dict()
    assert row["micro_precision"]["value"] == pytest.approx(4 / 9)
    assert row["micro_recall"]["value"] == pytest.approx(4 / 7)
    assert row["micro_f1"] == pooled(records(icd10), "micro_f1", seed=3).to_dict()
    assert row["invalid_code_rate"]["value"] == pytest.approx(2 / 9)
    assert row["fabricated_code_rate"]["value"] == pytest.approx(1 / 9)
    # macro: the mean of each document's value, with a seeded bootstrap interval
    assert row["macro_precision"] == bootstrap_mean([2 / 5, 1.0, 0.0, 1.0], seed=3).to_dict()
    assert row["macro_recall"] == bootstrap_mean([1.0, 1 / 3, 0.0, 1.0], seed=3).to_dict()
    assert row["macro_f1"] == bootstrap_mean([4 / 7, 1 / 2, 0.0, 1.0], seed=3).to_dict()
    assert row["macro_precision"]["value"] == pytest.approx(0.6)
    assert row["macro_recall"]["value"] == pytest.approx(7 / 12)
    # categories: {E11, I10} vs {E11, I10, J45, Q99}; {N39, R05, J20} vs {N39}; {I10} vs {E11}; the same
    assert row["category_f1"] == bootstrap_mean([2 / 3, 1 / 2, 0.0, 1.0], seed=3).to_dict()
    assert row["per_code"] == per_code_f1(records(icd10))


def test_synthetic_only_when_every_document_is() -> None:
    assert summarize_group([{"outcome": "error", "synthetic": True}] * 2)["synthetic"] is True
    assert summarize_group([{"outcome": "error", "synthetic": True}, {"outcome": "error"}])["synthetic"] is False
    empty = summarize_group([])
    assert empty["synthetic"] is False and empty["n_documents"] == 0 and empty["set_match"]["value"] is None


def test_per_code_f1_of_the_most_frequent_gold_codes(icd10) -> None:
    done = records(icd10)
    codes = per_code_f1(done)
    # I10 is gold twice (documents 1 and 3); the rest once, in code order; R05.9 and Z00.00 of the failed
    # call are not counted
    assert [c["code"] for c in codes] == ["I10", "E11.9", "J20.9", "J45.909", "N39.0", "R05.9"]
    by_code = {c["code"]: c for c in codes}
    assert by_code["I10"] == {"code": "I10", "support": 2, "predicted": 1, "precision": 1.0, "recall": 0.5,
                              "f1": pytest.approx(2 / 3)}
    # J45.909: predicted in documents 1 (a false positive) and 4 (right)
    assert by_code["J45.909"] == {"code": "J45.909", "support": 1, "predicted": 2, "precision": 0.5,
                                  "recall": 1.0, "f1": pytest.approx(2 / 3)}
    # E11.9: right in document 1, a false positive in document 3
    assert by_code["E11.9"] == {"code": "E11.9", "support": 1, "predicted": 2, "precision": 0.5, "recall": 1.0,
                                "f1": pytest.approx(2 / 3)}
    assert by_code["R05.9"] == {"code": "R05.9", "support": 1, "predicted": 0, "precision": 0.0, "recall": 0.0,
                                "f1": 0.0}
    assert [c["code"] for c in per_code_f1(done, limit=2)] == ["I10", "E11.9"]
    many = [{"outcome": "incorrect", "gold_codes": [f"C{i:02d}"], "predicted_codes": []} for i in range(12)]
    assert len(per_code_f1(many)) == TOP_CODES == 10


def test_one_row_per_model_and_system_in_order_of_appearance(icd10) -> None:
    mixed = [*records(icd10, "b", synthetic=True), *records(icd10, "a")]
    mixed[1] = {**mixed[1], "system": "icd9cm"}
    rows = summarize_documents(mixed, seed=2)
    assert [(r["model"], r["system"], r["n_documents"]) for r in rows] == [("b", "icd10cm", 4), ("b", "icd9cm", 1),
                                                                         ("a", "icd10cm", 5)]
    assert rows[0]["synthetic"] is True and rows[2]["synthetic"] is False
    assert rows[2] == {"model": "a", "system": "icd10cm", **summarize_group(records(icd10, "a"), seed=2)}
    assert summarize_documents([]) == []


def counted(n: int = 40) -> list[dict[str, Any]]:
    """Documents with counts and per-document values only (no ``n_codes``): enough of them that two seeds
    draw two bootstrap intervals."""
    return [{"model": "m", "system": "icd10cm", "outcome": "incorrect", "true_positives": i % 4,
             "false_positives": i % 3, "false_negatives": i % 5, "precision": (i % 7) / 7, "recall": (i % 3) / 3,
             "f1": (i % 5) / 5, "category_f1": (i % 2) / 1} for i in range(n)]


def test_every_interval_follows_the_seed_and_the_default_seed_is_0() -> None:
    docs = counted()
    for seed in (0, 7):
        row = summarize_group(docs, seed=seed)
        assert row["micro_f1"] == pooled(docs, "micro_f1", seed=seed).to_dict()
        for field, name in (("precision", "macro_precision"), ("recall", "macro_recall"), ("f1", "macro_f1")):
            assert row[name] == bootstrap_mean([d[field] for d in docs], seed=seed).to_dict()
        assert summarize_documents(docs, seed=seed) == [{"model": "m", "system": "icd10cm", **row}]
    assert summarize_group(docs, seed=0) != summarize_group(docs, seed=7)
    assert pooled(docs, "micro_f1") == pooled(docs, "micro_f1", seed=0) != pooled(docs, "micro_f1", seed=1)
    assert summarize_group(docs) == summarize_group(docs, seed=0)
    assert summarize_documents(docs) == summarize_documents(docs, seed=0)


def test_a_record_without_a_code_count_adds_no_predicted_code() -> None:
    assert summarize_group(counted(3))["predicted_codes"] == 0
