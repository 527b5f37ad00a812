"""What changed between two releases of a code system: codes added, deleted and retitled.

Codes at category level or below are compared by lookup key. A title counts as changed when it reads
differently once accents, case and spacing are set aside: the April 2026 source writes ``Charcôt`` where
the CMS files write ``Charcot``, a spelling of the source, not a change of the code. A release
whose table covers part of the system (FY2025 ICD-10-PCS: section 0) is compared on that part only, so a
code outside it is neither added nor deleted.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_medcode.codesystems.releases import Release, ReleaseError
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


def _retitled(old: str | None, new: str | None) -> bool:
    return bool(old and new and old != new and plain(old) != plain(new))  # most titles are equal: no plain()


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
        elif was is not None and now is not None and _retitled(was[1], now[1]):
            out.append(Change(now[0], RETITLED, was[1], now[1], now[2]))
    return out


@functools.cache
def changes_between(name: str, old: str, new: str) -> tuple[Change, ...]:
    """:func:`changes` of two bundled releases by key, once per process (two tables of ~100k rows compared)."""
    from pytest_medcode.codesystems import load_system, release_of  # the package holds the releases

    return tuple(changes(load_system(name, release=old), release_of(name, old), load_system(name, release=new),
                         release_of(name, new)))


def counts(found: Sequence[Change], billable_only: bool = False) -> dict[str, int]:
    """How many of each kind (of billable codes only, when asked)."""
    return {kind: sum(1 for c in found if c.kind == kind and (c.billable or not billable_only)) for kind in KINDS}


def changed_since_previous(name: str, system: CodeSystem) -> list[Change]:
    """The codes added or retitled in ``system``'s release since the release before it.

    Raises ReleaseError (one line) for a system with one release, the oldest release, or a release that
    changed nothing since the one before it.
    """
    from pytest_medcode.codesystems import SYSTEMS, release_of  # the package holds the releases

    spec = SYSTEMS.get(name)
    if spec is None or len(spec.releases) < 2 or not system.release:
        raise ReleaseError(f"{name} has one release: there is no earlier one to find changed codes against")
    ordered = sorted(spec.releases, key=lambda r: r.order)
    current = release_of(name, system.release)
    at = ordered.index(current)
    if at == 0:
        raise ReleaseError(f"{name}={current.key} is the oldest bundled release of {spec.title}: there is no "
                           f"earlier one to find changed codes against (choose a later one with --medcode-release)")
    previous = ordered[at - 1]
    found = [c for c in changes_between(name, previous.key, current.key) if c.kind in (ADDED, RETITLED)]
    if not any(c.billable for c in found):
        raise ReleaseError(f"{name}: {current.label} adds or retitles no billable code since {previous.label}")
    return found
