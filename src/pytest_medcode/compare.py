"""Two runs side by side: read a run folder back, and pair its cases with another run's.

``load_run`` reads ``cases.parquet`` (and ``summary.json`` beside it) and refuses files of another
schema version with one line; ``pair_records`` matches cases by (model, system, code), plus
``variant``, ``temperature`` and ``repeat`` when both runs carry those columns. The gate
(:mod:`pytest_medcode.gate`) judges the pairs; ``comparison_lines`` prints them for ``medcode compare``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_medcode.reports.files import SUMMARY_SCHEMA_VERSION

if TYPE_CHECKING:
    from pytest_medcode.gate import Verdict

__all__ = [
    "EXTRA_KEY_COLUMNS",
    "KEY_COLUMNS",
    "SCHEMA_METADATA_KEY",
    "Pairing",
    "PairingError",
    "Run",
    "RunFormatError",
    "comparison_lines",
    "load_run",
    "pair_records",
]

KEY_COLUMNS: tuple[str, ...] = ("model", "system", "code")
#: Columns that make two cases with the same code different questions, when a run has them.
EXTRA_KEY_COLUMNS: tuple[str, ...] = ("variant", "temperature", "repeat")
#: Parquet schema metadata key holding the run folder's schema version.
SCHEMA_METADATA_KEY = b"pytest_medcode.schema_version"
#: Columns a cases table must have to be judged.
REQUIRED_COLUMNS: tuple[str, ...] = ("model", "system", "code", "outcome", "exact_match")


class RunFormatError(ValueError):
    """A run folder or cases file that cannot be read as a pytest-medcode run (one-line message)."""


class PairingError(ValueError):
    """Two runs whose cases cannot be paired (one-line message)."""


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


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def load_run(path: Path | str) -> Run:
    """Read a run folder (or its ``cases.parquet``). Raises RunFormatError with one line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cases, summary_path = _resolve(Path(path))
    summary: dict[str, Any] | None = None
    if summary_path is not None and summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunFormatError(f"{summary_path}: unreadable summary ({exc})") from None
        if not isinstance(summary, dict):
            raise RunFormatError(f"{summary_path}: not a pytest-medcode summary (expected a JSON object)")
        version = summary.get("schema_version")
        if version != SUMMARY_SCHEMA_VERSION:
            raise RunFormatError(
                f"{summary_path}: summary schema version {version!r}, this pytest-medcode reads version "
                f"{SUMMARY_SCHEMA_VERSION}; re-run the baseline with this version"
            )
    try:
        table = pq.read_table(cases)
    except (OSError, pa.ArrowException) as exc:
        raise RunFormatError(f"{cases}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    meta = table.schema.metadata or {}
    if SCHEMA_METADATA_KEY in meta:
        version = meta[SCHEMA_METADATA_KEY].decode("utf-8", "replace")
        if version != str(SUMMARY_SCHEMA_VERSION):
            raise RunFormatError(
                f"{cases}: cases schema version {version!r}, this pytest-medcode reads version "
                f"{SUMMARY_SCHEMA_VERSION}; re-run the baseline with this version"
            )
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise RunFormatError(
            f"{cases}: not a pytest-medcode cases table (missing column(s) {', '.join(missing)})"
        )
    records = [{k: _clean(v) for k, v in row.items()} for row in table.to_pylist()]
    return Run(cases, records, summary)


# -- pairing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pairing:
    """Cases of a new run matched to a baseline's. ``pairs`` are (baseline record, new record)."""

    key_columns: tuple[str, ...]
    pairs: list[tuple[dict[str, Any], dict[str, Any]]]
    only_base: int
    only_new: int
    model_map: dict[str, str] = field(default_factory=dict)  # baseline model → new model, for a model swap

    def notes(self) -> list[str]:
        """What a reader of the verdict should know about how the runs were matched."""
        out = [
            f"baseline model {b} paired with {w}: the two runs each have a single model of another name"
            for b, w in self.model_map.items()
        ]
        if self.only_new:
            out.append(f"{self.only_new} case(s) of this run have no baseline partner and were not compared")
        if self.only_base:
            out.append(f"{self.only_base} baseline case(s) are not in this run and were not compared")
        return out


def _key(record: dict[str, Any], columns: Sequence[str], model_map: dict[str, str]) -> tuple:
    key = []
    for c in columns:
        value = record.get(c)
        if c == "model":
            value = model_map.get(str(value), value)
        key.append(value)
    return tuple(key)


def pair_records(base: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> Pairing:
    """Match the cases of ``new`` to those of ``base``.

    When each run has exactly one model and the names differ (a model swap: the baseline was
    gpt-4-0613, this run is gpt-4o), cases pair across the two names and ``notes()`` says so.
    Raises PairingError when a run has two cases with the same key (they could not be told apart).
    """
    base_cols = set().union(*(r.keys() for r in base)) if base else set()
    new_cols = set().union(*(r.keys() for r in new)) if new else set()
    columns = KEY_COLUMNS + tuple(
        c
        for c in EXTRA_KEY_COLUMNS
        if c in base_cols and c in new_cols and any(r.get(c) is not None for r in (*base, *new))
    )
    base_models = list(dict.fromkeys(str(r["model"]) for r in base))
    new_models = list(dict.fromkeys(str(r["model"]) for r in new))
    model_map: dict[str, str] = {}
    if len(base_models) == 1 and len(new_models) == 1 and base_models != new_models:
        model_map = {base_models[0]: new_models[0]}

    def index(records: Sequence[dict[str, Any]], which: str) -> dict[tuple, dict[str, Any]]:
        out: dict[tuple, dict[str, Any]] = {}
        for r in records:
            k = _key(r, columns, model_map if which == "baseline" else {})
            if k in out:
                shown = ", ".join(f"{c}={v}" for c, v in zip(columns, k, strict=True))
                raise PairingError(
                    f"the {which} run has two cases with {shown}; cannot pair them "
                    f"(add a 'variant' or 'repeat' column to tell them apart)"
                )
            out[k] = r
        return out

    base_index = index(base, "baseline")
    new_index = index(new, "new")
    pairs = [(base_index[k], r) for k, r in new_index.items() if k in base_index]
    return Pairing(
        key_columns=columns,
        pairs=pairs,
        only_base=len(base_index) - len(pairs),
        only_new=len(new_index) - len(pairs),
        model_map=model_map,
    )


# -- printing ----------------------------------------------------------------------------------

_HEADERS = ("scope", "metric", "n", "baseline", "new", "change", "worse/better", "p", "allowed", "verdict")


def comparison_lines(verdict: Verdict) -> list[str]:
    """The paired comparison as a text table (regression checks only), for ``medcode compare``."""
    from pytest_medcode.gate import format_delta, format_margin, format_p, format_value

    rows: list[tuple[str, ...]] = [_HEADERS]
    for c in verdict.checks:
        if c.kind != "regression" or c.metric == "pairing":
            continue
        d = c.details
        rows.append(
            (
                c.scope,
                c.metric,
                str(c.n),
                format_value(c.metric, c.baseline),
                format_value(c.metric, c.observed),
                format_delta(c.metric, c.delta) if c.delta is not None else "-",
                f"{d['lost']}/{d['gained']}" if "lost" in d else "-",
                format_p(c.p_value)
                if c.p_value is not None
                else (
                    "CI " + format_delta(c.metric, c.ci[0]) + ".." + format_delta(c.metric, c.ci[1])
                    if c.ci
                    else "-"
                ),
                format_margin(c.metric, c.limit) if c.limit is not None else "-",
                "ok" if c.passed else "REGRESSED",
            )
        )
    if len(rows) == 1:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADERS))]
    lines = []
    for j, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i < 2 or i == len(row) - 1 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
