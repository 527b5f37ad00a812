"""What changed between two releases of a code system: codes added, deleted and retitled.

Codes at category level or below are compared by lookup key. A title counts as changed when it reads
differently once accents, case and spacing are set aside: the April 2026 source writes ``Charcôt`` where
the CMS files write ``Charcot``, a spelling of the source, not a change of the code. A release
whose table covers part of the system (FY2025 ICD-10-PCS: section 0) is compared on that part only, so a
code outside it is neither added nor deleted.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from pytest_medcode.codesystems.releases import Release
from pytest_medcode.codesystems.table import LEVELS_THAT_ARE_CODES, CodeSystem

ADDED, DELETED, RETITLED = "added", "deleted", "retitled"
KINDS: tuple[str, ...] = (ADDED, DELETED, RETITLED)


@dataclass(frozen=True)
class Change:
    code: str  # the canonical form, of the release that has it (the newer one when both do)
    kind: str  # ADDED, DELETED or RETITLED
    old_title: str | None
    new_title: str | None
    billable: bool  # in the release that has it (the newer one when both do)


def _titles(system: CodeSystem, release: Release, other: Release) -> dict[str, tuple[str, str | None, bool]]:
    """key → (code, title, billable) of every code both releases' tables would hold."""
    columns = [system.table.column(name).to_pylist() for name in ("key", "code", "description", "billable", "level")]
    return {key: (code, title, billable) for key, code, title, billable, level in zip(*columns)
            if level in LEVELS_THAT_ARE_CODES and release.holds(key) and other.holds(key)}


def plain(title: str) -> str:
    """A title with accents, case and runs of spaces set aside: what a retitling must change."""
    decomposed = unicodedata.normalize("NFKD", title)
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().split())


def changes(old: CodeSystem, old_release: Release, new: CodeSystem, new_release: Release) -> list[Change]:
    """Every code added, deleted or retitled from ``old`` to ``new``, in code order."""
    before = _titles(old, old_release, new_release)
    after = _titles(new, new_release, old_release)
    out = []
    for key in sorted(before.keys() | after.keys()):
        was, now = before.get(key), after.get(key)
        if was is None and now is not None:
            out.append(Change(now[0], ADDED, None, now[1], now[2]))
        elif now is None and was is not None:
            out.append(Change(was[0], DELETED, was[1], None, was[2]))
        elif was is not None and now is not None and was[1] and now[1] and plain(was[1]) != plain(now[1]):
            out.append(Change(now[0], RETITLED, was[1], now[1], now[2]))
    return out


def counts(found: list[Change], billable_only: bool = False) -> dict[str, int]:
    """How many of each kind (of billable codes only, when asked)."""
    return {kind: sum(1 for c in found if c.kind == kind and (c.billable or not billable_only)) for kind in KINDS}
