"""Canonical code forms: the one spelling every table, parser and report uses.

Models write codes as ``e11.9``, ``E119``, ``E11 .9`` or ``E11.9.``; the tables store them without
dots. A *key* (upper case, no dots, no spaces) is what lookups use; the *canonical* form puts the
dot back where the classification puts it (the ``dot_*`` functions below, one per system).
"""

from __future__ import annotations

import re

_STRIP = re.compile(r"[\s.]+")


def key(code: str) -> str:
    """Lookup key: upper case, dots and white space removed (``' e11.9 '`` → ``'E119'``)."""
    return _STRIP.sub("", code).upper()


def dot_icd9cm(k: str) -> str:
    """ICD-9-CM diagnoses: dot after the 3rd character, after the 4th for E codes."""
    split = 4 if k.startswith("E") else 3
    return k if len(k) <= split else f"{k[:split]}.{k[split:]}"


def dot_icd9cm_proc(k: str) -> str:
    """ICD-9-CM procedures: dot after the 2nd digit."""
    return k if len(k) <= 2 else f"{k[:2]}.{k[2:]}"


def dot_icd10cm(k: str) -> str:
    """ICD-10-CM: dot after the 3-character category."""
    return k if len(k) <= 3 else f"{k[:3]}.{k[3:]}"


def dot_none(k: str) -> str:
    """CPT and other dotless systems."""
    return k
