"""Robustness variants: deterministic on every machine, different per seed, exact left alone, and a
case dimension of their own (ids, records, tables)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BENCHMARK
from pytest_medcode.codesystems import load_system
from pytest_medcode.dataset import variants
from pytest_medcode.dataset.cases import build_cases
from pytest_medcode.dataset.variants import VARIANTS, VariantError, parse_variants, perturb

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SAMPLE_SCRIPT = """
import json, sys
from pytest_medcode.codesystems import load_system
from pytest_medcode.dataset.variants import VARIANTS, perturb
pairs = load_system("icd10cm").billable_codes()[::2500]
print(json.dumps({f"{c}:{v}": perturb(d, v, int(sys.argv[1]), c).text for c, d in pairs for v in VARIANTS}))
"""


def _sample() -> list[tuple[str, str]]:
    return load_system("icd10cm").billable_codes()[::2500]


def _in_process(seed: int) -> dict[str, str]:
    return {f"{c}:{v}": perturb(d, v, seed, c).text for c, d in _sample() for v in VARIANTS}


def test_same_seed_same_text_in_another_process_with_another_hash_seed() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", SAMPLE_SCRIPT, "7"], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == _in_process(7)


def test_different_seeds_give_different_wording() -> None:
    a, b = _in_process(1), _in_process(2)
    for variant in ("typo", "reorder", "synonym"):
        keys = [k for k in a if k.endswith(f":{variant}")]
        assert sum(a[k] != b[k] for k in keys) >= len(keys) // 3, variant


def test_exact_is_the_official_description_untouched() -> None:
    for code, description in _sample():
        p = perturb(description, "exact", 3, code)
        assert p.text == description and not p.changed


def test_every_variant_changes_most_descriptions() -> None:
    pairs = _sample()
    for variant in ("typo", "reorder"):
        assert all(perturb(d, variant, 0, c).changed for c, d in pairs), variant


@pytest.mark.parametrize(
    ("variant", "description", "expected"),
    [
        ("abbrev", "Type 2 diabetes mellitus without complications", "T2DM w/o compls"),
        (
            "abbrev",
            "Displaced fracture of lateral end of right clavicle, initial encounter for closed fracture",
            "Displ fx of lateral end of R clavicle, init enc for closed fx",
        ),
        ("abbrev", "Chronic obstructive pulmonary disease, unspecified", "COPD, unsp"),
        ("lay", "Acute myocardial infarction, unspecified", "Sudden heart attack"),
        (
            "lay",
            "Fracture of shaft of right femur, initial encounter",
            "Broken bone of shaft of right thigh bone, first visit",
        ),
        ("lay", "Essential (primary) hypertension", "High blood pressure"),
    ],
)
def test_curated_tables(variant: str, description: str, expected: str) -> None:
    assert perturb(description, variant, 0, "X").text == expected


def test_reorder_turns_x_of_y_around_and_keeps_every_other_word() -> None:
    description = "Malignant neoplasm of ascending colon"
    text = perturb(description, "reorder", 0, "C18.2").text
    assert text == "ascending colon malignant neoplasm"
    words = "Chronic gout, right elbow, with tophus (tophi)"
    text = perturb(words, "reorder", 0, "M1A.021").text
    assert sorted(text.lower().replace(",", "").split()) == sorted(words.lower().replace(",", "").split())


def test_typo_keeps_the_words_recognisable() -> None:
    description = "Other specified disorders of kidney and ureter"
    text = perturb(description, "typo", 0, "N28.89").text
    assert text != description
    assert abs(len(text) - len(description)) <= 2
    assert len(text.split()) == len(description.split())


def test_synonym_falls_back_to_the_curated_table_without_wordnet(monkeypatch) -> None:
    monkeypatch.setattr(variants, "_wordnet", lambda: None)
    variants._synonyms.cache_clear()
    try:
        assert variants.synonym_source() == "curated"
        text = perturb("Fracture of femur", "synonym", 0, "S72.90").text
        assert text in {"Break of femur", "Fracture of thighbone", "Break of thighbone"}
    finally:
        variants._synonyms.cache_clear()


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=80), st.sampled_from(VARIANTS), st.integers(0, 2**31))
def test_any_text_gives_one_answer_per_seed_whatever_ran_before(text: str, variant: str, seed: int) -> None:
    """Same text for the same arguments, even after other seeds and a reseeded global ``random`` ran in
    between; and what every variant promises, checked without the variant's code: ``exact`` returns the
    text as given, the others a text with single spaces and ``changed`` saying whether it differs."""
    first = perturb(text, variant, seed, "C")
    perturb(text, variant, seed + 1, "C")
    random.seed(seed)
    random.random()
    again = perturb(text, variant, seed, "C")
    assert again == first
    if variant == "exact":
        assert first.text == text and not first.changed
    else:
        assert first.text == " ".join(first.text.split())
        assert first.changed == (first.text != text)


def test_parse_variants() -> None:
    assert parse_variants("exact, typo,typo") == ("exact", "typo")
    with pytest.raises(VariantError, match="unknown variant slang"):
        parse_variants("exact,slang")


def test_cases_and_ids() -> None:
    per_system = {"icd10cm": [("E11.9", "Type 2 diabetes mellitus without complications")]}
    cases = build_cases(
        ["gpt-4"], per_system, ("exact", "abbrev"), seed=0, temperatures=(0.2, 1.0), repeats=2
    )
    assert [c.id for c in cases][:3] == [
        "gpt-4-icd10cm-E11.9-t0.2-r0",
        "gpt-4-icd10cm-E11.9-t0.2-r1",
        "gpt-4-icd10cm-E11.9-t1-r0",
    ]
    assert cases[-1].id == "gpt-4-icd10cm-E11.9-abbrev-t1-r1"
    assert cases[-1].asked_description == "T2DM w/o compls"
    assert cases[-1].description == "Type 2 diabetes mellitus without complications"
    plain = build_cases(["gpt-4"], per_system)
    assert [c.id for c in plain] == ["gpt-4-icd10cm-E11.9"]  # ids of plain runs never change
    assert plain[0].variant == "exact" and plain[0].temperature is None and plain[0].repeat is None


def test_variants_through_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(
        "--medcode-system",
        "icd10cm",
        "--medcode-sample",
        "10",
        "--medcode-variant",
        "exact,typo,lay",
        "-p",
        "no:cacheprovider",
        "--medcode-no-similarity",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 30
    result.stdout.fnmatch_lines(
        [
            "*model*system*variant*exact match*",
            "*lookup*icd10cm*typo*",
            "exact match by variant*",
            "*model*system*exact*typo*lay*",
        ]
    )
    records = pq.read_table(pytester.path / "reports" / "latest" / "cases.parquet").to_pylist()
    assert [r["variant"] for r in records[:3]] == ["exact", "typo", "lay"]
    assert records[0]["perturbed"] is None and records[1]["perturbed"] != records[1]["description"]
    ids = {r["case_id"] for r in records}
    assert any(i.endswith("-typo") for i in ids) and any(i.count("-") == 2 for i in ids)


def test_unknown_variant_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest("--medcode-variant", "exact,slang")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --medcode-variant 'exact,slang': unknown variant slang; choose from *"]
    )
