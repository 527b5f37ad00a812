"""Which (model, system, code) cases a run asks, and their stable ids.

Selection is deterministic for a seed, so every xdist worker builds the same list and a re-run
asks the same questions (and hits the cache).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pytest_medcode.codesystems import CodeFileError, CodeSystem
from pytest_medcode.codesystems.cpt import read_table_file

_MAX_LISTED = 5


@dataclass(frozen=True)
class Case:
    model: str
    system: str
    code: str  # canonical reference code
    description: str  # the code's official description (what ``exact`` asks with)
    variant: str = "exact"  # robustness variant of the description (variants.py)
    perturbed: str | None = None  # the variant's wording; None for ``exact``
    temperature: float | None = None  # set only when --medcode-temperature sweeps several values
    repeat: int | None = None  # 0..K-1, set only when --medcode-repeats K > 1

    @property
    def asked_description(self) -> str:
        """The description the model is given: the variant's wording, or the official one."""
        return self.perturbed if self.perturbed is not None else self.description

    @property
    def id(self) -> str:
        """Readable and unique: ``gpt-4-icd10cm-E11.9``, ``gpt-4-icd10cm-E11.9-typo-t0.6-r2``. Exact,
        single-temperature, single-repeat cases keep the short id, so ids stay stable across runs."""
        out = f"{self.model}-{self.system}-{self.code}"
        if self.variant != "exact":
            out += f"-{self.variant}"
        if self.temperature is not None:
            out += f"-t{self.temperature:g}"
        if self.repeat is not None:
            out += f"-r{self.repeat}"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # flat values: no deep copy needed


@dataclass(frozen=True)
class CodeList:
    """The user's own codes (``--medcode-codes``): per system, code → count (1 without a count column)."""

    counts: dict[str, dict[str, float]]


def read_code_list(path: Path, systems: Sequence[str]) -> CodeList:
    """A CSV/TSV/Parquet file with ``code`` and optional ``system`` and ``count`` columns."""
    names, rows = read_table_file(path, ("code",))
    if "system" not in names and len(systems) != 1:
        raise CodeFileError(
            f"{path}: add a 'system' column, or select one system with --medcode-system "
            f"(a code such as 250.00 means different things in different systems)"
        )
    counts: dict[str, dict[str, float]] = {}
    bad: list[str] = []
    for row in rows:
        line = row.line  # where the row starts in the file (a quoted line break makes rows span lines)
        system = row.get("system") or systems[0]
        if system not in systems:
            continue
        raw_count = row.get("count", "") or "1"
        try:
            count = float(raw_count)
            if not count > 0:
                raise ValueError
        except ValueError:
            bad.append(f"row {line}: count {raw_count!r} is not a positive number")
            continue
        per = counts.setdefault(system, {})
        per[row["code"]] = per.get(row["code"], 0.0) + count
    if bad:
        more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise CodeFileError(f"{path}: {'; '.join(bad[:_MAX_LISTED])}{more}")
    if not counts:
        raise CodeFileError(f"{path}: no codes for the selected system(s) {', '.join(systems)}")
    return CodeList(counts)


def _weighted_sample(items: list[tuple[str, float]], n: int, rng: random.Random) -> list[str]:
    """n items without replacement, each drawn with probability proportional to its weight
    (Efraimidis–Spirakis keys), as the study drew its frequency-weighted subsample."""
    keyed = ((rng.random() ** (1.0 / w), code) for code, w in items)
    return [code for _, code in heapq.nlargest(n, keyed)]


def select_codes(
    system: CodeSystem, sample: int | None, seed: int, code_list: CodeList | None,
    among: Collection[str] | None = None,
) -> list[tuple[str, str]]:
    """(code, description) pairs for one system, in the table's order; only codes of ``among`` when given."""
    billable = system.billable_codes()
    if among is not None:
        billable = [(code, description) for code, description in billable if code in among]
    order = {code: i for i, (code, _) in enumerate(billable)}
    rng = random.Random(f"{seed}:{system.name}")
    if code_list is not None:
        wanted = code_list.counts.get(system.name, {})
        resolved: dict[str, float] = {}
        unknown = []
        for raw, count in wanted.items():
            entry = system.lookup(raw)
            if entry is None or entry.description is None:
                unknown.append(raw)
            else:
                resolved[entry.code] = resolved.get(entry.code, 0.0) + count
        if unknown:
            more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
            raise CodeFileError(
                f"--medcode-codes: {len(unknown)} code(s) not in {system.title} {system.version}: "
                f"{', '.join(unknown[:_MAX_LISTED])}{more}"
            )
        items = sorted(resolved.items())
        if sample is not None and sample < len(items):
            chosen = _weighted_sample(items, sample, rng)
        else:
            chosen = [c for c, _ in items]
        descriptions = {e.code: e.description for e in map(system.lookup, chosen) if e is not None and e.description}
        picked = [(c, descriptions[c]) for c in chosen]
        return sorted(picked, key=lambda cd: order.get(cd[0], len(order)))
    if sample is None or sample >= len(billable):
        return billable
    idx = sorted(rng.sample(range(len(billable)), sample))
    return [billable[i] for i in idx]


def build_cases(
    models: Sequence[str],
    per_system: dict[str, list[tuple[str, str]]],
    variants: Sequence[str] = ("exact",),
    seed: int = 0,
    temperatures: Sequence[float] = (),
    repeats: int = 1,
) -> list[Case]:
    """Models × systems × codes × variants × temperatures × repeats, model-major so a report reads
    model by model (a code's variants side by side). A temperature or repeat dimension of one value
    is left out of the case (None), so its id stays short."""
    from pytest_medcode.dataset.variants import perturb

    worded = {
        (system, code, variant): perturb(description, variant, seed, code).text
        for system, pairs in per_system.items()
        for code, description in pairs
        for variant in variants
        if variant != "exact"
    }
    temps: Sequence[float | None] = temperatures if len(temperatures) > 1 else (None,)
    reps: Sequence[int | None] = range(repeats) if repeats > 1 else (None,)
    return [
        Case(model, system, code, description, variant, worded.get((system, code, variant)), t, r)
        for model in models
        for system, pairs in per_system.items()
        for code, description in pairs
        for variant in variants
        for t in temps
        for r in reps
    ]
