"""Files written whole or not at all (pytest_medcode.atomic): a reader never sees half a file, a failed write
leaves the previous file, and a half-written state file reads as absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_medcode.atomic import read_json, write_atomically, write_json, write_text_atomically


def test_text_replaces_the_file_whole_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "new" / "report.md"  # the folder is made
    write_text_atomically(target, "first")
    write_text_atomically(target, "second — é")
    assert target.read_text(encoding="utf-8") == "second — é"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.md"]


def test_a_write_that_fails_keeps_the_previous_file_and_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "cases.parquet"
    target.write_text("previous")

    def half_then_crash(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_atomically(target, half_then_crash)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["cases.parquet"]


def test_the_writer_fills_a_temp_file_beside_the_target(tmp_path: Path) -> None:
    seen: list[Path] = []

    def write(tmp: str) -> None:
        seen.append(Path(tmp))
        Path(tmp).write_text("x")

    write_atomically(tmp_path / "summary.json", write)
    assert seen[0].parent == tmp_path and seen[0] != tmp_path / "summary.json" and not seen[0].exists()


def test_a_state_file_round_trips_and_reads_as_none_when_absent_or_half_written(tmp_path: Path) -> None:
    state = tmp_path / "progress.json"
    assert read_json(state) is None
    write_json(state, {"done": 3, "total": 10})
    assert read_json(state) == {"done": 3, "total": 10}
    assert json.loads(state.read_text()) == {"done": 3, "total": 10}
    write_json(state, {"done": 4})
    assert read_json(state) == {"done": 4} and [p.name for p in tmp_path.iterdir()] == ["progress.json"]
    state.write_text('{"done": 5, "to')  # a process that died while writing it another way
    assert read_json(state) is None
