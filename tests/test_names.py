"""Every module, object and source path the code and the docs name exists: a comment or a docstring that
names ``pytest_medcode.coders.resolve_coder`` after the module moved is caught here, not by a reader."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from pytest_medcode.asking.coders import ENTRY_POINT_GROUP
from pytest_medcode.runs.folder import SCHEMA_METADATA_KEY

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "perf").glob("*.py")),
           *sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "perf" / "README.md"]
DOTTED = re.compile(r"pytest_medcode(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?![\wǁ])")  # ǁ: a mutmut method name
PATH = re.compile(r"pytest_medcode/[A-Za-z0-9_/]+\.py")


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_dotted_name_in_the_sources_and_docs_resolves() -> None:
    names = {(path.relative_to(ROOT).as_posix(), name) for path in SOURCES
             for name in DOTTED.findall(path.read_text(encoding="utf-8"))}
    # Names that are not modules: the coders' entry-point group, the cases file's metadata key.
    allowed = {ENTRY_POINT_GROUP, SCHEMA_METADATA_KEY.decode()}
    stale = sorted((where, name) for where, name in names
                   if name not in allowed and "__mutmut_" not in name and not _resolves(name))
    assert stale == []


def test_every_source_path_in_the_sources_and_docs_exists() -> None:
    stale = sorted((path.relative_to(ROOT).as_posix(), name) for path in SOURCES
                   for name in PATH.findall(path.read_text(encoding="utf-8"))
                   if not (ROOT / "src" / name).is_file())
    assert stale == []


def test_the_coders_docstring_names_the_entry_point_group_they_are_loaded_from() -> None:
    import pytest_medcode.asking.coders as coders

    assert f"``{ENTRY_POINT_GROUP}`` entry-point group" in (coders.__doc__ or "")
