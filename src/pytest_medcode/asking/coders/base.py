"""What every coder looks like to the query engine (the public types live in :mod:`pytest_medcode.api`),
and the base of the tools that wrap another coder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_medcode.api import CallFailed, Coder, CoderOptions, CoderUnavailable, Question, Reply

if TYPE_CHECKING:
    from pytest_medcode.codesystems import CodeSystem

__all__ = ["CallFailed", "Coder", "CoderOptions", "CoderUnavailable", "Question", "Reply", "WrappingCoder"]


class WrappingCoder:
    """A tool around another coder (``rag:``, ``verify:``): same cacheability, checks and clean-up as the
    coder it wraps, and the code tables of the run (user code sets included) for its own work."""

    gives_confidence = True  # rag:'s chosen candidate, verify:'s rounds (times the inner one's, when it gives one)

    def __init__(self, name: str, inner: Coder, codesets: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.inner = inner
        self._codesets = codesets or {}

    @property
    def cacheable(self) -> bool:
        return bool(getattr(self.inner, "cacheable", False))

    def check(self) -> None:
        self.inner.check()

    def close(self) -> None:
        self.inner.close()

    def system(self, question: Question) -> CodeSystem:
        """The code table of the question's system (the user's file when one was given)."""
        from pytest_medcode.codesystems import load_system  # pyarrow: only once a tool works

        return load_system(question.system, self._codesets.get(question.system))
