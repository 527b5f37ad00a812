"""What a coder's answer for a document means: the set of codes it names, scored against the gold set.

Every code of the document's system in the answer is read, word by word (parsing.py, the ``default``
profile: whole codes in the forms models write), in order and without repeats. A predicted code that is not in the
table is *fabricated* (as for a code query; an ICD-9-CM header such as ``250`` exists); one that exists but is
not billable is *invalid* too (a claim cannot carry it).
Precision, recall and F1 compare the predicted set with the gold set; ``category_f1`` compares them
at each code's category in its own table (hierarchy.py), the partial credit a near miss earns: ``E11.9`` and
``E11.65`` share ``E11``, ICD-9-CM ``E849.0`` sits in ``E849`` (not ``E84``, which would join it to
``E840.1``), a procedure ``81.54`` in ``81``, a PCS code in its table (``0DT``). A code whose category the
table does not know (a flat table such as CPT, a made-up code under no real category) is its own category.

A coder may say how sure it is of each code it names (``code_confidences``: the code as it wrote it, a
probability): each predicted code takes the confidence of the written codes that read as it (the lowest, when
it was written more than once); a predicted code the coder gave none for has none (None, never 1.0).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pytest_medcode.codesystems import CodeSystem
from pytest_medcode.codesystems.normalize import key as code_key
from pytest_medcode.scoring.hierarchy import lineage
from pytest_medcode.scoring.parsing import extract_default

__all__ = ["category", "predicted_confidences", "prf", "read_codes", "score_document", "unscored_document_fields"]


def category(system: CodeSystem, code: str) -> str:
    """The code's category in ``system``'s table (ICD-10-CM ``E11.9`` → ``E11``, ICD-9-CM ``E849.0`` →
    ``E849``, ICD-9-CM procedure ``81.54`` → ``81``); the code itself when the table places it in none."""
    found = lineage(system, code)
    if found is not None and found.category is not None:
        return found.category
    return code_key(code)


def prf(gold: Iterable[str], predicted: Iterable[str]) -> tuple[float, float, float]:
    """(precision, recall, F1) of two sets. Both empty is a perfect answer (nothing to code, nothing
    coded); precision of an empty prediction against a non-empty gold set is 0, as is its recall."""
    g, p = set(gold), set(predicted)
    if not g and not p:
        return 1.0, 1.0, 1.0
    tp = len(g & p)
    precision = tp / len(p) if p else 0.0
    recall = tp / len(g) if g else 0.0
    f1 = 2 * tp / (len(g) + len(p))
    return precision, recall, f1


def read_codes(system: str, text: str) -> tuple[str, ...]:
    """Every code in the answer, word by word. A set of codes is written as a list, and the code-query
    patterns allow a space around a code's dot, so read as one text ``I10`` then ``E11`` on the next line
    becomes ``I10.E11``, and ``I10 and E11.9`` becomes ``I10.AND``; a code never holds a space or a comma."""
    seen: dict[str, None] = {}
    for word in _WORDS.split(text or ""):
        for code in extract_default(system, word).codes:
            seen.setdefault(code)
    return tuple(seen)


_WORDS = re.compile(r"[\s,;]+")


def predicted_confidences(system: str, predicted: Iterable[str], given: Mapping[str, float]) -> list[float | None]:
    """Each predicted code's confidence, from the coder's ``{code as written: probability}``: the written codes
    are read as the answer is (:func:`read_codes`), and a code written in several forms takes the lowest."""
    by_code: dict[str, float] = {}
    for written, value in given.items():
        for code in read_codes(system, written):
            by_code[code] = min(by_code.get(code, value), value)
    return [by_code.get(code) for code in predicted]


def score_document(system: CodeSystem, gold: Iterable[str], text: str,
                   confidences: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The per-document fields of a record, from the raw answer text (and ``confidences``, the coder's per
    code: then ``code_confidences``, one per predicted code, is among them)."""
    gold_set = set(gold)
    predicted = read_codes(system.name, text)
    fabricated, invalid = [], []
    for code in predicted:
        entry = system.lookup(code)
        if entry is None:  # as a code query's answer: an ICD-9-CM header (250, 250.0) exists, it is not made up
            fabricated.append(code)
            invalid.append(code)
        elif not entry.billable:
            invalid.append(code)
    precision, recall, f1 = prf(gold_set, predicted)
    _, _, category_f1 = prf({category(system, c) for c in gold_set},
                             {category(system, c) for c in predicted})
    tp = len(gold_set & set(predicted))
    per_code = {} if confidences is None else {"code_confidences": predicted_confidences(system.name, predicted,
                                                                                          confidences)}
    return {
        "codes": list(predicted),
        "predicted_codes": list(predicted),
        "n_codes": len(predicted),
        "true_positives": tp,
        "false_positives": len(predicted) - tp,
        "false_negatives": len(gold_set) - tp,
        "set_match": set(predicted) == gold_set,
        "exact_match": set(predicted) == gold_set,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "category_f1": category_f1,
        "n_invalid": len(invalid),
        "n_fabricated": len(fabricated),
        "invalid_codes": invalid,
        "fabricated_codes": fabricated,
        **per_code,
    }


def unscored_document_fields() -> dict[str, Any]:
    """A failed call's document fields: nothing predicted, nothing scored."""
    return {
        "predicted_codes": [], "true_positives": None, "false_positives": None, "false_negatives": None,
        "set_match": None, "exact_match": None, "precision": None, "recall": None, "f1": None,
        "category_f1": None, "n_invalid": None, "n_fabricated": None, "invalid_codes": [],
        "fabricated_codes": [],
    }
