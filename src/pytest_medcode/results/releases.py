"""Which release of each code system a run was scored in, and what the gate pairs when two runs differ.

A run records its release on every case (``release``). A baseline recorded before runs recorded one was
scored against the only release bundled then (:data:`~pytest_medcode.codesystems.UNRECORDED_RELEASES`).
Two runs of different releases are not comparable case by case (a code of one may not exist in the
other), so the gate refuses them unless asked to pair only the codes both releases have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_medcode.vocabulary import DOCUMENT, query_records

#: --medcode-baseline-release-mismatch: refuse to pair, or pair the codes present in both releases.
REFUSE, PAIR_COMMON = "refuse", "pair-common"
MISMATCH_CHOICES: tuple[str, ...] = (REFUSE, PAIR_COMMON)


@dataclass(frozen=True)
class RunReleases:
    """system → release key of a run's code queries; ``assumed``: the systems whose cases recorded none."""

    releases: dict[str, str]
    assumed: tuple[str, ...] = ()


def run_releases(records: Iterable[Mapping[str, Any]], unrecorded: Mapping[str, str]) -> RunReleases:
    """The release of each system of a run; a system of bundled releases whose cases name none takes the one
    ``unrecorded`` gives (what the run was scored against then)."""
    out: dict[str, str] = {}
    assumed: list[str] = []
    for record in query_records(records):  # type: ignore[arg-type]
        system = str(record.get("system"))
        if system in out:
            continue
        release = record.get("release")
        if release:
            out[system] = str(release)
        elif system in unrecorded:
            out[system] = unrecorded[system]
            assumed.append(system)
    return RunReleases(out, tuple(assumed))


def mismatches(base: RunReleases, new: RunReleases) -> tuple[tuple[str, str, str], ...]:
    """(system, baseline release, run release) of every system both runs have under different releases."""
    return tuple((s, base.releases[s], r) for s, r in new.releases.items() if s in base.releases
                 and base.releases[s] != r)


def common_codes(records: Sequence[dict[str, Any]], found: Sequence[tuple[str, str, str]],
                 codes_of: Callable[[str, str], frozenset[str]], key: Callable[[str], str]
                 ) -> tuple[list[dict[str, Any]], int]:
    """The records whose reference code is a code of both releases of its system (other systems' records and
    document cases as they are: a document has gold codes, not one reference code), and how many were left out."""
    both = {system: codes_of(system, a) & codes_of(system, b) for system, a, b in found}
    kept = [r for r in records if r.get("kind") == DOCUMENT or r.get("system") not in both
            or key(str(r.get("code") or "")) in both[r["system"]]]
    return kept, len(records) - len(kept)
