"""Files written whole or not at all: a temp file beside the target, then a rename.

A reader (another xdist worker, a CI step, a viewer) never sees half a file, and a run killed mid-write
leaves the previous file in place."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["read_json", "write_atomically", "write_json", "write_text_atomically"]


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp_path)`` fills a temp file in ``path``'s folder, which then replaces ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomically(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    write_atomically(path, write)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Small state files other processes poll (progress, a tripped breaker): compact JSON, replaced whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A state file, or None when it is absent or half-written by a process that died."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
