"""From a model's raw answer to the codes it names.

Every code of the asked system is extracted, in order of appearance and without repeats; the
first is the prediction and the count is kept (over-generation is a finding in itself). The
``default`` profile reads whole codes in the forms models write (lower case, no dot, a 7th
character); the ``paper`` profile, added beside it, reproduces the authors' extraction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pytest_medcode.codesystems.normalize import dot_icd9cm, dot_icd9cm_proc, dot_icd10cm, key

# Codes stand on word boundaries; letters, digits and dots around them mean it is a longer token.
_L, _R = r"(?<![0-9A-Za-z.])", r"(?![0-9A-Za-z]|\.[0-9A-Za-z])"

DEFAULT_PATTERNS: dict[str, re.Pattern[str]] = {
    "icd10cm": re.compile(_L + r"[A-Za-z]\d[0-9A-Za-z](?:\s?\.?\s?[0-9A-Za-z]{1,4})?" + _R),
    "icd9cm": re.compile(_L + r"(?:[Vv]\d{2}(?:\.?\d{1,2})?|[Ee]\d{3}(?:\.?\d)?|\d{3}(?:\.?\d{1,2})?)" + _R),
    "icd9cm-proc": re.compile(_L + r"\d{2}(?:\.?\d{1,2})?" + _R),
    "cpt": re.compile(_L + r"\d{4}[0-9FTft]" + _R),
}
_DOT: dict[str, Callable[[str], str]] = {
    "icd10cm": dot_icd10cm,
    "icd9cm": dot_icd9cm,
    "icd9cm-proc": dot_icd9cm_proc,
    "cpt": lambda k: k,
}


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
    dot = _DOT[system]
    seen: dict[str, None] = {}
    for match in DEFAULT_PATTERNS[system].finditer(text or ""):
        seen.setdefault(dot(key(match.group(0))))
    return Parsed(tuple(seen))


PROFILES: dict[str, Callable[[str, str], Parsed]] = {"default": extract_default}


def extract(system: str, text: str, profile: str = "default") -> Parsed:
    return PROFILES[profile](system, text)
