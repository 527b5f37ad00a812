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
        # Scoring: the profile the case was scored under, end-of-session similarity (None where the
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


#: Rows per Parquet row group: the file is written a group at a time, so a 75k-case run never holds all of
#: it as Arrow arrays at once (and readers can stream it).
ROWS_PER_GROUP = 10_000


def cases_schema(records: list[dict[str, Any]]) -> pa.Schema:
    """The core columns with their fixed types, then any further columns with a type inferred from all rows."""
    fields = list(CORE_COLUMNS)
    for name in sorted({k for r in records for k in r} - set(CORE_COLUMNS.names)):
        fields.append(pa.field(name, pa.array([r.get(name) for r in records]).type))
    # The run folder's schema version rides in the Parquet metadata, so a baseline file found
    # without its summary.json is still checked (compare.load_run).
    metadata = {b"pytest_medcode.schema_version": str(SUMMARY_SCHEMA_VERSION).encode()}
    return pa.schema(fields, metadata=metadata)


def cases_table(records: list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Records → a table with the core columns typed and any further columns inferred."""
    schema = schema if schema is not None else cases_schema(records)
    arrays = [pa.array([r.get(f.name) for r in records], type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_cases(records: list[dict[str, Any]], path: Path) -> None:
    schema = cases_schema(records)

    def write(tmp: str) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, max(len(records), 1), ROWS_PER_GROUP):
                writer.write_table(cases_table(records[start:start + ROWS_PER_GROUP], schema))

    _atomic(path, write)


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
