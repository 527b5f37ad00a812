"""From a model's raw answer to the codes it names.

Every code of the asked system is extracted, in order of appearance and without repeats; the
first is the prediction and the count is kept (over-generation is a finding in itself). The
``default`` profile reads whole codes in the forms models write (lower case, no dot, a 7th
character) and leaves out what only looks like a code: a number with a unit (``500 mg``), a date, a year
beside a code, a thousands group, a list's number, vitamin ``B12``, the ``T11-T12`` vertebrae, and a code
the answer rules out (``not E11.9``). The ``paper`` profile reproduces the authors' extraction to the letter
(first match only, their patterns, trailing dot stripped), so a run can be scored the way the study
scored it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pytest_medcode.codesystems.normalize import dot_icd9cm, dot_icd9cm_proc, dot_icd10cm, key

# Codes stand on word boundaries; letters, digits and dots around them mean it is a longer token, and a
# backslash before means an escape (the \u00e9 of JSON written with ASCII escapes).
_L, _R = r"(?<![0-9A-Za-z.\\])", r"(?![0-9A-Za-z]|\.[0-9A-Za-z])"

# re.ASCII: \d must not match full-width or other Unicode digits ("２５０.００" is not a code).  # noqa: RUF003
DEFAULT_PATTERNS: dict[str, re.Pattern[str]] = {
    # A letter, then a digit (or the A of the 2026 QA0 category), then a digit or the A/B of C4A, C7B, D3A
    # (no other letter stands third: T2DM, G6PD, H2O are not codes); the rest with or without its dot, never
    # across a space (``A65 is`` is A65, not A65.IS).
    "icd10cm": re.compile(_L + r"[A-Za-z](?:\d|[Aa](?=\d))[0-9ABab](?:\.?[0-9A-Za-z]{1,4})?" + _R, re.ASCII),
    "icd9cm": re.compile(_L + r"(?:[Vv]\d{2}(?:\.?\d{1,2})?|[Ee]\d{3}(?:\.?\d)?|\d{3}(?:\.?\d{1,2})?)" + _R, re.ASCII),
    "icd9cm-proc": re.compile(_L + r"\d{2}(?:\.?\d{1,2})?" + _R, re.ASCII),
    "cpt": re.compile(_L + r"\d{4}[0-9FTft]" + _R, re.ASCII),
    # Seven characters, no I or O; a section value first (0-9, B C D F G H X); a digit somewhere, so a
    # seven-letter word ("Surgery", "BLADDER") is not read as a code. The few codes with no digit (imaging
    # DHYBFZZ, mental health GZFZZZZ) all end in two Z axes, which no seven-letter word of that alphabet does.
    "icd10pcs": re.compile(_L + r"(?:(?=[0-9A-Za-z]{0,6}\d)[0-9BCDFGHXbcdfghx][0-9A-HJ-NP-Za-hj-np-z]{6}"
                           r"|[BCDFGHXbcdfghx][A-HJ-NP-Za-hj-np-z]{4}[Zz]{2})" + _R, re.ASCII),
}
#: A user's own system (codesystems/user.py): any token with a digit in it, letters, digits, dots and
#: hyphens inside (SNOMED CT 22298006, LOINC 2345-7, a payer's AB-12.3); compared as the table's keys.
GENERIC = re.compile(_L + r"(?=[0-9A-Za-z.\-]*\d)[0-9A-Za-z](?:[0-9A-Za-z.\-]*[0-9A-Za-z])?" + _R, re.ASCII)
_DOT: dict[str, Callable[[str], str]] = {
    "icd10cm": dot_icd10cm,
    "icd9cm": dot_icd9cm,
    "icd9cm-proc": dot_icd9cm_proc,
    "cpt": lambda k: k,
    "icd10pcs": lambda k: k,
}

# -- what only looks like a code (the default profile) ---------------------------------------------------------
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# A quantity: a unit right after the number, or after a range it opens ("500-749 grams", "96 consecutive hours").
_UNIT = re.compile(
    r"(?:\s*(?:-|–|/|to)\s*[\d,.]+)?\s*(?:consecutive\s+)?"
    r"(?:mg|mcg|µg|μg|g|gm|grams?|kg|lbs?|pounds?|ml|cc|units?|iu|meq|mmol|mmhg|mm|cm|%|percent|hours?|hrs?"
    r"|minutes?|mins?|days?|weeks?|months?|years?|yrs?|bpm|ng|pg|dl|°\s?[fc]?|degrees?|[fc])(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# Names with a number in them: vitamin B12, COVID-19, ICD-10 (read as the procedure code 10 otherwise).
_NAME_BEFORE = re.compile(r"(?:\bvitamin\s+|\bCOVID-|\bSARS-CoV-|\bICD-)$", re.IGNORECASE)
# A number that names a marker: CA 125, cancer antigen 125 (the digits alone; "breast CA 174.9" is a code).
_MARKER_BEFORE = re.compile(r"(?:\bantigen\s+|\bCA[- ]?)$", re.IGNORECASE)
# The E. coli serotype O157 (O157:H7, STEC O157), which reads like a dotless O15.7.
_SEROTYPE = (re.compile(r"(?:\bcoli\W{0,3}|\bSTEC\W{0,3})$", re.IGNORECASE), re.compile(r":H\d"))
# A digit group of a number written with thousands separators: 1,000 and 12,500.
_THOUSANDS_BEFORE, _THOUSANDS_AFTER = re.compile(r"(?<![\d.,])\d{1,3},$"), re.compile(r",\d{3}(?![\d.])")
# A numbered list's number at the start of a line ("10. 81.54"): only the two-digit procedure codes look so.
_LIST_NUMBER = (re.compile(r"(?:^|\n)[ \t>]*$"), re.compile(r"[.)]\s"))
# The thoracic vertebrae T10-T12 (no ICD-10-CM category): beside another level or before "vertebra".
_VERTEBRA = re.compile(r"[Tt]1[0-2]")
_LEVEL_BEFORE = re.compile(r"[CTLS]\d{1,2}\s?[-–/]\s?$", re.IGNORECASE)
_LEVEL_AFTER = re.compile(r"\s?[-–/]\s?[CTLS]\d|\s+vertebra", re.IGNORECASE)
# A date: 12/05/2013, 12-05-13, 05.12.2013, 2013-12-05 (read as the procedure codes 12 and 05 otherwise).
_DATE = re.compile(r"(?<![\d.])(?:\d{1,2}([/-])\d{1,2}\1(?:\d{4}|\d{2})|\d{1,2}\.\d{1,2}\.\d{4}|\d{4}-\d{1,2}-\d{1,2})"
                   r"(?![\d])")
# A year: 1900-2099 written as four digits, which ICD-9 reads as 190.0-209.9 when dotless.
_YEAR = re.compile(r"(?:19|20)\d\d")
_YEAR_BEFORE = re.compile(
    r"(?:\b(?:in|since|from|until|by|before|after|of|year|fy|fiscal\s+year|edition|version|revision|release"
    r"|effective|as\s+of)\s+|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+"
    r"(?:\d{1,2}(?:st|nd|rd|th)?,?\s+)?)$",
    re.IGNORECASE,
)
_YEAR_AFTER = re.compile(r"\s*(?:edition|version|revision|release|update|guidelines|h1n1|pandemic|season)\b",
                         re.IGNORECASE)
_YEAR_SYSTEMS = frozenset({"icd9cm", "icd9cm-proc"})
# A code the answer rules out: "not E11.9", "rather than E11.9", "do not use E11.9"; a list after it joined by
# commas, "or" or "nor" is ruled out with it ("not E11.65, E11.8, or E11.69").
_NEGATION = re.compile(
    r"(?:\bnot|n[’']t|\bnever|\brather\s+than|\binstead\s+of|\bother\s+than|\bexcept(?:\s+for)?|\bexcluding"
    r"|\bexcludes\d?:?)"
    r"(?:\s+(?:use|code|assign|choose|select|pick|report|bill)(?:\s+(?:it\s+)?as)?)?"
    r"(?:\s+(?:the\s+)?(?:code\s+)?)?[\s*_`\"'(\[]*$",
    re.IGNORECASE,
)
_NEGATION_GOES_ON = re.compile(r"[\s*_`\"')\]]*(?:/|,|,?\s*\bor\b|,?\s*\bnor\b)[\s*_`\"'(\[]*", re.IGNORECASE)
_BEFORE = 48  # characters of context looked at before a code


def _same(k: str) -> str:
    return k


def _looks_like_a_code_only(system: str, text: str, match: re.Match[str], dates: list[tuple[int, int]]) -> bool:
    """True when the token ``match`` is part of something else: a quantity, a date, a name, a list's number."""
    token, start, end = match.group(0), match.start(), match.end()
    if any(first <= start and end <= last for first, last in dates):
        return True
    before, after = text[max(0, start - _BEFORE) : start], text[end : end + _BEFORE]
    digits = token.isdigit()
    if _NAME_BEFORE.search(before) or (_NUMBER.fullmatch(token) and _UNIT.match(after)):
        return True
    if digits and (_MARKER_BEFORE.search(before) or _THOUSANDS_BEFORE.search(before)
                   or _THOUSANDS_AFTER.match(after)):
        return True
    if system == "icd10cm":
        if token[0].upper() == "O" and (_SEROTYPE[0].search(before) or _SEROTYPE[1].match(after)):
            return True
        if _VERTEBRA.fullmatch(token) and (_LEVEL_BEFORE.search(before) or _LEVEL_AFTER.match(after)):
            return True
    return bool(digits and len(token) <= 2 and _LIST_NUMBER[0].search(before) and _LIST_NUMBER[1].match(after))


def _year_shaped(system: str, match: re.Match[str]) -> bool:
    """A four-digit number 1900-2099 in an ICD-9 answer: a year, or a dotless code (extract_default decides)."""
    return system in _YEAR_SYSTEMS and _YEAR.fullmatch(match.group(0)) is not None


@dataclass(frozen=True)
class Parsed:
    codes: tuple[str, ...]  # canonical, distinct, in order of appearance

    @property
    def predicted(self) -> str | None:
        return self.codes[0] if self.codes else None

    @property
    def n_codes(self) -> int:
        return len(self.codes)


def extract_default(system: str, text: str) -> Parsed:
    """Whole codes of ``system`` in ``text``, canonicalised (``e11.9`` → ``E11.9``), in order, without repeats.

    Left out: what only looks like a code (see the module docstring), a code right after a negation (and
    the codes listed with it by commas, "or" or "nor"), and an ICD-9 year (``2015``, which reads as 201.5)
    when the words around it say it is a year or the answer names another code.
    """
    if not text:
        return Parsed(())
    pattern = DEFAULT_PATTERNS.get(system, GENERIC)
    found: list[tuple[str, bool]] = []  # (token, a year that may be a dotless code)
    dates = [m.span() for m in _DATE.finditer(text)]
    negated = False
    last_end = 0
    for match in pattern.finditer(text):
        start = match.start()
        before = text[max(last_end, start - _BEFORE) : start]
        negated = bool(_NEGATION.search(before)) or (negated and _NEGATION_GOES_ON.fullmatch(before) is not None)
        last_end = match.end()
        if negated or _looks_like_a_code_only(system, text, match, dates):
            continue
        if _year_shaped(system, match):
            if _YEAR_BEFORE.search(text[max(0, start - _BEFORE) : start]) or _YEAR_AFTER.match(text, match.end()):
                continue
            found.append((match.group(0), True))
        else:
            found.append((match.group(0), False))
    if any(not year for _, year in found):  # beside a code, a year is a year
        found = [(token, year) for token, year in found if not year]
    dot = _DOT.get(system, _same)
    return Parsed(tuple(dict.fromkeys(dot(key(token)) for token, _ in found)))


# The authors' patterns (Soroush et al., Code/LLM.py), verbatim: no word boundaries, upper case only, and
# Python's Unicode-aware \d, as theirs (README, "Profiles").
PAPER_PATTERNS: dict[str, re.Pattern[str]] = {
    "cpt": re.compile(r"\d+"),
    "icd10cm": re.compile(r"([A-Z]\d{2})[.]?\d{0,3}[A-Z]?"),
    "icd9cm": re.compile(r"(\d{3})[.]?\d{0,2}|[A-Z]\d{2}[.]?\d{0,2}"),
    # ICD-9-CM procedures were not in the study: their ICD-9 rule moved to the procedures' dot position.
    "icd9cm-proc": re.compile(r"\d{2}[.]?\d{0,2}"),
    # ICD-10-PCS was not in the study either: the first seven-character run in the PCS alphabet.
    "icd10pcs": re.compile(r"[0-9A-HJ-NP-Z]{7}"),
}
# ICD-9: a run of digits anywhere that is written without its dot; it gets the dot and wins over the pattern.
_PAPER_DOTLESS: dict[str, tuple[re.Pattern[str], int]] = {
    "icd9cm": (re.compile(r"\d{4,5}"), 3),
    "icd9cm-proc": (re.compile(r"\d{3,4}"), 2),
}


def extract_paper(system: str, text: str) -> Parsed:
    """The authors' extraction: the first match only, as written, trailing dots stripped (``Code/LLM.py``).

    ``T38.3X5A`` reads as ``T38.3X``; an ICD-9 answer's first run of 4-5 digits anywhere (a year too)
    gets a dot after the third digit and wins; ``e11.9`` is not read at all. No match → no code.
    """
    if not text:
        return Parsed(())
    text = str(text)
    dotless = _PAPER_DOTLESS.get(system)
    if dotless is not None:
        run = dotless[0].search(text)
        if run is not None:
            digits, split = run.group(0), dotless[1]
            return Parsed((f"{digits[:split]}.{digits[split:]}",))
    pattern = PAPER_PATTERNS.get(system)
    if pattern is None:  # a user's own system (not in the study): its first code, as the table spells keys
        found = GENERIC.search(text)
        return Parsed((key(found.group(0)),) if found else ())
    match = pattern.search(text)
    code = match.group(0).rstrip(".") if match else ""
    return Parsed((code,) if code else ())


PROFILES: dict[str, Callable[[str, str], Parsed]] = {"default": extract_default, "paper": extract_paper}


def extract(system: str, text: str, profile: str = "default") -> Parsed:
    return PROFILES[profile](system, text)
