"""From a model's raw answer to the codes it names.

Every code of the asked system is extracted, in order of appearance and without repeats; the
first is the prediction and the count is kept (over-generation is a finding in itself). The
``default`` profile reads whole codes in the forms models write (lower case, no dot, a 7th
character); the ``paper`` profile reproduces the authors' extraction to the letter (first match only,
their patterns, trailing dot stripped), so a run can be scored the way the study scored it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pytest_medcode.codesystems.normalize import dot_icd9cm, dot_icd9cm_proc, dot_icd10cm, key

# Codes stand on word boundaries; letters, digits and dots around them mean it is a longer token.
_L, _R = r"(?<![0-9A-Za-z.])", r"(?![0-9A-Za-z]|\.[0-9A-Za-z])"

# re.ASCII: \d must not match full-width or other Unicode digits ("２５０.００" is not a code).
DEFAULT_PATTERNS: dict[str, re.Pattern[str]] = {
    # A letter, then a digit (or the A of the 2026 QA0 category), then a digit or letter (C4A, D3A).
    "icd10cm": re.compile(_L + r"[A-Za-z](?:\d|[Aa](?=\d))[0-9A-Za-z](?:\s?\.?\s?[0-9A-Za-z]{1,4})?" + _R, re.ASCII),
    "icd9cm": re.compile(_L + r"(?:[Vv]\d{2}(?:\.?\d{1,2})?|[Ee]\d{3}(?:\.?\d)?|\d{3}(?:\.?\d{1,2})?)" + _R, re.ASCII),
    "icd9cm-proc": re.compile(_L + r"\d{2}(?:\.?\d{1,2})?" + _R, re.ASCII),
    "cpt": re.compile(_L + r"\d{4}[0-9FTft]" + _R, re.ASCII),
    # Seven characters, no I or O; a section value first (0-9, B C D F G H X); a digit somewhere, so a
    # seven-letter word ("Surgery") is not read as a code.
    "icd10pcs": re.compile(_L + r"(?=[0-9A-Za-z]{0,6}\d)[0-9BCDFGHXbcdfghx][0-9A-HJ-NP-Za-hj-np-z]{6}" + _R,
                           re.ASCII),
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


def _same(k: str) -> str:
    return k


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
    """Whole codes of ``system`` in ``text``, canonicalised (``e11.9`` → ``E11.9``)."""
    dot = _DOT.get(system, _same)
    seen: dict[str, None] = {}
    for match in DEFAULT_PATTERNS.get(system, GENERIC).finditer(text or ""):
        seen.setdefault(dot(key(match.group(0))))
    return Parsed(tuple(seen))


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
    text = str(text or "")
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
