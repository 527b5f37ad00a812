"""The run folder: ``cases.parquet`` (one row per case) and ``summary.json``.

Both are written atomically (temp file, then rename) so a reader, or a run killed mid-write,
never leaves half a file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SUMMARY_SCHEMA_VERSION = 1

#: Columns downstream tools rely on, with fixed types (a column of all nulls keeps its type).
CORE_COLUMNS = pa.schema(
    [
        ("model", pa.string()),
        ("system", pa.string()),
        ("code", pa.string()),
        ("description", pa.string()),
        ("case_id", pa.string()),
        ("raw_answer", pa.string()),
        ("codes", pa.list_(pa.string())),
        ("predicted_code", pa.string()),
        ("predicted_description", pa.string()),
        ("n_codes", pa.int64()),
        ("exact_match", pa.bool_()),
        ("valid", pa.bool_()),
        ("billable", pa.bool_()),
        ("fabricated", pa.bool_()),
        ("length_match", pa.bool_()),
        ("digit_match", pa.float64()),
        ("digit_positions", pa.list_(pa.bool_())),
        ("outcome", pa.string()),
        ("error", pa.string()),
        ("latency_s", pa.float64()),
        ("attempts", pa.int64()),
        ("cache_hit", pa.bool_()),
        ("answer_chars", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("cost_usd", pa.float64()),
        # Scoring (issue 4): the profile the case was scored under, end-of-session similarity (None where the
        # predicted code has no description), and the beyond-the-study per-case values.
        ("profile", pa.string()),
        ("meteor", pa.float64()),
        ("bertscore", pa.float64()),
        ("code_frequency", pa.int64()),
        ("valid_not_billable", pa.bool_()),
        ("hierarchy_level", pa.string()),
        ("same_chapter", pa.bool_()),
        ("same_block", pa.bool_()),
        ("same_category", pa.bool_()),
        ("same_subcategory", pa.bool_()),
        ("other_system", pa.string()),
        ("other_system_code", pa.string()),
        ("crosswalk_match", pa.bool_()),
    ]
)


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cases_table(records: list[dict[str, Any]]) -> pa.Table:
    """Records → a table with the core columns typed and any further columns inferred."""
    extra = sorted({k for r in records for k in r} - set(CORE_COLUMNS.names))
    columns = {name: [r.get(name) for r in records] for name in CORE_COLUMNS.names}
    arrays = [pa.array(columns[f.name], type=f.type) for f in CORE_COLUMNS]
    fields = list(CORE_COLUMNS)
    for name in extra:
        arr = pa.array([r.get(name) for r in records])
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    # The run folder's schema version rides in the Parquet metadata, so a baseline file found
    # without its summary.json is still checked (compare.load_run).
    metadata = {b"pytest_medcode.schema_version": str(SUMMARY_SCHEMA_VERSION).encode()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def write_cases(records: list[dict[str, Any]], path: Path) -> None:
    table = cases_table(records)
    _atomic(path, lambda tmp: pq.write_table(table, tmp))


def write_json(data: dict[str, Any], path: Path) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str)
    _atomic(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


def point_latest(run_dir: Path) -> None:
    """``<report dir>/latest`` → the newest run (a symlink; a text file where links are not allowed)."""
    link = run_dir.parent / "latest"
    try:
        tmp = run_dir.parent / f".latest-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        _atomic(run_dir.parent / "LATEST", lambda t: Path(t).write_text(run_dir.name + "\n"))
