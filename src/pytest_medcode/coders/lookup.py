"""The offline retrieval coder: find the description in the code table.

It is the "LLM with a tool" reference row: given the official description, coding is a
dictionary lookup. Exact (case- and space-insensitive) description matches answer at once; other
wording falls back to rapidfuzz over every billable description of the system.
"""

from __future__ import annotations

import re
from functools import cached_property

from pytest_medcode.codesystems import CodeSystem, load_system
from pytest_medcode.coders.base import CodeRequest, Reply

_SPACE = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text.strip().lower())


class _Index:
    def __init__(self, system: CodeSystem) -> None:
        pairs = system.billable_codes()
        self.codes = [c for c, _ in pairs]
        self.texts = [_norm(d) for _, d in pairs]
        self.exact: dict[str, str] = {}
        for code, text in zip(self.codes, self.texts):
            self.exact.setdefault(text, code)  # first in table order wins a tie: deterministic

    def search(self, description: str) -> str | None:
        text = _norm(description)
        hit = self.exact.get(text)
        if hit is not None:
            return hit
        from rapidfuzz import fuzz, process, utils

        best = process.extractOne(text, self.texts, scorer=fuzz.token_set_ratio, processor=utils.default_process)
        return self.codes[best[2]] if best else None


class LookupCoder:
    name = "lookup"

    def __init__(self, codesets: dict | None = None) -> None:
        self._codesets = codesets or {}
        self._indexes: dict[str, _Index] = {}

    def check(self) -> None:
        return None

    def _index(self, system: str) -> _Index:
        index = self._indexes.get(system)
        if index is None:
            index = self._indexes[system] = _Index(load_system(system, self._codesets.get(system)))
        return index

    @cached_property
    def _lock(self):
        import threading

        return threading.Lock()

    async def answer(self, request: CodeRequest) -> Reply:
        with self._lock:
            index = self._index(request.case.system)
        code = index.search(request.case.description)
        return Reply(text=f"Code: {code}" if code else "No code found.")
