"""Before the first paid call: can the run write everything it will write?

A report folder under a file, a read-only mount or a disk with no room used to fail at the very end,
after every call was paid for. These checks run at configure time and each problem is one line
(``pytest.UsageError``, exit 4). Nothing is created here: a folder that does not exist yet is checked
by writing a probe file into its nearest existing parent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pytest_medcode.asking.cache import CacheError, check_file
from pytest_medcode.redaction import mask_credentials

#: Rough bytes a case needs on disk: its cache row (with WAL copies) and its share of the run folder,
#: plus the answer itself (~4 bytes a token). Deliberately modest: a cached re-run needs far less.
BYTES_PER_CASE = 1024
BYTES_PER_TOKEN = 4
MARGIN_BYTES = 1 << 20
ALL_CODES = 75_000  # cases per system when every code is selected (ICD-10-CM has ~74k billable codes)


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_problem(folder: Path, what: str) -> str | None:
    """Why files cannot be written in ``folder`` (created if need be), or None when they can."""
    base = nearest_existing(folder)
    if not base.is_dir():
        return f"{what} {folder}: cannot create it, {base} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".medcode-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"{what} {folder}: cannot write in {base} ({exc.strerror or exc})"
    return None


def file_problem(path: Path, what: str) -> str | None:
    """Why an existing file cannot be opened for writing, or None."""
    if path.is_dir():
        return f"{what} {path}: is a folder, not a file"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{what} {path}: cannot write to it (read-only file or mount)"
    return None


def space_problem(folders: list[Path], needed: int, cases: int) -> str | None:
    """Whether the folders' disks have room for ``needed`` bytes (folders on one disk share it)."""
    by_device: dict[int, tuple[Path, int]] = {}
    for folder in folders:
        base = nearest_existing(folder)
        device = base.stat().st_dev
        _, total = by_device.get(device, (base, 0))
        by_device[device] = (base, total + needed)
    for base, total in by_device.values():
        free = shutil.disk_usage(base).free
        if free < total:
            return (f"not enough free space in {base}: {free / 1e6:.1f} MB free, this run of {cases} case(s) "
                    f"needs about {total / 1e6:.1f} MB; free space or point --medcode-cache / "
                    "--medcode-report-dir elsewhere")
    return None


def check(cache: Path | None, report_dir: Path, cases: int, max_tokens: int | None) -> str | None:
    """The first problem with where the run will write (cache file, report folder, free space), or None;
    masked like every other message (an OS error's words are not ours)."""
    problem = _first_problem(cache, report_dir, cases, max_tokens)
    return mask_credentials(problem) if problem else None


def _first_problem(cache: Path | None, report_dir: Path, cases: int, max_tokens: int | None) -> str | None:
    if cache is not None:
        problem = folder_problem(cache.parent, "--medcode-cache") or file_problem(cache, "--medcode-cache")
        try:
            if not problem:
                check_file(cache)  # someone's file given by mistake: refused, never moved
        except CacheError as exc:
            problem = f"--medcode-cache {exc}"
        if problem:
            return problem
    problem = folder_problem(report_dir, "--medcode-report-dir")
    if problem:
        return problem
    per_case = BYTES_PER_CASE + BYTES_PER_TOKEN * (max_tokens or 256)
    folders = [report_dir] + ([cache.parent] if cache is not None else [])
    return space_problem(folders, MARGIN_BYTES + cases * per_case // len(folders), cases)
