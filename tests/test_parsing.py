"""Answer parsing: every code of the asked system, canonical, in order, without repeats (default profile);
the authors' first-match extraction, to the letter (paper profile)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_medcode.codesystems import SYSTEMS, load_system
from pytest_medcode.codesystems.normalize import key
from pytest_medcode.scoring.parsing import extract, extract_paper


@pytest.mark.parametrize(
    ("system", "answer", "codes"),
    [
        ("icd10cm", "Code: E11.9", ("E11.9",)),
        ("icd10cm", "Code: e119", ("E11.9",)),
        ("icd10cm", "Code: ICD10CM: T38.3X5A", ("T38.3X5A",)),  # the 7th character is kept
        ("icd10cm", "E11.9, E11.65 or E11.9 again", ("E11.9", "E11.65")),
        ("icd10cm", "Code: E11.9.", ("E11.9",)),
        ("icd10cm", "Code: QA0.0149", ("QA0.0149",)),  # 2026: a letter in second place
        ("icd10cm", "Code: C4A.9 (Code: ICD10CM)", ("C4A.9",)),
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


@settings(deadline=None)  # the first example may build the code table
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


# -- the paper profile: the authors' extraction (Code/LLM.py) -------------------------------------------------


@pytest.mark.parametrize(
    ("system", "answer", "code"),
    [
        ("icd10cm", "Code: E11.9", "E11.9"),
        ("icd10cm", "Code: T38.3X5A", "T38.3X"),  # their pattern cuts the 7th character
        ("icd10cm", "Code: E119", "E119"),  # kept as written: not the canonical E11.9
        ("icd10cm", "Code: e11.9", None),  # upper case only
        ("icd10cm", "Code: E11.9.", "E11.9"),  # trailing dot stripped
        ("icd10cm", "Code: E11.", "E11"),
        ("icd10cm", "E11.9, E11.65 or E10.9", "E11.9"),  # first match only
        ("icd10cm", "Code: ICD10CM: E11.9", "D10C"),  # no word boundaries: the system name matches first
        ("icd10cm", "Code: M24.131", "M24.131"),
        ("icd9cm", "Code: 250.00", "250.00"),
        ("icd9cm", "Code: 045.10", "045.10"),
        ("icd9cm", "Code: 25000", "250.00"),  # a 4-5 digit run gets a dot after the 3rd digit
        ("icd9cm", "Code: 250.00 (ICD-9, 2015)", "201.5"),  # ... anywhere, and it wins: the year
        ("icd9cm", "Code: E8490", "849.0"),  # ... even inside an E code
        ("icd9cm", "Code: E849.0", "E849"),  # [A-Z]\d{2}[.]?\d{0,2}: E84 + 9
        ("icd9cm", "Code: V58.61", "V58.61"),
        ("icd9cm", "Code: 250.", "250"),
        ("icd9cm", "no idea", None),
        ("cpt", "Code: 84120", "84120"),
        ("cpt", "Code: 1. 99213", "1"),  # the first run of digits, whatever its length
        ("cpt", "Code: 992134", "992134"),
        ("cpt", "Code: none", None),
        ("icd9cm-proc", "Code: 81.54", "81.54"),  # not in the study: their ICD-9 rule at the 2nd digit
        ("icd9cm-proc", "Code: 8154", "81.54"),
    ],
)
def test_paper_profile_reads_the_first_match_as_the_authors_did(system: str, answer: str, code: str | None) -> None:
    parsed = extract(system, answer, "paper")
    assert parsed.predicted == code
    assert parsed.codes == ((code,) if code else ())


ANSWER_TEXT = st.text(alphabet="0123456789.ABCDEVXMT efcode:,\n-", max_size=60)


@given(st.sampled_from(sorted(SYSTEMS)), ANSWER_TEXT)
def test_paper_code_is_a_substring_transform_of_the_answer(system: str, text: str) -> None:
    """What the paper profile returns is in the answer as written, or is a digit run there with a dot put in."""
    parsed = extract_paper(system, text)
    assert len(parsed.codes) <= 1
    for code in parsed.codes:
        assert code and not code.endswith(".")
        assert code in text or (code.count(".") == 1 and code.replace(".", "") in text)


@given(st.sampled_from(sorted(SYSTEMS)), st.text(max_size=80))
def test_paper_profile_never_fails_on_any_text(system: str, text: str) -> None:
    parsed = extract_paper(system, text)
    for code in parsed.codes:
        assert code in text or code.replace(".", "") in text


@settings(deadline=None)
@given(st.sampled_from(["icd10cm", "icd9cm", "icd9cm-proc"]), st.text(alphabet="0123456789.AEVTXaev ", max_size=12))
def test_parsed_codes_are_canonical_and_were_in_the_answer(system: str, text: str) -> None:
    table = load_system(system)
    for code in extract(system, text).codes:  # what the parser returns is already canonical
        assert table.canonical(code) == code
        assert code.replace(".", "") in key(text)  # and its characters were in the answer, in order


@pytest.mark.parametrize(
    ("system", "text", "codes"),
    [
        ("icd10cm", "e119 or E11.9", ("E11.9",)),  # two spellings of one code: one code
        ("icd10cm", "t383x5a, then T38.3X5D", ("T38.3X5A", "T38.3X5D")),
        ("icd9cm", "25000 / v5861 / E8490", ("250.00", "V58.61", "E849.0")),
        ("icd9cm-proc", "8154 or 81.54", ("81.54",)),
    ],
)
def test_normalisation_of_known_answers(system: str, text: str, codes: tuple[str, ...]) -> None:
    assert extract(system, text).codes == codes


@pytest.mark.parametrize("system", ["icd9cm", "icd9cm-proc", "icd10cm"])
def test_every_billable_code_is_read_back_from_the_answer_format(system: str) -> None:
    """Exhaustive, not sampled: a new code shape in a release (2026's QA0.0149) must not go unread."""
    codes = [code for code, _ in load_system(system).billable_codes()]
    missed = [code for code in codes if extract(system, f"Code: {code}").predicted != code]
    assert missed == []


# -- a user's own system (codesystems/user.py): any token with a digit, compared as the table's keys -------------


def test_a_user_systems_codes_are_every_token_with_a_digit_as_its_keys() -> None:
    answer = "SNOMED CT: 22298006 (Myocardial infarction), 22298006 again; LOINC 2345-7; payer ab-12.3"
    assert extract("snomed", answer).codes == ("22298006", "2345-7", "AB-123")
    assert extract("snomed", "Myocardial infarction, not 22298006: 57054005").codes == ("57054005",)


def test_the_paper_profile_reads_a_user_systems_first_code_as_its_key() -> None:
    assert extract_paper("snomed", "Code: ab-12.3 and 2345-7").codes == ("AB-123",)
    assert extract_paper("snomed", "no code in this answer").codes == ()


@pytest.mark.parametrize("system", [*sorted(SYSTEMS), "snomed"])
@pytest.mark.parametrize("profile", ["default", "paper"])
def test_no_answer_reads_as_no_code(system: str, profile: str) -> None:
    """An empty answer, or none at all (a failed call's raw answer is None), names no code."""
    for text in ("", None):
        assert extract(system, text, profile) == extract(system, "", profile)  # type: ignore[arg-type]
        assert extract(system, text, profile).codes == ()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("system", "answer", "codes"),
    [
        ("icd10cm", "Or E11.65, if hyperglycemia is documented.", ("E11.65",)),  # "or" alone negates nothing
        ("icd10cm", "E11.9. Type 2 diabetes mellitus without complications", ("E11.9",)),  # not a list's number
        ("icd9cm", "486. Pneumonia, organism unspecified", ("486",)),  # three digits are no list's number
        ("icd9cm-proc", "Code: 99.04 (platelets 12,500)", ("99.04",)),  # a thousands group, either side of it
        ("icd9cm-proc", "Code: 99.04 (platelets 12,500/uL)", ("99.04",)),
        ("icd9cm", "In 2015 ICD-9-CM was replaced.", ()),  # a year said to be one at the answer's start
        ("icd9cm", "The 2013 edition lists no such code.", ()),  # ... or by the word after it
        ("icd9cm", "Code: 2013", ("201.3",)),  # alone, a dotless code
        ("icd10cm", "Sepsis due to Escherichia coli: A41.51", ("A41.51",)),  # only an O after coli is a serotype
    ],
)
def test_what_only_looks_like_a_code_is_not_read(system: str, answer: str, codes: tuple[str, ...]) -> None:
    assert extract(system, answer).codes == codes
