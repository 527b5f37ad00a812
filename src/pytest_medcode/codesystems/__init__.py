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
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from pytest_medcode.codesystems import cpt, icd9cm, icd10cm, icd10pcs, user
from pytest_medcode.codesystems.cpt import CodeFileError
from pytest_medcode.codesystems.normalize import dot_icd9cm, dot_icd9cm_proc, dot_icd10cm, dot_none
from pytest_medcode.codesystems.table import TABLE_FORMAT, CodeSystem, Entry, TableRow, rows_to_table, write_atomic
from pytest_medcode.paths import cache_root

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["BUNDLED", "SYSTEMS", "CodeFileError", "CodeSystem", "Entry", "SystemSpec", "axes_of", "example_of",
           "level_names", "load_system", "name_user_system"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemSpec:
    name: str
    title: str
    prompt_name: str
    example: str
    dot: Callable[[str], str]
    release: str | None  # None: the user must bring the file
    rows: Callable[[], Iterator[TableRow]] | None
    axes: tuple[str, ...] = ()  # what each character of a code means, when each is one axis (ICD-10-PCS)
    level_names: dict[str, str] | None = None  # hierarchy levels as this system calls them


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
        # 0DTJ4ZZ, laparoscopic appendectomy: a real billable code of the most populous body system, with
        # letters, digits and the Z ("none") values, so the format line shows every kind of character.
        SystemSpec("icd10pcs", "ICD-10-PCS", "ICD10PCS", "0DTJ4ZZ", dot_none, icd10pcs.RELEASE, icd10pcs.rows,
                   axes=icd10pcs.AXES, level_names=icd10pcs.LEVEL_NAMES),
    )
}
#: Systems whose tables ship with the plugin's dependencies: the default selection (ICD-10-PCS is bundled
#: but asked only when selected, so the default benchmark keeps its size).
BUNDLED: tuple[str, ...] = tuple(n for n, s in SYSTEMS.items() if s.rows is not None and n != "icd10pcs")


def _cache_path(spec: SystemSpec) -> Path:
    slug = "".join(ch if ch.isalnum() else "_" for ch in spec.release or "user")
    return cache_root() / "codesystems" / f"{spec.name}-{slug}-f{TABLE_FORMAT}.parquet"


def _bundled_table(spec: SystemSpec) -> pa.Table:
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


def _user_rows(spec: SystemSpec, path: Path) -> Iterator[TableRow]:
    if spec.rows is None and spec.name not in SYSTEMS:  # the user's own system: codes, parents, billable
        return user.rows(path)
    if spec.name == "cpt":
        return cpt.rows(path)
    _, records = cpt.read_table_file(path, ("code", "description"))
    return iter([(spec.dot(r["code"].replace(".", "").upper()), r["description"], True, None, "code", None)
                 for r in records if r["code"]])


#: Titles of the user's own systems (``--medcode-codeset NAME:TITLE=PATH``), set when the options are read.
_TITLES: dict[str, str] = {}
#: The prompt's example code of each user system loaded in this process (for the example-echo check).
_USER_EXAMPLES: dict[str, str] = {}


def name_user_system(name: str, title: str | None) -> None:
    """Remember how the prompt names a user system (None: by its NAME)."""
    if title:
        _TITLES[name] = title
    else:
        _TITLES.pop(name, None)


def example_of(name: str) -> str | None:
    """The example code the prompt shows for a system (a user system's once its table is loaded)."""
    spec = SYSTEMS.get(name)
    return spec.example if spec else _USER_EXAMPLES.get(name)


def axes_of(name: str) -> tuple[str, ...]:
    """The axis each character of a code stands for (ICD-10-PCS), else ``()``."""
    spec = SYSTEMS.get(name)
    return spec.axes if spec else ()


def level_names(name: str) -> dict[str, str]:
    """Hierarchy level → the system's own word for it (ICD-10-PCS: section, body system, ...); empty for most."""
    spec = SYSTEMS.get(name)
    return dict(spec.level_names or {}) if spec else {}


def load_system(name: str, user_file: Path | None = None) -> CodeSystem:
    """The named system, from the user's file when given, else the bundled release.

    A name that is not built in is the user's own system, read from ``user_file`` (codesystems/user.py).
    Raises CodeFileError for an unusable user file, or a system (CPT, a user's own) with no file given.
    """
    stamp = None
    if user_file is not None:  # the same file edited, or the same relative path from another folder, is read anew
        user_file = Path(user_file).absolute()
        try:
            stat = user_file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            pass  # the loader says what is wrong with it
    return _load_system(name, user_file, _TITLES.get(name), stamp)


@functools.cache
def _load_system(name: str, user_file: Path | None, title: str | None, stamp: tuple[int, int] | None = None
                 ) -> CodeSystem:
    spec = SYSTEMS.get(name)
    if spec is None:
        if user_file is None:
            raise CodeFileError(f"{name} is not a built-in code system: give its table with "
                                f"--medcode-codeset {name}=PATH (code, description, optional parent, billable)")
        spec = SystemSpec(name, title or name, title or name, "", dot_none, None, None)
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
    example = spec.example
    if name not in SYSTEMS:
        example = _USER_EXAMPLES[name] = user.example(
            [(c, d) for c, d, b in zip(*(table.column(k).to_pylist() for k in ("code", "description", "billable")))
             if b])
    return CodeSystem(
        name=spec.name,
        title=spec.title,
        prompt_name=spec.prompt_name,
        example=example,
        version=version,
        table=table,
        dot=spec.dot,
    )
