"""ICD-10-CM (April 2026 release) from the tabular list shipped by ``simple-icd-10-cm``.

The package answers one code at a time and is slow to import (about 1.5 s); it is read once to
build the cached table and never imported on a cached run.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

from pytest_medcode.codesystems.normalize import dot_icd10cm

if TYPE_CHECKING:
    from pytest_medcode.codesystems.table import TableRow

RELEASE = "2026 (April 1, 2026)"


def rows() -> Iterator[TableRow]:
    with warnings.catch_warnings():  # the package reads its data with deprecated importlib APIs
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm as cm

        yield from _rows(cm)


def _rows(cm: ModuleType) -> Iterator[TableRow]:

    seen: set[tuple[str, str]] = set()
    for code in cm.get_all_codes(True):
        # One-code blocks ("B20") are listed twice: first as the block, then as the category.
        if cm.is_chapter(code):
            level = "chapter"
        elif cm.is_block(code) and (code, "block") not in seen:
            level = "block"
        else:
            level = "category" if cm.is_category(code) else "subcategory"
        if (code, level) in seen:
            continue
        seen.add((code, level))
        # Ask for the block reading of an ambiguous name only when it is the block row.
        as_block = level == "block"
        description = cm.get_description(code, prioritize_blocks=as_block)
        leaf = level not in ("chapter", "block") and cm.is_leaf(code)
        parent = None if level == "chapter" else cm.get_parent(code, prioritize_blocks=as_block) or None
        ancestors = cm.get_ancestors(code, prioritize_blocks=as_block)
        chapter = code if level == "chapter" else (ancestors[-1] if ancestors else None)
        yield (
            dot_icd10cm(code.replace(".", "")) if level not in ("chapter", "block") else code,
            description,
            leaf,
            parent,
            "code" if leaf else level,
            chapter,
        )
