"""Code systems: the official tables the benchmark asks about and checks answers against.

``load_system(name)`` returns a :class:`CodeSystem`; bundled systems are built once from their
source packages and cached as Parquet under :func:`pytest_medcode.paths.cache_root`, so later
runs (and every xdist worker) load them in a fraction of a second.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from pytest_medcode.codesystems import cpt, icd9cm, icd10cm
from pytest_medcode.codesystems.cpt import CodeFileError
from pytest_medcode.codesystems.normalize import dot_icd9cm, dot_icd9cm_proc, dot_icd10cm, dot_none
from pytest_medcode.codesystems.table import TABLE_FORMAT, CodeSystem, Entry, rows_to_table, write_atomic
from pytest_medcode.paths import cache_root

__all__ = ["BUNDLED", "SYSTEMS", "CodeFileError", "CodeSystem", "Entry", "SystemSpec", "load_system"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemSpec:
    name: str
    title: str
    prompt_name: str
    example: str
    dot: Callable[[str], str]
    release: str | None  # None: the user must bring the file
    rows: Callable[[], Iterator[tuple]] | None


SYSTEMS: dict[str, SystemSpec] = {
    s.name: s
    for s in (
        SystemSpec("icd9cm", "ICD-9-CM", "ICD9CM", "045.10", dot_icd9cm, icd9cm.RELEASE, icd9cm.dx_rows),
        SystemSpec(
            "icd9cm-proc", "ICD-9-CM procedures", "ICD9CM", "81.54", dot_icd9cm_proc, icd9cm.RELEASE,
            icd9cm.proc_rows,
        ),
        SystemSpec("icd10cm", "ICD-10-CM", "ICD10CM", "M24.131", dot_icd10cm, icd10cm.RELEASE, icd10cm.rows),
        SystemSpec("cpt", "CPT", "CPT", "84120", dot_none, None, None),
    )
}
#: Systems whose tables ship with the plugin's dependencies: the default selection.
BUNDLED: tuple[str, ...] = tuple(n for n, s in SYSTEMS.items() if s.rows is not None)


def _cache_path(spec: SystemSpec) -> Path:
    slug = "".join(ch if ch.isalnum() else "_" for ch in spec.release or "user")
    return cache_root() / "codesystems" / f"{spec.name}-{slug}-f{TABLE_FORMAT}.parquet"


def _bundled_table(spec: SystemSpec):
    path = _cache_path(spec)
    if path.exists():
        try:
            # One thread, no pre-buffering: ~35 MB less resident memory per process than read_table's
            # defaults for an 11 MB table, and no slower at this size (every xdist worker loads it).
            return pq.ParquetFile(path).read(use_threads=False)
        except Exception as exc:  # a damaged cache is rebuilt, never fatal
            warnings.warn(f"pytest-medcode: rebuilding damaged code table cache {path}: {exc}", stacklevel=2)
    assert spec.rows is not None and spec.release is not None
    table = rows_to_table(spec.rows(), spec.release)
    try:
        write_atomic(table, path)
    except OSError as exc:
        warnings.warn(f"pytest-medcode: cannot cache code table at {path}: {exc}", stacklevel=2)
    return table


def _user_rows(spec: SystemSpec, path: Path) -> Iterator[tuple]:
    if spec.name == "cpt":
        return cpt.rows(path)
    _, records = cpt.read_table_file(path, ("code", "description"))
    return iter([(spec.dot(r["code"].replace(".", "").upper()), r["description"], True, None, "code", None)
                 for r in records if r["code"]])


@functools.cache
def load_system(name: str, user_file: Path | None = None) -> CodeSystem:
    """The named system, from the user's file when given, else the bundled release.

    Raises KeyError for an unknown name, CodeFileError for an unusable user file or a system
    (CPT) that has no bundled table.
    """
    spec = SYSTEMS[name]
    if user_file is not None:
        table = rows_to_table(_user_rows(spec, user_file), cpt.version(user_file))
        version = cpt.version(user_file)
    elif spec.rows is None:
        raise CodeFileError(
            f"{spec.title} descriptors are licensed and not bundled: give your own file with "
            f"--medcode-codeset {name}=PATH (CSV, TSV or Parquet with code and description columns)"
        )
    else:
        table = _bundled_table(spec)
        version = spec.release or ""
    return CodeSystem(
        name=spec.name,
        title=spec.title,
        prompt_name=spec.prompt_name,
        example=spec.example,
        version=version,
        table=table,
        dot=spec.dot,
    )
