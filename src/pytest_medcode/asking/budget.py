"""A spending limit: no call starts that could take the run's spend past ``--medcode-max-cost``.

A call in flight holds its worst case — its prompt tokens and ``max_tokens`` of answer at the model's
prices — until its answer arrives; then it is settled at the usage the API reported. So with many calls
in flight the spend never passes the limit, whatever the answers turn out to be. The spend so far is
kept in the run's state folder (``budget.json``), so a process that takes over asking (xdist) goes on
from it instead of from zero.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_medcode.api import Question
from pytest_medcode.asking.pricing import PriceTable
from pytest_medcode.atomic import read_json, write_json

TOTAL = "*"  # the key of the run-wide limit in ``limits``
_CENT_FRACTION = 1e-9  # float slack: a call that lands exactly on the limit is allowed


@dataclass
class Budget:
    """Limits in USD (``TOTAL`` and per model), what was spent, and what calls in flight hold.

    Used from the engine's event loop only. A call that would pass a limit only because of calls in flight
    waits for them to settle; a call that would pass it on what is already spent stops that limit's asking
    (every later call of its scope is refused too, so a run stops at one point, not here and there)."""

    prices: PriceTable
    limits: dict[str, float]
    count_prompt: Callable[[str, Question], int]
    spent: dict[str, float] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)  # scope → why its asking stopped
    path: Path | None = None  # the run's budget.json
    _settled: asyncio.Condition | None = None

    def load(self, path: Path) -> None:
        """Continue from the spend another process of this run recorded (the larger figure wins)."""
        self.path = path
        data = read_json(path)  # None when absent
        if isinstance(data, Mapping):
            for model, value in (data.get("spent") or {}).items():
                self.spent[str(model)] = max(self.spent.get(str(model), 0.0), float(value))
            self.stopped.update(data.get("stopped") or {})

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, {"spent": self.spent, "stopped": self.stopped, "limits": self.limits})
        except OSError:  # this process keeps counting; only a takeover by another process would not see it
            pass

    def _scopes(self, model: str) -> list[tuple[str, float]]:
        return [(scope, self.limits[scope]) for scope in (model, TOTAL) if scope in self.limits]

    def _spent(self, scope: str) -> float:
        return sum(self.spent.values()) if scope == TOTAL else self.spent.get(scope, 0.0)

    def _held(self, scope: str) -> float:
        return sum(self.held.values()) if scope == TOTAL else self.held.get(scope, 0.0)

    async def reserve(self, model: str, question: Question) -> tuple[float, str | None]:
        """Hold the call's worst-case cost: (amount held, None), or (0, why it may not start)."""
        scopes = self._scopes(model)
        if not scopes:
            return 0.0, None
        price = self.prices.price(model)
        if price is None:  # no API bill (lookup, python:, local:): a priced API model was checked at configure time
            return 0.0, None
        worst = price.cost(self.count_prompt(model, question), question.max_tokens)
        if self._settled is None:
            self._settled = asyncio.Condition()
        async with self._settled:
            while True:
                for scope, limit in scopes:
                    if scope in self.stopped:
                        return 0.0, self.stopped[scope]
                    if self._spent(scope) + worst > limit + _CENT_FRACTION:
                        label = "the run's budget" if scope == TOTAL else f"the budget for {model}"
                        self.stopped[scope] = (
                            f"not asked: {label} (${limit:.2f}) would be passed: ${self._spent(scope):.4f} spent, "
                            f"a call may cost up to ${worst:.4f}; a rerun with a higher --medcode-max-cost asks it")
                        self._save()
                        return 0.0, self.stopped[scope]
                if all(self._spent(s) + self._held(s) + worst <= limit + _CENT_FRACTION for s, limit in scopes):
                    break
                await self._settled.wait()  # room only once calls in flight are settled
            self.held[model] = self.held.get(model, 0.0) + worst
        return worst, None

    async def settle(self, model: str, held: float, usage: Mapping[str, Any]) -> None:
        """The call is over: let go of what it held, add what it really cost (nothing without usage)."""
        if not held or self._settled is None:
            return
        async with self._settled:
            self.held[model] = max(0.0, self.held[model] - held)  # held since reserve()
            cost = self.prices.cost(model, usage.get("prompt_tokens"), usage.get("completion_tokens"),
                                    bool(usage.get("batch")))
            if cost:
                self.spent[model] = self.spent.get(model, 0.0) + cost
                self._save()
            self._settled.notify_all()


def parse_limits(values: Iterable[str]) -> dict[str, float]:
    """``--medcode-max-cost USD`` (the run) and ``MODEL=USD`` (one model) → limits; ValueError: one line."""
    limits: dict[str, float] = {}
    for value in values:
        text = str(value).strip()
        model, sep, amount = text.rpartition("=")
        scope = model.strip() if sep else TOTAL
        if sep and not scope:
            raise ValueError(f"{value!r}: expected USD or MODEL=USD, e.g. 25 or gpt-4=10")
        try:
            usd = float(amount)
        except ValueError:
            raise ValueError(f"{value!r}: expected an amount in USD, e.g. 25 or gpt-4=10") from None
        if not (usd > 0 and math.isfinite(usd)):
            raise ValueError(f"{value!r}: the amount must be above 0 USD")
        limits[scope] = usd
    return limits
