"""Answer parsing: every code of the asked system, canonical, in order, without repeats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_medcode.codesystems import load_system
from pytest_medcode.parsing import extract


@pytest.mark.parametrize(
    ("system", "answer", "codes"),
    [
        ("icd10cm", "Code: E11.9", ("E11.9",)),
        ("icd10cm", "Code: e119", ("E11.9",)),
        ("icd10cm", "Code: ICD10CM: T38.3X5A", ("T38.3X5A",)),  # the 7th character is kept
        ("icd10cm", "E11.9, E11.65 or E11.9 again", ("E11.9", "E11.65")),
        ("icd10cm", "Code: E11.9.", ("E11.9",)),
        ("icd10cm", "I cannot answer that.", ()),
        ("icd9cm", "Code: 250.00", ("250.00",)),
        ("icd9cm", "Code: V58.61 and E849.0", ("V58.61", "E849.0")),
        ("icd9cm-proc", "Code: 81.54", ("81.54",)),
        ("cpt", "Code: 99213 (or 0001F)", ("99213", "0001F")),
        ("cpt", "Code: 992134", ()),  # six digits is not a CPT code
    ],
)
def test_extracts_codes(system: str, answer: str, codes: tuple[str, ...]) -> None:
    parsed = extract(system, answer)
    assert parsed.codes == codes
    assert parsed.predicted == (codes[0] if codes else None)
    assert parsed.n_codes == len(codes)


@given(st.sampled_from(["icd10cm", "icd9cm"]), st.data())
def test_a_code_written_alone_is_read_back(system: str, data: st.DataObject) -> None:
    codes = load_system(system).billable_codes()
    code, _ = codes[data.draw(st.integers(0, len(codes) - 1))]
    form = data.draw(st.sampled_from([code, code.lower(), code.replace(".", ""), f"Code: {code}."]))
    assert extract(system, form).predicted == code


@given(st.text(max_size=200))
def test_parsing_never_fails_and_returns_canonical_codes(text: str) -> None:
    system = load_system("icd10cm")
    parsed = extract("icd10cm", text)
    assert len(set(parsed.codes)) == len(parsed.codes)
    for code in parsed.codes:
        assert system.canonical(code) == code
