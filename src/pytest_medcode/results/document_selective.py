"""Straight-through coding of documents: how many notes a product may code on its own at a target precision.

A document's answer is a set of codes, and a coder may give each code a confidence (``code_confidences`` of the
record, one per predicted code; scoring/code_sets.py). Per (model, system) group of answered documents:

- the **precision–coverage curve over predicted codes**: the group's predicted codes taken in decreasing
  confidence, the precision of the codes kept (the share in their document's gold set) against the share of all
  predicted codes kept — results/selective.py's risk–coverage curve with codes for cases and precision for
  accuracy, ties admitted together or not at all;
- **documents auto-coded at a target precision** (``--medcode-coverage-at``, 95 % and 99 % by default): a
  document is auto-coded at threshold t when every code it predicts has a confidence of at least t (the product
  would send it to a person otherwise), so its confidence is the lowest of its codes'; the share of documents
  auto-coded at the largest-coverage threshold whose auto-coded documents' codes are at least ``target``
  precise, that threshold, and a seeded bootstrap interval over documents (results/stats.py's
  ``resampled_counts``), a document's codes drawn together.

A document with a code the coder gave no confidence for, one it declined (``abstained``), and one with no code
at all (nothing to code it with) are never auto-coded but stay in the denominator, as a code query without a
confidence does. A group where no predicted code has a confidence has no numbers ("no confidence"), never
coverage read off a confidence of 1.0; a run where none has any has no rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_medcode.results.selective import (
    DEFAULT_TARGETS,
    RESAMPLES,
    Levels,
    coverage_at,
    curve_points,
    levels,
    percentile_intervals,
    risk_coverage,
    target_label,
)
from pytest_medcode.results.stats import resampled_counts
from pytest_medcode.vocabulary import GROUP_KEYS, answered

__all__ = [
    "AutoCoded",
    "DocumentLevels",
    "auto_coded_at",
    "auto_coded_intervals",
    "code_levels",
    "document_confidence",
    "document_levels",
    "document_selective_rows",
    "has_code_confidences",
    "precision_coverage",
]

_EPS = 1e-9  # precision is compared as counts: hits >= target * codes, up to float error

#: One document as the thresholds see it: (its confidence — the lowest of its codes', None when it cannot be
#: auto-coded —, its predicted codes in the gold set, its predicted codes).
Document = tuple[float | None, int, int]


def document_confidence(confidences: Sequence[float | None], declined: bool = False) -> float | None:
    """The threshold a document clears: the lowest of its codes' confidences; None (never auto-coded) when one
    code has none, when it names no code, or when the coder declined it."""
    if declined or not confidences or any(c is None for c in confidences):
        return None
    return min(float(c) for c in confidences if c is not None)


@dataclass(frozen=True)
class DocumentLevels:
    """A group's documents as the thresholds see them: the distinct confidences of the documents that can be
    auto-coded, highest first, and at each: how many documents, their predicted codes and how many of those are
    in the gold set; ``n`` counts every document."""

    confidence: np.ndarray  # float, descending, distinct
    documents: np.ndarray  # int, per level
    codes: np.ndarray  # int, per level
    hits: np.ndarray  # int, per level
    n: int


def document_levels(documents: Sequence[Document]) -> DocumentLevels:
    """The tie levels of a group of documents (a threshold admits every document of its confidence or none)."""
    eligible = [(c, h, k) for c, h, k in documents if c is not None]
    conf = np.array([c for c, _, _ in eligible], dtype=np.float64)
    values, inverse = np.unique(-conf, return_inverse=True)  # ascending of -conf: highest first
    size = values.size

    def per_level(weights: Sequence[int]) -> np.ndarray:
        return np.bincount(inverse, weights=np.asarray(weights, dtype=np.float64), minlength=size).astype(np.int64)

    return DocumentLevels(-values, per_level([1] * len(eligible)), per_level([k for _, _, k in eligible]),
                          per_level([h for _, h, _ in eligible]), len(documents))


@dataclass(frozen=True)
class AutoCoded:
    """Documents auto-coded at a target precision: the share, the threshold (None: no threshold reaches the
    target), the precision of the auto-coded documents' codes, how many documents and codes that is."""

    target: float
    coverage: float
    threshold: float | None
    precision: float | None
    auto_coded: int
    codes: int
    n: int


def _deepest(hits: np.ndarray, codes: np.ndarray, target: float) -> np.ndarray:
    """Per row of cumulated (hits, codes) per level: the deepest level at ``target`` precision, -1 for none."""
    ok = (hits >= target * codes - _EPS) & (codes > 0)
    size = ok.shape[-1]
    deepest = size - 1 - np.argmax(ok[..., ::-1], axis=-1)
    return np.where(ok.any(axis=-1), deepest, -1)


def auto_coded_at(dl: DocumentLevels, target: float) -> AutoCoded:
    """The largest share of documents, taken in decreasing confidence (ties whole), whose codes are at least
    ``target`` precise."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target!r}")
    if dl.n == 0 or dl.confidence.size == 0:
        return AutoCoded(target, 0.0, None, None, 0, 0, dl.n)
    docs, codes, hits = np.cumsum(dl.documents), np.cumsum(dl.codes), np.cumsum(dl.hits)
    k = int(_deepest(hits, codes, target))
    if k < 0:
        return AutoCoded(target, 0.0, None, None, 0, 0, dl.n)
    return AutoCoded(target, float(docs[k]) / dl.n, float(dl.confidence[k]), float(hits[k]) / float(codes[k]),
                     int(docs[k]), int(codes[k]), dl.n)


def auto_coded_intervals(documents: Sequence[Document], targets: Sequence[float], confidence: float = 0.95,
                         resamples: int = RESAMPLES, seed: int = 0) -> dict[float, tuple[float, float] | None]:
    """Percentile intervals of the share auto-coded at each target, from one set of seeded resamples of the
    documents (each drawn with its codes). A resample's documents are counted by kind — (level, hits, codes),
    and one kind for those never auto-coded — which is drawing the documents themselves."""
    n = len(documents)
    if n == 0:
        return dict.fromkeys(targets)
    dl = document_levels(documents)
    if dl.confidence.size == 0:
        return dict.fromkeys(targets, (0.0, 0.0))
    position = {float(c): i for i, c in enumerate(dl.confidence)}
    kinds = Counter((position[float(c)], h, k) for c, h, k in documents if c is not None)
    ordered = sorted(kinds.items())
    level = np.array([lv for (lv, _, _), _ in ordered], dtype=np.int64)
    hits = np.array([h for (_, h, _), _ in ordered], dtype=np.int64)
    codes = np.array([k for (_, _, k), _ in ordered], dtype=np.int64)
    counts = np.array([count for _, count in ordered] + [n - sum(kinds.values())], dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, level[1:] != level[:-1]])
    width = level.size
    values: dict[float, list[np.ndarray]] = {t: [] for t in targets}
    for chunk in resampled_counts(counts, resamples, seed):
        body = chunk[:, :width]
        docs = np.cumsum(np.add.reduceat(body, starts, axis=1), axis=1)
        kept = np.cumsum(np.add.reduceat(body * codes, starts, axis=1), axis=1)
        right = np.cumsum(np.add.reduceat(body * hits, starts, axis=1), axis=1)
        rows = np.arange(len(chunk))
        for target in targets:
            deepest = _deepest(right, kept, target)
            taken = np.where(deepest >= 0, docs[rows, np.maximum(deepest, 0)], 0)
            values[target].append(taken / n)
    return percentile_intervals(values, confidence)


def code_levels(records: Sequence[dict[str, Any]]) -> Levels:
    """The predicted codes of a group's answered documents as results/selective.py's levels: a code is a case,
    right when it is in its document's gold set; a declined document's codes are never kept."""
    conf: list[float | None] = []
    right: list[bool] = []
    declined: list[bool] = []
    for record in records:
        gold = set(record.get("gold_codes") or ())
        given = list(record.get("code_confidences") or ())
        for i, code in enumerate(record.get("predicted_codes") or ()):
            conf.append(given[i] if i < len(given) else None)
            right.append(code in gold)
            declined.append(bool(record.get("abstained")))
    return levels(conf, right, declined)


def precision_coverage(lv: Levels) -> list[tuple[float, float, float]]:
    """``(share of predicted codes kept, precision of the kept codes, threshold)`` at each distinct threshold,
    highest threshold first."""
    return [(c, 1.0 - r, t) for c, r, t in risk_coverage(lv)]


def _documents(records: Sequence[dict[str, Any]]) -> list[Document]:
    return [(document_confidence(list(r.get("code_confidences") or ()) if r.get("predicted_codes") else [],
                                 bool(r.get("abstained"))),
             int(r.get("true_positives") or 0), int(r.get("n_codes") or 0)) for r in records]


def has_code_confidences(record: dict[str, Any]) -> bool:
    """The record's coder gave a confidence for at least one code it predicted."""
    return any(c is not None for c in record.get("code_confidences") or ())


def group_row(records: Sequence[dict[str, Any]], targets: Sequence[float], seed: int,
              resamples: int = RESAMPLES) -> dict[str, Any]:
    """The straight-through numbers of one group's answered documents."""
    docs = _documents(records)
    lv = code_levels(records)
    predicted = sum(d[2] for d in docs)
    with_confidence = sum(1 for r in records for c in r.get("code_confidences") or () if c is not None)
    row: dict[str, Any] = {
        "n_documents": len(records), "predicted_codes": predicted, "with_confidence": with_confidence,
        "auto_codable": sum(1 for c, _, _ in docs if c is not None),
        "declined": sum(1 for r in records if r.get("abstained")),
        "precision": sum(d[1] for d in docs) / predicted if predicted else None,
    }
    if not with_confidence:
        return {**row, "coverage": None, "codes": None, "curve": None}
    dl = document_levels(docs)
    intervals = auto_coded_intervals(docs, targets, resamples=resamples, seed=seed)
    coverage, codes = {}, {}
    for target in targets:
        at, interval = auto_coded_at(dl, target), intervals[target]
        coverage[target_label(target)] = {
            "target": target, "value": at.coverage, "low": interval[0] if interval else None,
            "high": interval[1] if interval else None, "threshold": at.threshold, "precision": at.precision,
            "auto_coded": at.auto_coded, "codes": at.codes, "n": at.n}
        kept = coverage_at(lv, target)
        codes[target_label(target)] = {"target": target, "value": kept.coverage, "threshold": kept.threshold,
                                       "precision": kept.accuracy, "kept": kept.auto_coded, "n": kept.n}
    return {**row, "coverage": coverage, "codes": codes, "curve": curve_points(precision_coverage(lv))}


def document_selective_rows(records: Iterable[dict[str, Any]], seed: int = 0,
                            targets: Sequence[float] = DEFAULT_TARGETS,
                            resamples: int = RESAMPLES) -> list[dict[str, Any]]:
    """One row per (model, system) of answered documents, in the order the groups first appear; [] when no
    predicted code of the run has a confidence."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    any_confidence = False
    for record in answered(records):
        groups.setdefault(tuple(record.get(f) for f in GROUP_KEYS), []).append(record)
        any_confidence = any_confidence or has_code_confidences(record)
    if not any_confidence:
        return []
    return [{**dict(zip(GROUP_KEYS, key, strict=True)), **group_row(rows, targets, seed, resamples)}
            for key, rows in groups.items()]
