"""Shards of one run, merged into one run folder (``medcode merge SHARD... --out DIR``).

A run split over a CI matrix (pytest-split's ``--splits N --group K``) asks each group's cases on its own
runner and writes its own run folder; each shard's ``summary.json`` records its group, the size and
fingerprint of the whole selection (every case before the split, in collection order) and where its own
cases sit in it (:func:`shard_record`). Merging checks that the shards are one run cut into pieces — the same
selection, options, prompt, code releases and package version, no case twice, none missing — puts the cases
back in the selection's order, scores what needs the whole run once (similarity, code frequency, repeats'
agreement) and writes the folder as the unsharded run would have: the same rows, the same numbers.

Every check runs before anything is written: a refused merge writes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_medcode.asking.pricing import Price, PriceTable
from pytest_medcode.results.costs import cost_summary
from pytest_medcode.results.queries import query_stats
from pytest_medcode.results.selective import fill_repeat_agreement
from pytest_medcode.runs.folder import Run, RunFormatError, load_run, summarise, write_run
from pytest_medcode.runs.rescore import system_loader
from pytest_medcode.scoring.session_metrics import add_code_frequency, score_similarity
from pytest_medcode.vocabulary import group_fields, query_records

__all__ = ["MergeError", "Merged", "fingerprint", "merge_runs", "shard_record"]

#: Where a repeats' agreement stands in for a coder's own confidence: recomputed over the merged repeats.
_REPEATS_SOURCE = "repeats"
#: What the shards must have alike (besides ``config``): the prompt, the code tables' releases, the package,
#: the scoring profile and the synonym source.
_ALIKE = (("prompt_template", "prompt"), ("code_systems", "code system releases"),
          ("plugin_version", "pytest-medcode version"), ("profile", "scoring profile"),
          ("synonym_source", "synonym source"))


class MergeError(ValueError):
    """Shards that do not make one run (one-line message naming the offending shard)."""


@dataclass(frozen=True)
class Merged:
    folder: Path
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    problems: tuple[str, ...]  # report files that could not be written


# -- a shard's record (the plugin writes it into summary.json) ------------------------------------------


def fingerprint(case_ids: Iterable[str]) -> str:
    """The selection's identity: a hash of its case ids in collection order."""
    digest = hashlib.sha256()
    for case_id in case_ids:
        digest.update(case_id.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def _ranges(positions: Sequence[int]) -> list[list[int]]:
    """Ascending positions → ``[start, stop)`` runs: one pair for a contiguous group, compact either way."""
    out: list[list[int]] = []
    for p in positions:
        if out and out[-1][1] == p:
            out[-1][1] = p + 1
        else:
            out.append([p, p + 1])
    return out


def _positions(ranges: Any) -> list[int]:
    return [p for start, stop in ranges for p in range(int(start), int(stop))]


def shard_record(group: int, splits: int, selection: Sequence[str], selected: Sequence[str]) -> dict[str, Any]:
    """summary.json's ``shard``: group K of N, the whole selection's size and fingerprint, and the positions
    in it of this group's cases (``selected``, in collection order)."""
    index = {case_id: i for i, case_id in enumerate(selection)}
    return {
        "group": group,
        "splits": splits,
        "selection": {"cases": len(selection), "fingerprint": fingerprint(selection)},
        "positions": _ranges([index[c] for c in selected if c in index]),
    }


# -- merging ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shard:
    given: str  # the folder as the user named it
    run: Run
    summary: dict[str, Any]
    shard: dict[str, Any]
    positions: list[int]

    @property
    def label(self) -> str:
        return f"{self.given} (group {self.shard['group']}/{self.shard['splits']})"


def _read(paths: Sequence[Path]) -> list[_Shard]:
    if not paths:
        raise MergeError("no shard folders given")
    seen: dict[Path, str] = {}
    shards = []
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        if resolved in seen:
            raise MergeError(f"{path}: given twice (also as {seen[resolved]})")
        seen[resolved] = str(path)
        try:
            run = load_run(Path(path))
        except RunFormatError as exc:
            raise MergeError(str(exc)) from None
        if run.summary is None:
            raise MergeError(f"{path}: no summary.json beside its cases (is it a pytest-medcode run folder?)")
        shard = run.summary.get("shard")
        if not isinstance(shard, dict):
            raise MergeError(f"{path}: not a shard (its run was not split with --splits N --group K)")
        shards.append(_Shard(str(path), run, run.summary, shard, _positions(shard.get("positions") or ())))
    return shards


def _check_alike(shards: list[_Shard]) -> None:
    first = shards[0]
    for other in shards[1:]:
        if other.shard["selection"] != first.shard["selection"] or other.shard["splits"] != first.shard["splits"]:
            raise MergeError(
                f"{other.given}: a shard of another selection ({_selection(other)}) than {first.given} "
                f"({_selection(first)})")
        config, theirs = first.summary.get("config") or {}, other.summary.get("config") or {}
        for key in dict.fromkeys([*config, *theirs]):
            if config.get(key) != theirs.get(key):
                raise MergeError(f"{other.given}: differs from {first.given} in option {key} "
                                 f"({theirs.get(key)!r}, not {config.get(key)!r})")
        for key, what in _ALIKE:
            if first.summary.get(key) != other.summary.get(key):
                raise MergeError(f"{other.given}: differs from {first.given} in its {what} "
                                 f"({_short(other.summary.get(key))}, not {_short(first.summary.get(key))})")


def _selection(shard: _Shard) -> str:
    sel = shard.shard["selection"]
    return f"{sel['cases']} cases, fingerprint {str(sel['fingerprint'])[:12]}, {shard.shard['splits']} groups"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_cover(shards: list[_Shard]) -> int:
    """No case twice, every case of the selection once, every shard whole; returns the selection's size."""
    size = int(shards[0].shard["selection"]["cases"])
    owner: dict[int, _Shard] = {}
    for shard in shards:
        if len(shard.run.records) != len(shard.positions):
            raise MergeError(
                f"{shard.label}: {len(shard.run.records)} of its {len(shard.positions)} cases recorded (the run "
                f"stopped early); run group {shard.shard['group']} again")
        for p in shard.positions:
            if p in owner:
                both = sum(1 for q in shard.positions if q in owner and owner[q] is owner[p])
                raise MergeError(f"{shard.label}: overlaps {owner[p].label} in {both} case(s), e.g. "
                                 f"{_case_at(owner[p], p)}")
            owner[p] = shard
    missing = [p for p in range(size) if p not in owner]
    if missing:
        given = {int(s.shard["group"]) for s in shards}
        absent = [str(g) for g in range(1, int(shards[0].shard["splits"]) + 1) if g not in given]
        which = (f"no shard of group(s) {', '.join(absent)} of {shards[0].shard['splits']} was given" if absent
                 else "the shards were split differently (each runner must see the same --durations-path file)")
        raise MergeError(f"{len(missing)} of the selection's {size} cases are in no shard (positions "
                         f"{_span(missing)}): {which}")
    return size


def _case_at(shard: _Shard, position: int) -> str:
    return str(shard.run.records[shard.positions.index(position)].get("case_id"))


def _span(positions: list[int]) -> str:
    runs = _ranges(positions)
    shown = ", ".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in runs[:3])
    return shown + (", ..." if len(runs) > 3 else "")


def _ordered(shards: list[_Shard], size: int) -> list[dict[str, Any]]:
    """The records in the selection's order, checked against its fingerprint."""
    slots: list[dict[str, Any] | None] = [None] * size
    for shard in shards:
        for p, record in zip(shard.positions, shard.run.records, strict=True):
            slots[p] = record
    records = [r for r in slots if r is not None]
    expected = shards[0].shard["selection"]["fingerprint"]
    if fingerprint(str(r.get("case_id")) for r in records) != expected:
        raise MergeError("the shards' cases, in their recorded positions, are not their selection (fingerprint "
                         f"{str(expected)[:12]}); a shard's cases.parquet was changed after its run")
    return records


def _prices(config: dict[str, Any]) -> PriceTable:
    return PriceTable({m: Price(**p) for m, p in (config.get("prices") or {}).items()})


def merge_runs(paths: Sequence[Path], out: Path) -> Merged:
    """Check the shards at ``paths``, merge them and write the run folder ``out`` (MergeError: nothing written)."""
    shards = _read(paths)
    _check_alike(shards)
    size = _check_cover(shards)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"--out {out}: already exists and is not an empty folder")
    records = _ordered(shards, size)
    first = shards[0].summary
    config = first.get("config") or {}
    seed = int(config.get("seed") or 0)

    # What the run's end scores over every case (plugin/reporter.py's order): repeats' agreement, similarity,
    # code frequency; a shard's were over its own cases.
    queries = query_records(records)
    for r in queries:
        if r.get("confidence_source") == _REPEATS_SOURCE:
            r["confidence"] = r["confidence_source"] = None
    if int(config.get("repeats") or 1) > 1:
        fill_repeat_agreement(queries)
    similarity = None
    if queries:
        similarity = score_similarity(
            queries, system_loader(first, {}), enabled=bool(config.get("similarity", True)),
            bertscore_model=config.get("bertscore_model"), bertscore_device=config.get("bertscore_device"))
        add_code_frequency(queries, group_fields(queries))
    numbers = summarise(records, seed=seed, targets=tuple(config.get("coverage_targets") or (0.95, 0.99)),
                        similarity=similarity.available() if similarity is not None else None)
    phases = [float(p) for s in shards if (p := (s.summary.get("queries") or {}).get("phase_s")) is not None]
    summary = {
        **first,
        "run_id": out.name,
        "created": min(str(s.summary.get("created")) for s in shards),
        "duration_s": round(sum(float(s.summary.get("duration_s") or 0) for s in shards), 3),
        "n_cases": numbers["n_cases"],
        "similarity": similarity.to_dict() if similarity is not None else None,
        "results": numbers["results"],
        "tables": numbers["tables"],
        "consistency": numbers["consistency"],
        "selective": numbers["selective"],
        "queries": query_stats(records, config.get("cache"),
                               round(sum(phases), 3) if len(phases) == len(shards) else None),
        "gate": None,  # medcode compare BASELINE MERGED judges the merged run
        "documents": numbers["documents"],
        "document_prompt": next((s.summary["document_prompt"] for s in shards if s.summary.get("document_prompt")),
                                None),
        "costs": cost_summary(records, _prices(config), config.get("max_cost") or None),
        "shard": None,
        "merged_from": {
            "merged": dt.datetime.now(dt.UTC).isoformat(),
            "selection": shards[0].shard["selection"],
            "shards": [{"folder": s.given, "run_id": s.summary.get("run_id"), "group": s.shard["group"],
                        "splits": s.shard["splits"]} for s in sorted(shards, key=lambda s: int(s.shard["group"]))],
        },
    }
    problems = write_run(out, records, summary, seed)
    return Merged(out, records, summary, problems)
