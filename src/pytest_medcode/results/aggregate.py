"""Per-case records → per (model, system) results with confidence intervals.

Failed calls (outcome ``error``) are counted apart and left out of every rate's denominator: an
outage is not a wrong code. A per-case value that is None for an answered case (``valid`` of a CPT
answer under the paper profile, ``same_block`` in ICD-9-CM) is left out of that metric's denominator;
a metric with no values at all has a None estimate.

Proportions carry 95 % Wilson intervals, means a seeded percentile bootstrap (2,000 resamples): see
:mod:`pytest_medcode.results.stats`. Every estimate is a dict ``{value, low, high, n}``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_medcode.codesystems import axes_of, example_of
from pytest_medcode.results.stats import bootstrap_mean, wilson
from pytest_medcode.scoring.hierarchy import FLAG_LEVELS, LEVELS
from pytest_medcode.vocabulary import CORRECT, GROUP_KEYS, NO_CODE, SIMILARITY
from pytest_medcode.vocabulary import answered as answered_records

__all__ = ["TOP_CODES", "axis_rates", "digit_position_rates", "example_echo", "group_records", "most_missed_axis",
           "summarize", "summarize_group", "top_codes"]

TOP_CODES = 10


def group_records(
    records: Iterable[dict[str, Any]], by: Sequence[str] = GROUP_KEYS
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Records by ``by`` (default model and system), groups in order of first appearance."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(tuple(record.get(k) for k in by), []).append(record)
    return groups


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # NaN is not a number here


def digit_position_rates(answered: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Matched digits by position k (1-based, the reference's non-dot characters), as the study tabulates
    them: answers matching at k / references with at least k characters, with a Wilson interval."""
    hits: Counter[int] = Counter()
    totals: Counter[int] = Counter()
    for r in answered:
        for k, ok in enumerate(r.get("digit_positions") or [], start=1):
            totals[k] += 1
            hits[k] += bool(ok)
    return [{"position": k, **wilson(hits[k], totals[k]).to_dict()} for k in sorted(totals)]


def axis_rates(answered: Sequence[dict[str, Any]], axes: Sequence[str]) -> list[dict[str, Any]]:
    """For a system whose characters are axes (ICD-10-PCS): the share of answers matching the reference at
    each axis, named. A PCS axis is one character, so this is :func:`digit_position_rates` with names."""
    return [{**rate, "axis": axes[rate["position"] - 1]}
            for rate in digit_position_rates(answered) if rate["position"] <= len(axes)]


def most_missed_axis(axes: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The axis the answers match least often (the first of a tie), or None when every answer matched all."""
    scored = [a for a in axes if a.get("value") is not None]
    worst = min(scored, key=lambda a: a["value"], default=None)
    return None if worst is None or worst["value"] >= 1.0 else {"axis": worst["axis"], "value": worst["value"]}


def top_codes(answered: Sequence[dict[str, Any]], system: str, limit: int = TOP_CODES) -> list[dict[str, Any]]:
    """The most returned codes, per 1,000 answered prompts; ``is_example`` flags the prompt's own example code
    (the study found models echo it: M24.131 came back 540-1,070 times in 15,950 ICD-10-CM prompts)."""
    if not answered:
        return []
    counts = Counter(r["predicted_code"] for r in answered if r.get("predicted_code") is not None)
    first: dict[str, dict[str, Any]] = {}
    for r in answered:
        if r.get("predicted_code") is not None:
            first.setdefault(r["predicted_code"], r)
    example = example_of(system)
    out = []
    for code, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]:
        r = first[code]
        out.append({
            "code": code,
            "count": count,
            "per_1000": 1000.0 * count / len(answered),
            "is_example": code == example,
            "valid": r.get("valid"),
            "description": r.get("predicted_description"),
        })
    return out


def summarize_group(
    records: list[dict[str, Any]], seed: int = 0, similarity: Mapping[str, bool] | None = None
) -> dict[str, Any]:
    """One group's results. ``similarity`` says which similarity metrics were computed in the run (None:
    inferred from the records - a metric with any value was)."""
    answered = answered_records(records)
    n = len(answered)

    def proportion(field: str) -> dict[str, Any]:
        values = [r.get(field) for r in answered]
        values = [v for v in values if v is not None]
        return wilson(sum(1 for v in values if v), len(values)).to_dict()

    def mean(values: Iterable[Any]) -> dict[str, Any]:
        return bootstrap_mean([float(v) for v in values if _is_number(v)], seed=seed).to_dict()

    incorrect = sum(1 for r in answered if not r.get("exact_match"))
    systems = {r.get("system") for r in records}
    system = next(iter(systems)) if len(systems) == 1 else None
    profiles = sorted({str(r.get("profile") or "default") for r in answered})
    row: dict[str, Any] = {
        "n": len(records),
        "answered": n,
        "errors": len(records) - n,
        "correct": sum(1 for r in answered if r["outcome"] == CORRECT),
        "no_code": sum(1 for r in answered if r["outcome"] == NO_CODE),
        "exact_match": proportion("exact_match"),
        "valid": proportion("valid"),
        "billable": proportion("billable"),
        "fabricated": proportion("fabricated"),
        "length_match": proportion("length_match"),
        "codes_per_answer": mean(r.get("n_codes") for r in answered),
        "digit_match": mean(r.get("digit_match") for r in answered),
        "closeness": mean(r.get("closeness") for r in answered),
        # -- the study's full metric set and ours beyond it; the keys above keep their meaning for older readers
        "profile": profiles[0] if len(profiles) == 1 else ",".join(profiles) or None,
        "incorrect_n": incorrect,
        "incorrect": wilson(incorrect, n).to_dict(),
        "valid_not_billable": proportion("valid_not_billable"),
        "digit_positions": digit_position_rates(answered),
        "axes": axis_rates(answered, axes_of(system)) if system is not None else [],
        "code_frequency": mean(_code_frequency(answered)),
    }
    scorable = [r for r in answered if r.get("predicted_description")]
    row["scorable"] = len(scorable)
    for m in SIMILARITY:
        available = similarity.get(m, False) if similarity is not None else any(
            _is_number(r.get(m)) for r in records)
        if not available:
            row[m] = row[f"{m}_all"] = {"value": None, "low": None, "high": None, "n": 0}
            continue
        row[m] = mean(r.get(m) for r in scorable)
        # Over every answered case: a prediction without a description (no code, fabricated) counts 0.
        row[f"{m}_all"] = mean((r.get(m) if _is_number(r.get(m)) else 0.0) for r in answered)
    for lv in FLAG_LEVELS:
        row[f"same_{lv}"] = proportion(f"same_{lv}")
    levels = Counter(r.get("hierarchy_level") for r in answered if r.get("hierarchy_level") is not None)
    row["hierarchy_levels"] = {lv: levels[lv] for lv in (*LEVELS, "none") if lv in levels}
    row["other_system"] = wilson(sum(1 for r in answered if r.get("other_system")), n).to_dict()
    row["other_systems"] = dict(Counter(r["other_system"] for r in answered if r.get("other_system")))
    row["crosswalk_match"] = wilson(sum(1 for r in answered if r.get("crosswalk_match")), n).to_dict()
    row["top_codes"] = top_codes(answered, system) if system is not None else []
    row["most_missed_axis"] = most_missed_axis(row["axes"])
    row["example_echo"] = example_echo(answered, system)
    return row


def example_echo(answered: Sequence[dict[str, Any]], system: str | None) -> dict[str, Any]:
    """Share of answered prompts whose code is the prompt's own example (M24.131, 045.10, 84120): the
    study's sign of a model copying the prompt instead of coding. None for a group of several systems."""
    example = example_of(system) if system is not None else None
    if not example:
        return {"value": None, "low": None, "high": None, "n": 0}
    return wilson(sum(1 for r in answered if r.get("predicted_code") == example), len(answered)).to_dict()


def _code_frequency(answered: Sequence[dict[str, Any]]) -> list[int]:
    """Per answered case with a code: how many answered cases of the group returned the same code."""
    counts = Counter(r["predicted_code"] for r in answered if r.get("predicted_code") is not None)
    return [counts[r["predicted_code"]] for r in answered if r.get("predicted_code") is not None]


def summarize(
    records: Iterable[dict[str, Any]],
    seed: int = 0,
    *,
    by: Sequence[str] = GROUP_KEYS,
    similarity: Mapping[str, bool] | None = None,
) -> list[dict[str, Any]]:
    """One row per group (default: model × system), in the order the cases were run; each row carries its
    group keys (``model``, ``system``, ...) then the results of :func:`summarize_group`."""
    records = list(records)
    if similarity is None:
        similarity = {m: any(_is_number(r.get(m)) for r in records) for m in SIMILARITY}
    return [
        {**dict(zip(by, key)), **summarize_group(rows, seed, similarity)}
        for key, rows in group_records(records, by).items()
    ]
