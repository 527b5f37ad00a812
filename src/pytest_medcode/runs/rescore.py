"""Score a recorded run again under another profile, from its raw answers, without asking any model.

``medcode rescore RUN_DIR --profile paper`` reads ``cases.parquet``, re-reads every raw answer with the
profile's extractor and metric definitions, runs the similarity pass again, and writes a **new run folder**
beside the original - ``<run_id>-<profile>`` - with ``cases.parquet``, ``summary.json`` (``rescored_from``
names the source), ``report.md`` and ``report.html``. The original folder is never modified, and
``reports/latest`` is not moved: a re-scoring is a view of a run, not a new run.

Raw answers are kept up to 20,000 characters per case (records.RAW_ANSWER_LIMIT); a longer runaway
answer is re-read from its kept part, which can only change its code count. Failed calls stay failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_medcode.codesystems import (
    SYSTEMS,
    UNRECORDED_RELEASES,
    CodeFileError,
    CodeSystem,
    ReleaseError,
    load_system,
)
from pytest_medcode.results.records import score_record
from pytest_medcode.runs.folder import SCHEMA_VERSION, RunFormatError, load_run, summarise, write_run
from pytest_medcode.scoring.codes import PROFILES, unscored_fields
from pytest_medcode.scoring.session_metrics import SimilarityReport, add_code_frequency, score_similarity
from pytest_medcode.vocabulary import DOCUMENT, ERROR, group_fields, query_records

__all__ = ["RescoreError", "Rescored", "rescore_records", "rescore_run", "system_loader"]


class RescoreError(ValueError):
    """A run that cannot be re-scored (one-line message)."""


@dataclass(frozen=True)
class Rescored:
    folder: Path
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    problems: tuple[str, ...]  # report files that could not be written


def rescore_records(
    records: list[dict[str, Any]], profile: str, system_of: Callable[[str], CodeSystem]
) -> list[dict[str, Any]]:
    """New records (the inputs are not modified) with every answer-derived field scored under ``profile``."""
    if profile not in PROFILES:
        raise RescoreError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    out = []
    for record in records:
        new = dict(record)
        if new.get("kind") == DOCUMENT:  # a document's set is read one way under every profile
            pass
        elif new.get("outcome") == ERROR:
            new.update(unscored_fields(profile))
        else:
            score_record(new, system_of(str(new["system"])), new.get("raw_answer") or "", profile)
        out.append(new)
    return out


def system_loader(summary: dict[str, Any] | None, codesets: dict[str, Path]) -> Callable[[str], CodeSystem]:
    """A run's code tables by system, loaded when first asked for: the paths the run recorded, or ``codesets``'."""
    recorded = {k: Path(v) for k, v in ((summary or {}).get("config") or {}).get("codesets", {}).items()}
    recorded.update(codesets)
    # the release each system was scored against; a run that recorded none, the one bundled then
    releases = {**UNRECORDED_RELEASES, **(((summary or {}).get("config") or {}).get("releases") or {})}
    cache: dict[str, CodeSystem] = {}

    def system_of(name: str) -> CodeSystem:
        if name not in cache:
            path = recorded.get(name)
            brought = path is not None and path.exists()
            try:
                cache[name] = load_system(name, path if brought else None,
                                          release=None if brought or name not in SYSTEMS else releases.get(name))
            except KeyError:
                raise RescoreError(f"unknown code system {name!r} in the run") from None
            except (CodeFileError, ReleaseError) as exc:
                raise RescoreError(f"{name}: {exc} (give the table with --codeset {name}=PATH)") from None
        return cache[name]

    return system_of


def rescore_run(
    run_path: Path | str,
    profile: str,
    *,
    out: Path | None = None,
    codesets: dict[str, Path] | None = None,
    similarity: bool = True,
    bertscore_model: str | None = None,
    bertscore_device: str | None = None,
    seed: int | None = None,
) -> Rescored:
    """Re-score the run at ``run_path`` (folder or ``cases.parquet``) and write the new run folder."""
    try:
        run = load_run(Path(run_path))
    except RunFormatError as exc:
        raise RescoreError(str(exc)) from None
    if not run.records:
        raise RescoreError(f"{run.path}: no cases to re-score")
    system_of = system_loader(run.summary, codesets or {})
    records = rescore_records(run.records, profile, system_of)
    queries = query_records(records)  # document records carry no description to compare
    report: SimilarityReport = score_similarity(
        queries, system_of, enabled=similarity, bertscore_model=bertscore_model, bertscore_device=bertscore_device
    )
    add_code_frequency(queries, group_fields(queries))

    source = dict(run.summary or {"schema_version": SCHEMA_VERSION, "run_id": run.folder.name})
    config = dict(source.get("config") or {})
    seed = seed if seed is not None else int(config.get("seed") or 0)
    config.update(profile=profile, similarity=similarity, bertscore_model=bertscore_model,
                  bertscore_device=bertscore_device)
    run_id = f"{source.get('run_id') or run.folder.name}-{profile}"
    summary = {
        **source,
        "run_id": run_id,
        "rescored_from": str(run.folder),
        "rescored_at": dt.datetime.now(dt.UTC).isoformat(),
        "config": config,
        "profile": profile,
        "similarity": report.to_dict(),
        **summarise(records, seed=seed, similarity=report.available()),
        "gate": None,  # the original verdict judged the original scoring
    }
    folder = Path(out) if out is not None else run.folder.parent / run_id
    if folder.resolve() == run.folder.resolve():
        raise RescoreError(f"{folder}: refusing to overwrite the run being re-scored; choose another --out")
    problems = write_run(folder, records, summary, seed)
    return Rescored(folder, records, summary, problems)
