"""The run folder: the one place that reads and writes it.

A run folder holds ``cases.parquet`` (one row per case), ``summary.json`` (the run's settings, results
and tables), ``report.md`` and ``report.html``. The pytest session, ``medcode report``, ``medcode
rescore`` and ``medcode compare`` all go through here, so every folder has the same content whoever
wrote it, and every reader checks the same schema version.

Every file is written atomically (:mod:`pytest_medcode.atomic`): a reader, or a run killed mid-write,
never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pytest_medcode.atomic import write_atomically, write_text_atomically
from pytest_medcode.dataset.prompts import DOCUMENT_PROMPT_VERSION
from pytest_medcode.reports import document_section, html, markdown
from pytest_medcode.reports.explorer import ExplorerText
from pytest_medcode.reports.tables import build_tables
from pytest_medcode.results.aggregate import summarize
from pytest_medcode.results.consistency import self_consistency
from pytest_medcode.results.selective import DEFAULT_TARGETS, selective_rows
from pytest_medcode.vocabulary import document_records, group_fields, query_records

__all__ = [
    "CORE_COLUMNS",
    "SCHEMA_METADATA_KEY",
    "SCHEMA_VERSION",
    "Run",
    "RunFormatError",
    "find_run_folders",
    "load_run",
    "load_summary",
    "point_latest",
    "summarise",
    "write_cases",
    "write_json",
    "write_run",
]

#: Version of the folder's format (summary.json and cases.parquet); a reader refuses any other.
SCHEMA_VERSION = 1
#: Parquet schema metadata key holding the version, so a cases file found alone is still checked.
SCHEMA_METADATA_KEY = b"pytest_medcode.schema_version"
#: Columns a cases table must have to be judged.
REQUIRED_COLUMNS: tuple[str, ...] = ("model", "system", "code", "outcome", "exact_match")

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
        ("outdated", pa.bool_()),  # a code of an earlier bundled release, not of the scored one
        ("not_yet_valid", pa.bool_()),  # a code of a later release only
        ("release_note", pa.string()),  # "valid in FY2024, deleted in FY2025"
        ("release", pa.string()),  # the release the case was asked and scored in (--medcode-release)
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
        # The deployment that answered (--medcode-router: its model_info id or api_base); null without a router.
        ("deployment", pa.string()),
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
        # How sure the coder was (0-1; null: no confidence), where that came from (coder, repeats), and whether
        # it declined the case (results/selective.py).
        ("confidence", pa.float64()),
        ("confidence_source", pa.string()),
        ("abstained", pa.bool_()),
    ]
)



# -- the numbers -------------------------------------------------------------------------------------


def summarise(
    records: Sequence[dict[str, Any]], *, seed: int, similarity: Mapping[str, bool] | None = None,
    targets: Sequence[float] = DEFAULT_TARGETS,
) -> dict[str, Any]:
    """What summary.json holds of a run's numbers: the results rows, the study's tables, self-consistency,
    the straight-through numbers at each target accuracy (results/selective.py; [] without confidences).

    ``similarity`` says which similarity metrics the run computed (None: inferred from the records).
    Code queries make the results and tables; document cases their own section (None without any)."""
    queries = query_records(records)
    results = summarize(queries, seed=seed, by=group_fields(queries), similarity=similarity)
    releases: dict[Any, Any] = {}
    for record in queries:  # each group says which year's codes it was asked and scored in
        releases.setdefault(record.get("system"), record.get("release"))
    for row in results:
        row["release"] = releases.get(row.get("system"))
    return {
        "n_cases": len(records),
        "results": results,
        "tables": build_tables(results),
        "consistency": self_consistency(queries),
        "selective": selective_rows(queries, seed=seed, targets=targets, by=group_fields(queries)),
        "documents": document_section.section(document_records(records), seed, DOCUMENT_PROMPT_VERSION, targets),
    }


# -- writing ----------------------------------------------------------------------------------------


#: Rows per Parquet row group: the file is written a group at a time, so a 75k-case run never holds all of
#: it as Arrow arrays at once (and readers can stream it).
ROWS_PER_GROUP = 10_000


#: Columns only some runs have, with their types fixed when they are there (an inferred type would be
#: ``list<null>`` for a column of empty lists): a document's confidence per predicted code.
OPTIONAL_COLUMNS: dict[str, pa.DataType] = {"code_confidences": pa.list_(pa.float64())}


def cases_schema(records: list[dict[str, Any]]) -> pa.Schema:
    """The core columns with their fixed types, then any further columns with a type inferred from all rows."""
    fields = list(CORE_COLUMNS)
    for name in sorted({k for r in records for k in r} - set(CORE_COLUMNS.names)):
        kind = OPTIONAL_COLUMNS.get(name)
        fields.append(pa.field(name, kind if kind is not None else pa.array([r.get(name) for r in records]).type))
    # The run folder's schema version rides in the Parquet metadata, so a baseline file found
    # without its summary.json is still checked (compare.load_run).
    metadata = {SCHEMA_METADATA_KEY: str(SCHEMA_VERSION).encode()}
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

    write_atomically(path, write)


def write_json(data: dict[str, Any], path: Path) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_run(folder: Path, records: Sequence[dict[str, Any]], summary: dict[str, Any], seed: int,
              explorer_text: ExplorerText | None = None) -> tuple[str, ...]:
    """Write a whole run folder: the data first (an OSError here is the caller's: nothing is half-written),
    then the two reports, which are views of it (``medcode report`` redoes them): a report that cannot be
    rendered is returned as a problem to show, never raised. ``explorer_text``: report.html's case explorer
    text made as the records arrived (the same page, sooner)."""
    write_cases(list(records), folder / "cases.parquet")
    write_json(summary, folder / "summary.json")
    problems = []
    renders: tuple[tuple[str, Callable[[], str]], ...] = (
        ("report.md", lambda: markdown.render(records, summary, seed)),
        ("report.html", lambda: html.render(records, summary, seed, explorer_text)),
    )
    for name, render in renders:
        try:
            write_text_atomically(folder / name, render())
        except Exception as exc:  # a view of saved data: warn, don't crash
            problems.append(f"could not write {name}: {exc.__class__.__name__}: {exc}")
    return tuple(problems)


def point_latest(run_dir: Path) -> None:
    """``<report dir>/latest`` → the newest run (a symlink; a text file where links are not allowed)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)  # fails where ``latest`` is a real folder (the user's): it is left alone
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # the link that could not take latest's place
        write_text_atomically(run_dir.parent / "LATEST", run_dir.name + "\n")


# -- reading ----------------------------------------------------------------------------------------


class RunFormatError(ValueError):
    """A run folder or cases file that cannot be read as a pytest-medcode run (one-line message)."""


@dataclass(frozen=True)
class Run:
    path: Path  # the cases.parquet read
    records: list[dict[str, Any]]
    summary: dict[str, Any] | None

    @property
    def folder(self) -> Path:
        return self.path.parent


def _resolve(path: Path) -> tuple[Path, Path | None]:
    """(cases.parquet, summary.json or None) for a run folder or a parquet file."""
    path = Path(path).expanduser()
    if path.is_dir():
        cases = path / "cases.parquet"
        if not cases.exists():
            raise RunFormatError(
                f"{path}: no cases.parquet in this folder (is it a pytest-medcode run folder?)"
            )
        return cases, path / "summary.json"
    if not path.exists():
        raise RunFormatError(f"{path}: no such run folder or file")
    if path.name == "summary.json":
        cases = path.parent / "cases.parquet"
        if not cases.exists():
            raise RunFormatError(f"{path}: no cases.parquet beside this summary")
        return cases, path
    return path, path.parent / "summary.json"


def _without_nan(table: pa.Table) -> pa.Table:
    """A float column's NaN read as None (a missing value, as the records have it), in Arrow: a 75k-case
    table is not walked value by value in Python."""
    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            column = table.column(i)
            nan = pc.is_nan(column)
            if pc.any(nan).as_py():
                table = table.set_column(i, field, pc.if_else(nan, pa.scalar(None, field.type), column))
    return table


def find_run_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` holding a summary.json or cases.parquet; links (``latest``) are not
    followed, so no run is counted twice."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "cases.parquet" in files or "summary.json" in files:
            found.append(Path(folder))
    return found


def load_summary(path: Path | str) -> dict[str, Any] | None:
    """A run folder's summary.json alone (None when the folder has none), checked like :func:`load_run`
    checks it: reading hundreds of runs' results need not open their cases. ``path`` may also be the summary
    file itself, whatever its name. Raises RunFormatError."""
    folder = Path(path).expanduser()
    summary_path = folder if folder.name == "summary.json" or folder.is_file() else folder / "summary.json"
    return _read_summary(summary_path) if summary_path.exists() else None


def _read_summary(summary_path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFormatError(f"{summary_path}: unreadable summary ({exc})") from None
    if not isinstance(summary, dict):
        raise RunFormatError(f"{summary_path}: not a pytest-medcode summary (expected a JSON object)")
    version = summary.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunFormatError(
            f"{summary_path}: summary schema version {version!r}, this pytest-medcode reads version "
            f"{SCHEMA_VERSION}; re-run the baseline with this version"
        )
    return summary


def load_run(path: Path | str, columns: Sequence[str] | None = None) -> Run:
    """Read a run folder (or its ``cases.parquet``); ``columns``: only these of the cases (those the file
    has, and the required ones), for readers that need a few. Raises RunFormatError with one line."""
    cases, summary_path = _resolve(Path(path))
    summary: dict[str, Any] | None = None
    if summary_path is not None and summary_path.exists():
        summary = _read_summary(summary_path)
    try:
        if columns is not None:
            present = set(pq.read_schema(cases).names)
            wanted = [c for c in dict.fromkeys((*REQUIRED_COLUMNS, *columns)) if c in present]
            table = pq.read_table(cases, columns=wanted)
        else:
            table = pq.read_table(cases)
    except (OSError, pa.ArrowException) as exc:
        raise RunFormatError(f"{cases}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    meta = table.schema.metadata or {}
    if SCHEMA_METADATA_KEY in meta:
        version = meta[SCHEMA_METADATA_KEY].decode("utf-8", "replace")
        if version != str(SCHEMA_VERSION):
            raise RunFormatError(
                f"{cases}: cases schema version {version!r}, this pytest-medcode reads version "
                f"{SCHEMA_VERSION}; re-run the baseline with this version"
            )
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise RunFormatError(
            f"{cases}: not a pytest-medcode cases table (missing column(s) {', '.join(missing)})"
        )
    records = _without_nan(table).to_pylist()
    return Run(cases, records, summary)
