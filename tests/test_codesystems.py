"""The code tables: sizes from the official releases, canonical forms, headers, user CPT files."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_medcode.codesystems import CodeFileError, load_system
from pytest_medcode.codesystems.normalize import key


@pytest.mark.parametrize(
    ("name", "billable"), [("icd9cm", 14_567), ("icd9cm-proc", 3_882), ("icd10cm", 74_719)]
)
def test_bundled_sizes_match_the_official_releases(name: str, billable: int) -> None:
    assert len(load_system(name).billable_codes()) == billable


@pytest.mark.parametrize(
    ("name", "written", "canonical", "is_billable"),
    [
        ("icd10cm", "e11.9", "E11.9", True),
        ("icd10cm", "E119", "E11.9", True),
        ("icd10cm", " E11 .9 ", "E11.9", True),
        ("icd10cm", "T38.3X5A", "T38.3X5A", True),
        ("icd10cm", "E11", "E11", False),  # a category: exists, not billable
        ("icd10cm", "B20", "B20", True),  # one-code block: the code wins
        ("icd9cm", "25000", "250.00", True),
        ("icd9cm", "250.0", "250.0", False),  # derived subcategory header
        ("icd9cm", "v5861", "V58.61", True),
        ("icd9cm", "E8490", "E849.0", True),
        ("icd9cm", "E849", "E849", False),
        ("icd9cm-proc", "8154", "81.54", True),
    ],
)
def test_lookup_accepts_the_forms_models_write(name: str, written: str, canonical: str, is_billable: bool) -> None:
    entry = load_system(name).lookup(written)
    assert entry is not None
    assert entry.code == canonical
    assert entry.billable is is_billable


@pytest.mark.parametrize(("name", "code"), [("icd10cm", "Z99.999"), ("icd10cm", "A00-A09"), ("icd9cm", "999.99")])
def test_codes_that_do_not_exist_are_not_found(name: str, code: str) -> None:
    assert load_system(name).lookup(code) is None


def test_every_billable_code_is_its_own_canonical_form() -> None:
    for name in ("icd9cm", "icd9cm-proc", "icd10cm"):
        system = load_system(name)
        for code, description in system.billable_codes():
            assert system.canonical(code) == code
            assert description


def test_table_records_its_release() -> None:
    system = load_system("icd10cm")
    assert system.version.startswith("2026")
    assert system.table.schema.metadata[b"version"].decode() == system.version


@pytest.mark.parametrize(
    ("written", "expected"), [(" e11.9 ", "E119"), ("E11 .9", "E119"), ("t38.3x5a", "T383X5A"), ("250.00", "25000")]
)
def test_key_of_known_forms(written: str, expected: str) -> None:
    assert key(written) == expected
    assert key(expected) == expected  # a key is its own key


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789. ", max_size=12))
def test_key_drops_dots_and_spaces_and_upper_cases(text: str) -> None:
    """Computed another way: keep every character but dots and spaces, upper-cased."""
    expected = "".join(ch for ch in text if ch not in ". ").upper()
    assert key(text) == expected
    assert key(key(text)) == expected


@pytest.mark.parametrize(
    ("name", "written", "canonical"),
    [
        ("icd9cm", "25000", "250.00"),  # dot after the 3rd character
        ("icd9cm", "e8490", "E849.0"),  # after the 4th for E codes
        ("icd9cm", "V5861", "V58.61"),
        ("icd9cm", "250", "250"),  # a category has no dot
        ("icd9cm-proc", "8154", "81.54"),  # procedures: after the 2nd digit
        ("icd10cm", "t383x5a", "T38.3X5A"),  # after the 3-character category
        ("icd10cm", "E11.", "E11"),
    ],
)
def test_canonical_of_known_forms(name: str, written: str, canonical: str) -> None:
    system = load_system(name)
    assert system.canonical(written) == canonical
    assert system.canonical(canonical) == canonical


@given(st.sampled_from(["icd9cm", "icd9cm-proc", "icd10cm"]), st.text(alphabet="0123456789VEA.", max_size=8))
def test_canonical_keeps_the_key_and_puts_at_most_one_dot_where_the_system_does(name: str, text: str) -> None:
    system = load_system(name)
    once = system.canonical(text)
    assert system.canonical(once) == once
    assert once.replace(".", "") == key(text)  # only the dot moves
    split = {"icd9cm": 4 if key(text).startswith("E") else 3, "icd9cm-proc": 2, "icd10cm": 3}[name]
    assert once == (key(text) if len(key(text)) <= split else key(text)[:split] + "." + key(text)[split:])


def test_cpt_from_a_user_file(tmp_path: Path) -> None:
    path = tmp_path / "cpt.csv"
    path.write_text("code,description\n99213,Office visit\n0001F,Heart failure assessed\n0042T,Perfusion CT\n")
    system = load_system("cpt", path)
    assert [c for c, _ in system.billable_codes()] == ["99213", "0001F", "0042T"]
    assert system.lookup("99213").description == "Office visit"
    assert "sha256" in system.version


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("code,description\n9921,short\n99213,ok\nABCDE,letters\n", "2 bad CPT row(s)"),
        ("code,description\n99213,a\n99213,b\n", "duplicate"),
        ("cpt,text\n99213,a\n", "missing column(s) code, description"),
        ("", "empty"),
        ("code,description\n99213,\n", "empty description"),
    ],
)
def test_bad_cpt_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "cpt.csv"
    path.write_text(content)
    with pytest.raises(CodeFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_system("cpt", path)


def test_cpt_is_not_bundled() -> None:
    with pytest.raises(CodeFileError, match="not bundled"):
        load_system("cpt")


def test_a_damaged_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDCODE_CACHE_DIR", str(tmp_path))
    from pytest_medcode.codesystems import SYSTEMS, _bundled_table, _cache_path

    spec = SYSTEMS["icd9cm-proc"]
    first = _bundled_table(spec)
    path = _cache_path(spec)
    assert pq.read_table(path).num_rows == first.num_rows
    path.write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="rebuilding damaged"):
        again = _bundled_table(spec)
    assert again.num_rows == first.num_rows
