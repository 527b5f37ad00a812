"""Everything pytest-medcode knows about pytest-split (``--splits N --group K``), in one place.

pytest-split deselects every case but its group's in a ``trylast`` ``pytest_collection_modifyitems`` of a
plugin it registers at configure time, so the session's own ``trylast`` hook (registered earlier, from the
entry point, and so called first among them) still sees the whole selection: -k, -m and --deselect applied,
the split not yet. The query phase runs at ``pytest_collection_finish``, after the split, and so asks only
the group's cases. The shard's record (runs/merge.py) is what ``medcode merge`` checks and orders by.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_medcode.atomic import read_json, write_json

__all__ = ["group_of", "read_shard", "write_shard"]

#: Where an xdist worker leaves the shard's record for the controller, in the run's state folder.
SHARD_FILE = "shard.json"


def group_of(config: pytest.Config) -> tuple[int, int] | None:
    """(K, N) when pytest-split runs group K of N, else None (pytest-split absent, or not splitting)."""
    splits, group = getattr(config.option, "splits", None), getattr(config.option, "group", None)
    return (int(group), int(splits)) if splits and group else None


def write_shard(state: Path, record: dict[str, Any]) -> None:
    """A worker's shard record, for the controller (every worker writes the same one)."""
    state.mkdir(parents=True, exist_ok=True)
    write_json(state / SHARD_FILE, record)


def read_shard(state: Path) -> dict[str, Any] | None:
    return read_json(state / SHARD_FILE)
