"""The lookup coder: a dictionary lookup on official wording (≥ 99 % on 1,000 ICD-10-CM codes), fuzzy
retrieval for the rest, deterministic ties, one index per system per process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import BENCHMARK
from pytest_medcode.asking.coders.lookup import LookupIndex, index_for
from pytest_medcode.codesystems import load_system
from pytest_medcode.dataset.cases import select_codes
from pytest_medcode.dataset.variants import perturb

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_lookup_is_at_least_99_percent_on_1000_icd10cm_exact_descriptions(pytester: pytest.Pytester) -> None:
    """The issue's target, measured through the plugin (the same run as `pytest benchmarks/`)."""
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(
        "--model",
        "lookup",
        "--medcode-system",
        "icd10cm",
        "--medcode-sample",
        "1000",
        "-q",
        "-p",
        "no:cacheprovider",
        "--medcode-no-similarity",
    )
    summary = json.loads((pytester.path / "reports" / "latest" / "summary.json").read_text())
    row = summary["results"][0]
    assert row["answered"] == 1000
    assert row["exact_match"]["value"] >= 0.99, result.stdout.str()[-3000:]


def test_duplicate_descriptions_are_the_ceiling() -> None:
    """ICD-10-CM has no two billable codes with one description; ICD-9-CM has five such pairs."""
    assert index_for(load_system("icd10cm")).duplicates == 0
    assert index_for(load_system("icd9cm")).duplicates == 5
    assert index_for(load_system("icd9cm-proc")).duplicates == 0


def test_one_index_per_system_per_process() -> None:
    """Built once per system (every case of a run shares it), and it is that system's index: 3,882 billable
    ICD-9-CM procedure codes (the CMS v32 release), and 81.54's official wording finds 81.54."""
    system = load_system("icd9cm-proc")
    index = index_for(system)
    assert index_for(load_system("icd9cm-proc")) is index
    assert index_for(load_system("icd10cm")) is not index
    assert len(index) == 3_882
    description = dict(system.billable_codes())["81.54"]
    assert index.best(description) == "81.54"


def _user_system(tmp_path: Path, rows: list[tuple[str, str]]):
    path = tmp_path / "table.csv"
    path.write_text("code,description\n" + "".join(f'{c},"{d}"\n' for c, d in rows))
    return load_system("icd10cm", path)


def test_ties_go_to_table_order_then_to_the_shorter_description(tmp_path: Path) -> None:
    system = _user_system(
        tmp_path,
        [
            ("A00.1", "Cholera due to Vibrio cholerae"),
            ("A00.0", "Cholera due to Vibrio cholerae"),  # same words: the first row wins
            ("B00.0", "Eczema herpeticum"),
            ("B00.1", "Herpesviral vesicular dermatitis"),
            ("B00.2", "Herpesviral gingivostomatitis and pharyngotonsillitis"),
        ],
    )
    index = LookupIndex(system)
    assert index.duplicates == 1
    assert index.best("cholera due to vibrio cholerae") == "A00.1"
    assert index.best("CHOLERA  due to Vibrio cholerae ") == "A00.1"  # case and spaces do not matter
    assert [index.best("herpesviral dermatitis") for _ in range(3)] == ["B00.1"] * 3
    hits = index.search("Eczema herpeticum", 3)
    assert hits[0].code == "B00.0" and hits[0].score == 100.0 and len(hits) == 3


def test_fuzzy_search_finds_typos_and_reordered_wording() -> None:
    system = load_system("icd10cm")
    index = index_for(system)
    pairs = select_codes(system, 60, 0, None)
    started = time.perf_counter()
    for variant, floor in (("typo", 0.9), ("reorder", 0.95)):
        hits = sum(index.best(perturb(d, variant, 0, c).text) == c for c, d in pairs)
        assert hits / len(pairs) >= floor, variant
    per_query = (time.perf_counter() - started) / (2 * len(pairs))
    assert per_query < 0.5  # ~20 ms on an idle core; generous for a busy CI machine


def test_search_returns_k_candidates_best_first() -> None:
    index = index_for(load_system("icd10cm"))
    hits = index.search("Type 2 diabetes mellitus without complications", 15)
    assert len(hits) == 15 and hits[0].code == "E11.9"
    assert len({h.code for h in hits}) == 15
    scores = [h.score for h in hits[1:]]
    assert scores == sorted(scores, reverse=True)
    assert index.search("", 3) == []
