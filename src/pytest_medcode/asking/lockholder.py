"""Who holds a file lock: the process named in a "the cache is busy" message.

Linux lists every POSIX and flock lock in ``/proc/locks`` with the holder's pid and the file's
inode; SQLite locks the database and, in WAL mode, its ``-shm`` file. Elsewhere (or for a holder
in another container) the holder cannot be known and the message says so.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC_LOCKS = Path("/proc/locks")


def holders(*paths: Path) -> list[int]:
    """Pids (other than ours) holding a write lock on any of ``paths``, first seen first."""
    inodes = set()
    for path in paths:
        try:
            inodes.add(os.stat(path).st_ino)
        except OSError:
            continue
    try:
        lines = _PROC_LOCKS.read_text().splitlines()
    except OSError:
        return []
    out: list[int] = []
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[3] != "WRITE":  # "->": a waiter, not a holder
            continue
        try:
            pid, inode = int(fields[4]), int(fields[5].rpartition(":")[2])
        except ValueError:
            continue
        if inode in inodes and pid > 0 and pid != os.getpid() and pid not in out:
            out.append(pid)
    return out


def describe(pid: int) -> str:
    """``pid 1234 (python -m pytest ...)``: the pid and, where readable, its command line."""
    try:
        raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    command = " ".join(" ".join(part.decode(errors="replace").split()) for part in raw.split(b"\0") if part)
    if len(command) > 120:
        command = command[:117] + "..."
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def held_by(*paths: Path) -> str:
    """A phrase for a message: ``held by pid 1234 (...)``, or that the holder is unknown."""
    pids = holders(*paths)
    if not pids:
        return "held by another process (not identifiable from here)"
    return "held by " + ", ".join(describe(p) for p in pids[:3])


def alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a dead claimant's claims are void)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
