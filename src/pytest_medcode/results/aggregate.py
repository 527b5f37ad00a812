"""Per-case records → per (model, system) results with confidence intervals.

Failed calls (outcome ``error``) are counted apart and left out of every rate's denominator: an
outage is not a wrong code. A per-case value that is None for an answered case (``valid`` of a CPT
answer under the paper profile, ``same_block`` in ICD-9-CM) is left out of that metric's denominator;
a metric with no values at all has a None estimate.

Proportions carry 95 % Wilson intervals, means a seeded percentile bootstrap (2,000 resamples): see
:mod:`pytest_medcode.results.stats`. Every estimate is a dict ``{value, low, high, n}``. A row holds one
estimate per code-query metric of :data:`~pytest_medcode.vocabulary.METRICS`, made as the metric's kind says,
and the few values of :data:`_DERIVED` (counts, positions, top codes) that are no metric's estimate.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pytest_medcode.codesystems import axes_of, example_of
from pytest_medcode.results.stats import bootstrap_mean, wilson
from pytest_medcode.scoring.hierarchy import LEVELS
from pytest_medcode.vocabulary import CORRECT, GROUP_KEYS, METRICS, NO_CODE, RATE, SCORE, SIMILARITY, Metric
from pytest_medcode.vocabulary import answered as answered_records

__all__ = ["TOP_CODES", "axis_names", "axis_rates", "digit_position_rates", "example_echo", "group_records",
           "most_missed_axis", "section_axis_rates", "summarize", "summarize_group", "top_codes"]

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


def axis_names(system: str, references: Sequence[str]) -> tuple[str, ...]:
    """Each character's axis for a group's reference codes: a PCS section's own names (``duration`` for
    section 5's fifth); where the sections asked name a position differently, their names joined by `` / ``,
    the most asked section's first."""
    by_section = Counter(code[:1] for code in references if code)
    names = [axes_of(system, section) for section, _ in by_section.most_common()] or [axes_of(system)]
    width = max(len(n) for n in names)
    return tuple(" / ".join(dict.fromkeys(n[k] for n in names if k < len(n))) for k in range(width))


def section_axis_rates(answered: Sequence[dict[str, Any]], system: str) -> dict[str, list[dict[str, Any]]]:
    """:func:`axis_rates` per section of the reference code, each named by its section's own axes (empty when
    every reference is in one section: ``axes`` says it all then)."""
    by_section: dict[str, list[dict[str, Any]]] = {}
    for record in answered:
        by_section.setdefault(str(record.get("code") or "")[:1], []).append(record)
    if len(by_section) < 2:
        return {}
    return {section: axis_rates(records, axes_of(system, section)) for section, records in sorted(by_section.items())}


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


class _Group:
    """One group's cases, and what several of its values are computed from."""

    def __init__(self, records: list[dict[str, Any]], seed: int, similarity: Mapping[str, bool] | None) -> None:
        self.records, self.seed, self.similarity = records, seed, similarity
        self.answered = answered_records(records)
        systems = {r.get("system") for r in records}
        self.system = next(iter(systems)) if len(systems) == 1 else None
        self.scorable = [r for r in self.answered if r.get("predicted_description")]

    @functools.cached_property
    def axes(self) -> list[dict[str, Any]]:
        if self.system is None or not axes_of(self.system):
            return []
        return axis_rates(self.answered, axis_names(self.system, [str(r.get("code") or "") for r in self.answered]))

    @functools.cached_property
    def section_axes(self) -> dict[str, list[dict[str, Any]]]:
        return section_axis_rates(self.answered, self.system) if self.system and axes_of(self.system) else {}

    def count(self, test: Callable[[dict[str, Any]], Any]) -> int:
        return sum(1 for r in self.answered if test(r))

    def computed(self, name: str) -> bool:
        """Whether a similarity metric was computed in the run (None: inferred, a metric with any value was)."""
        if self.similarity is not None:
            return self.similarity.get(name, False)
        return any(_is_number(r.get(name)) for r in self.records)


def _profile(group: _Group) -> str | None:
    profiles = sorted({str(r.get("profile") or "default") for r in group.answered})
    return profiles[0] if len(profiles) == 1 else ",".join(profiles) or None


def _hierarchy_levels(group: _Group) -> dict[str, int]:
    levels = Counter(r.get("hierarchy_level") for r in group.answered if r.get("hierarchy_level") is not None)
    return {lv: levels[lv] for lv in (*LEVELS, "none") if lv in levels}


#: The values of a results row that are no metric's estimate, each written just before the metric named
#: first (so a row's keys keep their order; one whose metric is gone is written last).
_DERIVED: tuple[tuple[str, str, Callable[[_Group], Any]], ...] = (
    ("exact_match", "n", lambda g: len(g.records)),
    ("exact_match", "answered", lambda g: len(g.answered)),
    ("exact_match", "errors", lambda g: len(g.records) - len(g.answered)),
    ("exact_match", "correct", lambda g: g.count(lambda r: r["outcome"] == CORRECT)),
    ("exact_match", "no_code", lambda g: g.count(lambda r: r["outcome"] == NO_CODE)),
    ("incorrect", "profile", _profile),
    ("incorrect", "incorrect_n", lambda g: g.count(lambda r: not r.get("exact_match"))),
    ("code_frequency", "digit_positions", lambda g: digit_position_rates(g.answered)),
    ("code_frequency", "axes", lambda g: g.axes),
    ("code_frequency", "section_axes", lambda g: g.section_axes),
    ("meteor", "scorable", lambda g: len(g.scorable)),
    ("other_system", "hierarchy_levels", _hierarchy_levels),
    ("crosswalk_match", "other_systems",
     lambda g: dict(Counter(r["other_system"] for r in g.answered if r.get("other_system")))),
    ("example_echo", "top_codes", lambda g: top_codes(g.answered, g.system) if g.system is not None else []),
    ("example_echo", "most_missed_axis", lambda g: most_missed_axis(g.axes)),
)


def _example_matches(answered: Sequence[dict[str, Any]], system: str | None) -> list[bool]:
    """Per answered case: is its code the prompt's own example (none for a system without one, or a group of
    several systems)?"""
    example = example_of(system) if system is not None else None
    return [r.get("predicted_code") == example for r in answered] if example else []


#: Metrics whose per-case values depend on the rest of the group.
_GROUP_VALUES: dict[str, Callable[[_Group], list[Any]]] = {
    "code_frequency": lambda g: _code_frequency(g.answered),
    "example_echo": lambda g: _example_matches(g.answered, g.system),
}


def _estimate(m: Metric, values: Iterable[Any], seed: int) -> dict[str, Any]:
    """A group's value of ``m`` from its cases' values (None: not defined for the case), as ``m.kind`` says."""
    if m.kind == RATE:
        defined = [v for v in values if v is not None]
        return wilson(sum(1 for v in defined if v), len(defined)).to_dict()
    if m.kind == SCORE:
        return bootstrap_mean([float(v) for v in values if _is_number(v)], seed=seed).to_dict()
    raise ValueError(f"{m.name}: a {m.kind} metric is summarized over documents (results/document_summary.py)")


def _metric_values(m: Metric, group: _Group) -> dict[str, Any]:
    """The keys ``m`` adds to a results row: its estimate; for a similarity metric also ``<name>_all``."""
    if m.name in _GROUP_VALUES:
        return {m.name: _estimate(m, _GROUP_VALUES[m.name](group), group.seed)}
    if not m.optional:
        return {m.name: _estimate(m, map(m.of, group.answered), group.seed)}
    if not group.computed(m.name):
        none = {"value": None, "low": None, "high": None, "n": 0}
        return {m.name: none, f"{m.name}_all": none}
    # Over the cases whose code has a description, and over every answered case: a prediction without a
    # description (no code, fabricated) counts 0.
    return {m.name: _estimate(m, map(m.of, group.scorable), group.seed),
            f"{m.name}_all": _estimate(m, ((v if _is_number(v) else 0.0) for v in map(m.of, group.answered)),
                                       group.seed)}


def summarize_group(
    records: list[dict[str, Any]], seed: int = 0, similarity: Mapping[str, bool] | None = None
) -> dict[str, Any]:
    """One group's results: every code-query metric of :data:`METRICS` in its order, the values of
    :data:`_DERIVED` before the metrics they go with. ``similarity`` says which similarity metrics were
    computed in the run (None: inferred from the records - a metric with any value was)."""
    group = _Group(records, seed, similarity)
    row: dict[str, Any] = {}
    for m in METRICS.values():
        if m.documents:
            continue
        row.update((key, value(group)) for before, key, value in _DERIVED if before == m.name)
        row.update(_metric_values(m, group))
    row.update((key, value(group)) for before, key, value in _DERIVED if key not in row)
    return row


def example_echo(answered: Sequence[dict[str, Any]], system: str | None) -> dict[str, Any]:
    """Share of answered prompts whose code is the prompt's own example (M24.131, 045.10, 84120): the
    study's sign of a model copying the prompt instead of coding. None for a group of several systems."""
    matches = _example_matches(answered, system)
    return wilson(sum(matches), len(matches)).to_dict()


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
