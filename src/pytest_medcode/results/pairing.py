"""A new run's cases matched to a baseline's, so the gate can judge each case against itself.

Cases pair by (model, system, code), plus ``variant``, ``temperature`` and ``repeat`` when both runs
carry them (:data:`pytest_medcode.vocabulary.PAIR_KEYS`). A model swap (each run has one model, under
another name) pairs across the two names and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_medcode.vocabulary import PAIR_EXTRA_KEYS, PAIR_KEYS

__all__ = ["Pairing", "PairingError", "pair_records"]


class PairingError(ValueError):
    """Two runs whose cases cannot be paired (one-line message)."""


@dataclass(frozen=True)
class Pairing:
    """Cases of a new run matched to a baseline's. ``pairs`` are (baseline record, new record)."""

    key_columns: tuple[str, ...]
    pairs: list[tuple[dict[str, Any], dict[str, Any]]]
    only_base: int
    only_new: int
    model_map: dict[str, str] = field(default_factory=dict)  # baseline model → new model, for a model swap

    def notes(self) -> list[str]:
        """What a reader of the verdict should know about how the runs were matched."""
        out = [
            f"baseline model {b} paired with {w}: the two runs each have a single model of another name"
            for b, w in self.model_map.items()
        ]
        if self.only_new:
            out.append(f"{self.only_new} case(s) of this run have no baseline partner and were not compared")
        if self.only_base:
            out.append(f"{self.only_base} baseline case(s) are not in this run and were not compared")
        return out


def _key(record: dict[str, Any], columns: Sequence[str], model_map: dict[str, str]) -> tuple[Any, ...]:
    key = []
    for c in columns:
        value = record.get(c)
        if c == "model":
            value = model_map.get(str(value), value)
        key.append(value)
    return tuple(key)


def pair_records(base: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> Pairing:
    """Match the cases of ``new`` to those of ``base``.

    When each run has exactly one model and the names differ (a model swap: the baseline was
    gpt-4-0613, this run is gpt-4o), cases pair across the two names and ``notes()`` says so.
    Raises PairingError when a run has two cases with the same key (they could not be told apart).
    """
    base_cols = set().union(*(r.keys() for r in base)) if base else set()
    new_cols = set().union(*(r.keys() for r in new)) if new else set()
    columns = PAIR_KEYS + tuple(
        c
        for c in PAIR_EXTRA_KEYS
        if c in base_cols and c in new_cols and any(r.get(c) is not None for r in (*base, *new))
    )
    base_models = list(dict.fromkeys(str(r["model"]) for r in base))
    new_models = list(dict.fromkeys(str(r["model"]) for r in new))
    model_map: dict[str, str] = {}
    if len(base_models) == 1 and len(new_models) == 1 and base_models != new_models:
        model_map = {base_models[0]: new_models[0]}

    def index(records: Sequence[dict[str, Any]], which: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in records:
            k = _key(r, columns, model_map if which == "baseline" else {})
            if k in out:
                shown = ", ".join(f"{c}={v}" for c, v in zip(columns, k, strict=True))
                raise PairingError(
                    f"the {which} run has two cases with {shown}; cannot pair them "
                    f"(add a 'variant' or 'repeat' column to tell them apart)"
                )
            out[k] = r
        return out

    base_index = index(base, "baseline")
    new_index = index(new, "new")
    pairs = [(base_index[k], r) for k, r in new_index.items() if k in base_index]
    return Pairing(
        key_columns=columns,
        pairs=pairs,
        only_base=len(base_index) - len(pairs),
        only_new=len(new_index) - len(pairs),
        model_map=model_map,
    )
