"""Answers read right: a labelled corpus of answers in the styles models write (tests/data/answer_corpus.jsonl).

Each item is one answer to a question about one system, with the codes the ``default`` profile must read
from it, in order. What "labelled" means, as the scorer uses the reading (``scoring/codes.score_answer``:
the first code is ``predicted_code``, the count is ``n_codes``):

- the codes the answer puts forward, in order of first appearance, each once (``e119 / E11.9`` is one code);
  the first is *the answer*, the one scored;
- several codes, a hedge (``E11.9 or E11.65``): all of them, the first is the answer, the rest count as
  over-generation;
- a range (``E11.0–E11.9``, ``E11.0 to E11.9``): both ends, so the answer is the range's first code and the
  range counts two codes; a category with its dash (``E11.-``) is the category;
- a code the answer rules out (``not E11.9``, ``rather than``, ``instead of``, ``excluding``, ``Excludes1:``),
  and the codes listed with it (``not A, B, or C``): not read. A negation *after* a code (``E11.9 (not
  otherwise specified)``, ``E11.9 is incorrect``) rules nothing out;
- a refusal: no code;
- what only looks like a code is not one: a dosage, a measurement or a duration (``500 mg``, ``150/95 mmHg``,
  ``96 consecutive hours``), a date, a year beside a code (ICD-9 reads ``2015`` as 201.5), a thousands group
  (``1,000``), a list's number (``10.``), a name (vitamin ``B12``, ``G6PD``, ``T2DM``, ``COVID-19``, ``CA 125``,
  ``O157``, the ``T10``-``T12`` vertebrae), another system's code.

Every labelled code exists in the real table of its system (CPT: the CPT code format, since no table
ships). The ``paper`` profile is checked against the authors' extraction on every answer, as written in
REFERENCE §1, "How the authors parsed".
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_medcode.codesystems import BUNDLED, SYSTEMS, load_system
from pytest_medcode.codesystems.cpt import CPT_FORMAT
from pytest_medcode.scoring.codes import score_answer
from pytest_medcode.scoring.parsing import extract, extract_paper

CORPUS = Path(__file__).parent / "data" / "answer_corpus.jsonl"
ITEMS: list[dict[str, Any]] = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]
#: The styles the corpus must hold (each one several times over, across systems).
STYLES = {
    "code-title", "code-line", "system-prefix", "lower-or-dotless", "markdown-bold", "code-span", "markdown-table",
    "json", "parentheses", "seventh-character", "range", "negation", "refusal", "several", "list", "sentence",
    "prose-after", "lookalike", "year", "dosage",
}


@pytest.mark.parametrize("item", ITEMS, ids=[item["id"] for item in ITEMS])
def test_the_default_profile_reads_the_answer_as_labelled(item: dict[str, Any]) -> None:
    parsed = extract(item["system"], item["answer"])
    assert list(parsed.codes) == item["codes"], (
        f"{item['id']}: {item['answer']!r} read as {list(parsed.codes)}, labelled {item['codes']}"
        + (f" ({item['note']})" if item.get("note") else ""))
    assert parsed.predicted == (item["codes"][0] if item["codes"] else None)


def test_the_corpus_is_large_and_covers_every_style_and_system() -> None:
    assert len(ITEMS) >= 300
    assert len({item["id"] for item in ITEMS}) == len(ITEMS)
    assert {item["style"] for item in ITEMS} == STYLES
    per_system = Counter(item["system"] for item in ITEMS)
    assert set(per_system) == set(SYSTEMS) and min(per_system.values()) >= 20, per_system
    assert sum(not item["codes"] for item in ITEMS) >= 10  # refusals
    assert sum(len(item["codes"]) > 1 for item in ITEMS) >= 25  # several codes and ranges


def test_every_labelled_code_exists_in_its_real_table() -> None:
    """A label must be a code a right answer can have: the canonical spelling of a row of the bundled table
    (a category such as ``E11`` or ``I20`` counts: an answer may name one), or a CPT-shaped code."""
    unknown = []
    for item in ITEMS:
        for code in item["codes"]:
            if item["system"] == "cpt":
                known = CPT_FORMAT.match(code) is not None
            else:
                entry = load_system(item["system"]).lookup(code)
                known = entry is not None and entry.code == code
            if not known:
                unknown.append(f"{item['id']}: {code}")
    assert unknown == []


def test_the_scorer_scores_the_first_labelled_code_and_counts_them_all() -> None:
    """What the labels mean for a case's record: the first code is ``predicted_code``, scored against the
    reference; ``n_codes`` counts every one. CPT is left out here (its table is the user's file)."""
    for item in (i for i in ITEMS if i["system"] in (*BUNDLED, "icd10pcs")):
        table = load_system(item["system"])
        reference = item["codes"][0] if item["codes"] else table.example
        record = score_answer(table, reference, item["answer"])
        assert record["predicted_code"] == (item["codes"][0] if item["codes"] else None), item["id"]
        assert (record["codes"], record["n_codes"]) == (item["codes"], len(item["codes"])), item["id"]
        assert record["exact_match"] is bool(item["codes"]), item["id"]


# -- the paper profile: the authors' extraction, written out again from REFERENCE §1 ------------------------------

def authors_extraction(system: str, answer: str) -> str | None:
    """First match only, then the trailing "." stripped; ICD-9: a 4-5 digit run anywhere first, dotted after
    its 3rd digit; no match, no code."""
    if system == "icd9cm":
        run = re.search(r"\d{4,5}", answer)
        if run:
            return run.group()[:3] + "." + run.group()[3:]
        match = re.search(r"(\d{3})[.]?\d{0,2}|[A-Z]\d{2}[.]?\d{0,2}", answer)
    elif system == "icd10cm":
        match = re.search(r"([A-Z]\d{2})[.]?\d{0,3}[A-Z]?", answer)
    else:
        match = re.search(r"\d+", answer)
    code = match.group().rstrip(".") if match else ""
    return code or None


@pytest.mark.parametrize("system", ["icd10cm", "icd9cm", "cpt"])
def test_the_paper_profile_agrees_with_the_authors_extraction_on_every_answer(system: str) -> None:
    """Every corpus answer read as an answer to each of the study's systems: 100 % agreement."""
    read = [(item["id"], extract_paper(system, item["answer"]).predicted, authors_extraction(system, item["answer"]))
            for item in ITEMS]
    assert [row for row in read if row[1] != row[2]] == []


# -- every code of the tables, written with its title ---------------------------------------------------------------

FORMS = {
    "code title": lambda code, title: f"{code} {title}",
    "title (code)": lambda code, title: f"{title} ({code})",
    "lower case": lambda code, title: f"{code.lower()} {title.lower()}",
    "json": lambda code, title: json.dumps({"code": code, "description": title}),
}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("system", ["icd10cm", "icd9cm", "icd9cm-proc", "icd10pcs"])
def test_every_billable_code_with_its_title_reads_as_that_one_code(system: str, form: str) -> None:
    """Exhaustive: no title of the table holds something read as a code (``T9-T10 vertebra``, ``500-749
    grams``, ``2009 H1N1``, ``[STEC] O157``), and no title word is glued to a three-character code (``R52
    Pain`` is R52, not R52.PAIN)."""
    write = FORMS[form]
    misread = [(code, got) for code, title in load_system(system).billable_codes()
               if (got := extract(system, write(code, title)).codes) != (code,)]
    assert misread == []
