"""The numbers of a run's document cases, per (model, system): pure functions over document records.

- **micro** precision / recall / F1: true and false positives and negatives of every answered document
  added up, then one ratio (frequent codes weigh more); the 95% interval is a bootstrap over documents
  (:func:`~pytest_medcode.results.stats.bootstrap_ratio`), so a document's codes stay together;
- **macro** precision / recall / F1: the mean of the per-document values (each document weighs the same),
  with a bootstrap interval of the mean;
- exact-set match (Wilson interval), category-level F1 (codes compared at their category in the table),
  invalid-code and fabricated-code rates over all predicted codes, and per-code F1 for the most
  frequent gold codes.

Failed calls are counted apart and left out of every value, as for code queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pytest_medcode.results.stats import Estimate, bootstrap_mean, bootstrap_ratio, wilson
from pytest_medcode.vocabulary import GROUP_KEYS, METRICS, POOLED, answered

__all__ = ["TOP_CODES", "per_code_f1", "pooled", "summarize_documents"]

#: Gold codes shown with their own F1, most frequent first.
TOP_CODES = 10


def _num(value: Any) -> float:
    return float(value or 0)


def _pooled_parts(record: dict[str, Any], metric: str) -> tuple[float, float]:
    """(numerator, denominator) a document adds to a pooled metric."""
    tp, fp, fn = (_num(record.get(k)) for k in ("true_positives", "false_positives", "false_negatives"))
    if metric == "micro_f1":
        return 2 * tp, 2 * tp + fp + fn
    if metric == "micro_precision":
        return tp, tp + fp
    if metric == "micro_recall":
        return tp, tp + fn
    if metric == "invalid_code_rate":
        return _num(record.get("n_invalid")), _num(record.get("n_codes"))
    if metric == "fabricated_code_rate":
        return _num(record.get("n_fabricated")), _num(record.get("n_codes"))
    raise ValueError(f"{metric} is not a pooled document metric")


def pooled(records: Sequence[dict[str, Any]], metric: str, seed: int = 0) -> Estimate:
    """A pooled metric of the answered documents, with its bootstrap interval over documents."""
    if metric in METRICS and METRICS[metric].kind != POOLED:
        raise ValueError(f"{metric} is not pooled")
    parts = [_pooled_parts(r, metric) for r in answered(records)]
    return bootstrap_ratio([n for n, _ in parts], [d for _, d in parts], seed=seed)


def per_code_f1(records: Sequence[dict[str, Any]], limit: int = TOP_CODES) -> list[dict[str, Any]]:
    """Precision, recall and F1 of each of the ``limit`` most frequent gold codes over the answered documents."""
    done = answered(records)
    gold = Counter(c for r in done for c in r.get("gold_codes") or ())
    out = []
    for code, support in sorted(gold.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]:
        tp = sum(1 for r in done if code in (r.get("gold_codes") or ()) and code in (r.get("predicted_codes") or ()))
        predicted = sum(1 for r in done if code in (r.get("predicted_codes") or ()))
        fp, fn = predicted - tp, support - tp
        out.append({
            "code": code, "support": support, "predicted": predicted,
            "precision": tp / predicted if predicted else 0.0, "recall": tp / support,
            "f1": 2 * tp / (2 * tp + fp + fn),
        })
    return out


def _mean(records: Sequence[dict[str, Any]], field: str, seed: int) -> Estimate:
    values = [float(r[field]) for r in records if r.get(field) is not None]
    return bootstrap_mean(values, seed=seed)


def summarize_group(records: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    done = answered(records)
    out: dict[str, Any] = {
        "n_documents": len(records),
        "n_answered": len(done),
        "n_errors": len(records) - len(done),
        "synthetic": bool(records) and all(r.get("synthetic") for r in records),
        "gold_codes": sum(len(r.get("gold_codes") or ()) for r in done),
        "predicted_codes": sum(int(r.get("n_codes") or 0) for r in done),
        "set_match": wilson(sum(1 for r in done if r.get("set_match")), len(done)).to_dict(),
    }
    for metric in ("micro_precision", "micro_recall", "micro_f1", "invalid_code_rate", "fabricated_code_rate"):
        out[metric] = pooled(done, metric, seed).to_dict()
    for field, name in (("precision", "macro_precision"), ("recall", "macro_recall"), ("f1", "macro_f1"),
                        ("category_f1", "category_f1")):
        out[name] = _mean(done, field, seed).to_dict()
    out["per_code"] = per_code_f1(done)
    return out


def summarize_documents(records: Sequence[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """One row per (model, system) of the document records, in the order they first appear."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((str(r["model"]), str(r["system"])), []).append(r)
    return [{**dict(zip(GROUP_KEYS, key, strict=True)), **summarize_group(rows, seed)} for key, rows in groups.items()]
