"""The gate's rules as the options give them: ``--medcode-fail-under``/``--medcode-fail-over`` thresholds and
``--medcode-max-drop`` margins, parsed once into values with one-line errors (a pytest usage error, or
``medcode compare``'s exit 2)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pytest_medcode.vocabulary import METRICS, POOLED, judged_metrics, metric

__all__ = ["COVERAGE_PREFIX", "DEFAULT_ALPHA", "DEFAULT_DOCUMENT_MAX_DROP", "DEFAULT_MAX_DROP",
           "DEFAULT_MAX_ERROR_RATE", "MAX_ALPHA", "MaxDrop", "Threshold", "coverage_target", "parse_max_drops",
           "parse_target", "parse_thresholds"]

DEFAULT_ALPHA = 0.05
#: The largest significance level either front end accepts (above 0, at most this): a level over one half
#: calls a drop significant on evidence that favours no drop.
MAX_ALPHA = 0.5
DEFAULT_MAX_ERROR_RATE = 0.05
#: The margin used when a baseline is given without any ``--medcode-max-drop``.
DEFAULT_MAX_DROP = "exact_match=2pp"
#: The same for document cases: per-document F1, tested with a paired bootstrap.
DEFAULT_DOCUMENT_MAX_DROP = "f1=2pp"


@dataclass(frozen=True)
class Threshold:
    """``metric`` must stay at or above (``under``) / at or below (``over``) ``limit``."""

    metric: str
    limit: float
    direction: str  # "under": fail when below; "over": fail when above
    system: str | None = None  # None: every system without its own limit

    @property
    def text(self) -> str:
        scope = f"{self.system}:" if self.system else ""
        return f"{scope}{self.metric}={self.limit:g}"


@dataclass(frozen=True)
class MaxDrop:
    """The largest tolerated worsening of ``metric`` against the baseline, in the metric's units."""

    metric: str
    margin: float

    @property
    def text(self) -> str:
        return f"{self.metric}={metric(self.metric).margin_text(self.margin)}"


def _split(items: Iterable[str] | str | None) -> list[str]:
    if items is None:
        return []
    if isinstance(items, str):
        items = [items]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _fraction(text: str, what: str, *, percent: str) -> float:
    """``0.45``, or ``45%``/``2pp`` (``percent`` is the accepted suffix) → a fraction in [0, 1]."""
    raw = text.strip().lower()
    scale = 1.0
    if raw.endswith(percent):
        raw, scale = raw[: -len(percent)].strip(), 0.01
    elif raw.endswith("%") or raw.endswith("pp"):
        hint = (
            "percentage points, e.g. 2pp, or a fraction, e.g. 0.02"
            if percent == "pp"
            else ("a fraction, e.g. 0.45, or a percentage, e.g. 45%")
        )
        raise ValueError(f"{what}: write {hint}")
    if not _NUMBER.match(raw):
        raise ValueError(f"{what}: {text.strip()!r} is not a number")
    value = float(raw) * scale
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what}: must be between 0 and 1 (or 0% and 100%), got {text.strip()!r}")
    return value


#: ``coverage@95``: the share auto-coded at 95 % accuracy on what is auto-coded (results/selective.py).
COVERAGE_PREFIX = "coverage@"


def parse_target(text: str) -> float:
    """A target accuracy: ``0.95``, ``95%``; above 0 and at most 1, else ValueError in one line."""
    raw = str(text).strip()
    value = float(raw[:-1]) / 100 if raw.endswith("%") and _NUMBER.match(raw[:-1].strip()) else (
        float(raw) if _NUMBER.match(raw) else math.nan)
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise ValueError(f"{raw!r}: a target accuracy must be above 0 and at most 1 (0.95 or 95%)")
    return value


def coverage_target(metric: str) -> float | None:
    """The target accuracy of a ``coverage@T`` metric (``coverage@95`` → 0.95); None for any other metric."""
    if not metric.startswith(COVERAGE_PREFIX):
        return None
    return float(metric[len(COVERAGE_PREFIX):]) / 100


def _coverage_metric(name: str, item: str) -> str:
    """``coverage@95`` (or ``coverage@99.5``): the target is a percentage above 0 and at most 100."""
    text = name[len(COVERAGE_PREFIX):]
    if not _NUMBER.match(text) or not 0.0 < float(text) <= 100.0:
        raise ValueError(f"{item!r}: coverage@T takes a target accuracy T in percent above 0 and at most 100, "
                         "e.g. coverage@95")
    return f"{COVERAGE_PREFIX}{float(text):g}"


def _metric(name: str, item: str) -> str:
    metric = name.strip().lower().replace("-", "_")
    if metric.startswith(COVERAGE_PREFIX):
        return _coverage_metric(metric, item)
    if metric not in METRICS or not METRICS[metric].judged:
        raise ValueError(f"{item!r}: unknown metric {name.strip()!r}; choose from {', '.join(judged_metrics())}, "
                         "or coverage@T (the share auto-coded at T % accuracy, e.g. coverage@95)")
    return metric


def parse_thresholds(
    items: Iterable[str] | str | None, direction: str, systems: Iterable[str] | None = None
) -> tuple[Threshold, ...]:
    """``["exact_match=0.45,valid=0.9", "icd10cm:exact_match=0.3"]`` → thresholds (last one wins).

    Raises ValueError with a one-line reason. ``systems`` (known system names) checks the scopes.
    """
    if direction not in ("under", "over"):
        raise ValueError(f"direction must be 'under' or 'over', got {direction!r}")
    known = set(systems) if systems is not None else None
    out: dict[tuple[str | None, str], Threshold] = {}
    for item in _split(items):
        left, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise ValueError(f"{item!r}: expected METRIC=LIMIT or SYSTEM:METRIC=LIMIT, e.g. exact_match=0.45")
        scope, colon, name = left.rpartition(":")
        system = scope.strip().lower() if colon else None
        if colon and not system:
            raise ValueError(f"{item!r}: empty system before ':'")
        if system is not None and known is not None and system not in known:
            raise ValueError(f"{item!r}: unknown system {system!r}; choose from {', '.join(sorted(known))}")
        metric = _metric(name, item)
        lower_better = metric in METRICS and METRICS[metric].lower_is_better
        if direction == "under" and lower_better:
            raise ValueError(
                f"{item!r}: {metric} is lower-is-better; limit it with "
                f"--medcode-fail-over {metric}={value.strip()}"
            )
        if direction == "over" and not lower_better:
            raise ValueError(
                f"{item!r}: {metric} is higher-is-better; limit it with "
                f"--medcode-fail-under {metric}={value.strip()}"
            )
        limit = _fraction(value, repr(item), percent="%")
        out[(system, metric)] = Threshold(metric, limit, direction, system)
    return tuple(out.values())


def parse_max_drops(items: Iterable[str] | str | None) -> tuple[MaxDrop, ...]:
    """``["exact_match=2pp,digit_match=0.01"]`` → margins; ``pp`` is percentage points (1pp = 0.01)."""
    out: dict[str, MaxDrop] = {}
    for item in _split(items):
        name, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise ValueError(f"{item!r}: expected METRIC=MARGIN, e.g. exact_match=2pp or exact_match=0.02")
        if ":" in name:
            raise ValueError(f"{item!r}: margins apply to every system; drop the 'SYSTEM:' prefix")
        metric = _metric(name, item)
        if coverage_target(metric) is None and METRICS[metric].kind == POOLED:
            raise ValueError(f"{item!r}: {metric} is pooled over documents, so no case-by-case test applies; "
                             "compare runs on f1 (per-document F1, paired bootstrap) or set_match (McNemar)")
        margin = _fraction(value, repr(item), percent="pp")
        if margin >= 1.0:
            raise ValueError(f"{item!r}: a margin must be below 1 (100pp)")
        out[metric] = MaxDrop(metric, margin)
    return tuple(out.values())


