"""The words every result speaks: metrics, outcomes, the dimensions cases are grouped by, and group labels.

Aggregation, the gate, run comparison, the reports and the terminal all read these from here, so a
metric added (or a dimension a run can vary) is added once and shows up everywhere. Standard library
only: it sits below every other layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BOOTSTRAP_MEAN",
    "CORRECT",
    "COUNT_PERCENT",
    "DECIMAL",
    "DIMENSIONS",
    "DOCUMENT",
    "ERROR",
    "ERROR_MIX",
    "ESTIMATES",
    "GROUP_KEYS",
    "INCORRECT",
    "METRICS",
    "NO_CODE",
    "NUMBER",
    "OUTCOMES",
    "PAIR_EXTRA_KEYS",
    "PAIR_KEYS",
    "PERCENT",
    "POOLED",
    "POOLED_RATIO",
    "RATE",
    "SCORE",
    "SIMILARITY",
    "WILSON",
    "WRONG",
    "Metric",
    "answered",
    "dimension_text",
    "document_records",
    "error_kind",
    "format_p",
    "group_fields",
    "group_label",
    "judged_metrics",
    "metric",
    "model_label",
    "query_records",
    "varied_dimensions",
]

# -- outcomes: what became of one case --------------------------------------------------------------

#: The answer named the reference code / another code / no code at all; or the call failed.
CORRECT, INCORRECT, NO_CODE, ERROR = "correct", "incorrect", "no_code", "error"
OUTCOMES: tuple[str, ...] = (CORRECT, INCORRECT, NO_CODE, ERROR)
#: Outcomes that are a wrong answer (a failed call is not: it is counted apart, never scored).
WRONG: tuple[str, ...] = (INCORRECT, NO_CODE)


def answered(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records whose call returned an answer: every rate's denominator."""
    return [r for r in records if r.get("outcome") != ERROR]


# -- kinds of case: a code query (one description → one code) or a document (a text → a set of codes) ---

#: The ``kind`` a document case's record carries; a code query's record has no ``kind``.
DOCUMENT = "document"


def query_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The code-query records of a run (the study's cases)."""
    return [r for r in records if r.get("kind") != DOCUMENT]


def document_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The document records of a run."""
    return [r for r in records if r.get("kind") == DOCUMENT]


# -- metrics: per-case values the gate can judge and the reports show ------------------------------

# The three kinds of metric: a kind says how a group's value is estimated (``Metric.estimate``) and how two
# runs are compared.

#: A yes/no per case: a share with a Wilson interval; McNemar's test against a baseline.
RATE = "rate"
#: A number per case (the gate's limits take it in [0, 1]): a mean with a bootstrap interval; a paired
#: bootstrap against a baseline.
SCORE = "score"
#: A value of the whole group, pooled over its cases' counts (micro F1: true and false positives of every
#: document added up, not a mean of per-case values); its interval is a bootstrap over cases. Thresholds
#: only: no case-by-case test against a baseline applies.
POOLED = "pooled"

#: How a group's value is estimated, by kind.
WILSON, BOOTSTRAP_MEAN, POOLED_RATIO = "wilson", "bootstrap_mean", "pooled_ratio"
ESTIMATES: dict[str, str] = {RATE: WILSON, SCORE: BOOTSTRAP_MEAN, POOLED: POOLED_RATIO}

#: How a metric's cells are shown in the tables: a percentage, a 3-decimal score, a 1-decimal number, or
#: "n (%)" (the count of the group's ``<name>_n``).
PERCENT, DECIMAL, NUMBER, COUNT_PERCENT = "percent", "score", "number", "count_percent"


@dataclass(frozen=True)
class Metric:
    """One per-case value and how a group of cases is summed up and shown by it.

    A metric added to :data:`METRICS` is summarized per group (``results/aggregate.py``, in the order of
    ``METRICS``), becomes a row of the error-analysis table when it has a ``row`` (``reports/tables.py``,
    which the terminal, report.md and report.html render) and, when ``judged``, takes the gate's limits and
    margins by name (``results/rules.py``).
    """

    name: str
    kind: str  # RATE, SCORE or POOLED: how the group's value is estimated and runs are compared
    title: str = ""  # its row's title in a table (its column's, for METEOR and BERTScore); "": the label
    row: int | None = None  # its place among the error-analysis table's rows, lower first; None: no row
    shown: str = PERCENT  # PERCENT, DECIMAL, NUMBER or COUNT_PERCENT
    lower_is_better: bool = False  # takes fail-over limits; a rise is its worsening
    optional: bool = False  # computed only with the 'metrics' extra (description similarity)
    documents: bool = False  # judged on document cases (a set of codes per document), not on code queries
    judged: bool = True  # the gate takes limits and margins on it (it reads the records' field ``name``)
    value: Callable[[Mapping[str, Any]], Any] | None = None  # a case's value, when not its field ``name``
    sparse: bool = False  # not defined in every system (a level, a tree): no row where it has no value
    systems: tuple[str, ...] = ()  # a row only for these systems; (): every system

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", self.label)

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    @property
    def estimate(self) -> str:
        """How a group's value is estimated: WILSON, BOOTSTRAP_MEAN or POOLED_RATIO."""
        return ESTIMATES[self.kind]

    @property
    def percent(self) -> bool:
        return self.shown in (PERCENT, COUNT_PERCENT)

    def of(self, record: Mapping[str, Any]) -> Any:
        """The metric's value for one case's record (None: not defined for it)."""
        return record.get(self.name) if self.value is None else self.value(record)

    def format(self, value: float | None) -> str:
        """A value as people read it: ``12.3%``, or ``0.912`` for a similarity score; ``-`` for none."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{100 * value:.1f}%" if self.percent else f"{value:.3f}"

    def format_delta(self, delta: float) -> str:
        return f"{100 * delta:+.1f} pp" if self.percent else f"{delta:+.3f}"

    def format_margin(self, margin: float) -> str:
        return f"{100 * margin:.1f} pp" if self.percent else f"{margin:.3f}"

    def margin_text(self, margin: float) -> str:
        """A margin as an option value: ``2pp`` for a rate, ``0.02`` for a score."""
        return f"{round(100 * margin, 6):g}pp" if self.percent else f"{margin:g}"


def _not_exact(record: Mapping[str, Any]) -> bool:
    return not record.get("exact_match")


def _flag(field: str) -> Callable[[Mapping[str, Any]], bool]:
    """A yes/no per answered case from a field that may be None: None counts as no."""
    return lambda record: bool(record.get(field))


#: Every metric, in the order a results row (summary.json's ``results``) lists them. Those with a ``row``
#: are the error-analysis table's rows, in ``row`` order; its sub-rows of matched characters by position
#: follow ``digit_match``. ``code_frequency`` and ``example_echo`` depend on the whole group
#: (results/aggregate.py). The ones that are not ``judged`` are shown, never gated.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("exact_match", RATE, "Exact match, % (95% CI)"),
        Metric("valid", RATE, "Valid code, % (95% CI)", row=20),
        Metric("billable", RATE),
        Metric("fabricated", RATE, "Fabricated code, % (95% CI)", row=30, lower_is_better=True),
        # a code of another bundled release of the system, not of the one scored against (codesystems/releases.py)
        Metric("outdated", RATE, "Outdated code (an earlier release's), % (95% CI)", row=31, lower_is_better=True,
               judged=False, sparse=True),
        Metric("not_yet_valid", RATE, "Not yet valid code (a later release's), % (95% CI)", row=32,
               lower_is_better=True, judged=False, sparse=True),
        Metric("length_match", RATE, "Matched length, % (95% CI)", row=60),
        Metric("codes_per_answer", SCORE, "Codes per answer, mean (95% CI)", row=40, shown=NUMBER, judged=False,
               value=lambda record: record.get("n_codes")),
        Metric("digit_match", SCORE, "Matched digits, % (95% CI)", row=70),
        # hierarchy closeness of CPT and user systems (hierarchy.py)
        Metric("closeness", SCORE, "Hierarchy closeness, mean (95% CI)", row=130, shown=DECIMAL, sparse=True),
        # -- the study's full metric set and ours beyond it, shown but not gated
        Metric("incorrect", RATE, "Incorrect codes, n (% of total)", row=10, shown=COUNT_PERCENT, judged=False,
               value=_not_exact),
        Metric("valid_not_billable", RATE, "Valid but not billable, %", row=80, judged=False),
        Metric("code_frequency", SCORE, "Code frequency, mean (95% CI)", row=50, shown=NUMBER, judged=False),
        Metric("meteor", SCORE, "METEOR", optional=True, shown=DECIMAL),
        Metric("bertscore", SCORE, "BERTScore", optional=True, shown=DECIMAL),
        Metric("same_chapter", RATE, "Same chapter, %", row=90, judged=False, sparse=True),
        Metric("same_block", RATE, "Same block, %", row=100, judged=False, sparse=True),
        Metric("same_category", RATE, "Same 3-character category, %", row=110, judged=False, sparse=True),
        Metric("same_subcategory", RATE, "Same subcategory, %", row=120, judged=False, sparse=True),
        Metric("other_system", RATE, "Code of another system, %", row=140, judged=False, value=_flag("other_system")),
        # the GEMs map ICD-9-CM diagnoses and ICD-10-CM to each other (scoring/crosswalk.py)
        Metric("crosswalk_match", RATE, "  ... that the GEMs map to the reference, %", row=150, judged=False,
               value=_flag("crosswalk_match"), systems=("icd9cm", "icd10cm")),
        Metric("example_echo", RATE, "Example echo, %", judged=False),
        # Document cases: a set of codes per document (dataset/document_cases.py, scoring/code_sets.py).
        Metric("set_match", RATE, documents=True),  # the predicted set is exactly the gold set
        Metric("precision", SCORE, documents=True),  # per document; their mean is macro precision
        Metric("recall", SCORE, documents=True),
        Metric("f1", SCORE, documents=True),  # per-document F1; the mean is macro F1
        Metric("category_f1", SCORE, documents=True),  # F1 with codes cut to their 3-character category
        Metric("micro_precision", POOLED, documents=True),
        Metric("micro_recall", POOLED, documents=True),
        Metric("micro_f1", POOLED, documents=True),  # over the codes of all documents together
        Metric("invalid_code_rate", POOLED, lower_is_better=True, documents=True),  # of all predicted codes
        Metric("fabricated_code_rate", POOLED, lower_is_better=True, documents=True),  # not in the table
    )
}
#: Description-similarity metrics, scored once at the end of a session (the ``metrics`` extra).
SIMILARITY: tuple[str, ...] = tuple(name for name, m in METRICS.items() if m.optional)


def judged_metrics() -> tuple[str, ...]:
    """The names the gate takes limits and margins on, in the order of :data:`METRICS`."""
    return tuple(name for name, m in METRICS.items() if m.judged)


def format_p(p: float) -> str:
    """A p-value: three decimals, or two significant digits below 0.001."""
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def metric(name: str) -> Metric:
    """The metric called ``name``; an unknown name is shown as a rate (a column a newer run added)."""
    return METRICS.get(name) or Metric(name, RATE)


# -- dimensions: how cases are grouped, paired and labelled ---------------------------------------

#: Every results row is one (model, system) group at least.
GROUP_KEYS: tuple[str, ...] = ("model", "system")
#: What else a run may vary, with the value that means "not varied"; a run that varies one is grouped,
#: judged and labelled per value of it.
DIMENSIONS: dict[str, Any] = {"variant": "exact", "temperature": None}
#: A case of one run is the same question as a case of another when these agree...
PAIR_KEYS: tuple[str, ...] = ("model", "system", "code")
#: ...and these too, when both runs carry them.
PAIR_EXTRA_KEYS: tuple[str, ...] = (*DIMENSIONS, "repeat", "document")


def varied_dimensions(records: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The dimensions some record carries a non-default value of."""
    records = list(records)
    return tuple(d for d, default in DIMENSIONS.items() if any(r.get(d, default) != default for r in records))


def group_fields(records: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """How to group a run's records: ``("model", "system")`` plus each dimension the run varies."""
    return (*GROUP_KEYS, *varied_dimensions(records))


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def dimension_text(row: Mapping[str, Any]) -> str:
    """`` [typo] T=0.6`` for a row of a run that varies them, else empty."""
    text = ""
    if row.get("variant") is not None:
        text += f" [{row['variant']}]"
    if row.get("temperature") is not None:
        text += f" T={_value(row['temperature'])}"
    return text


def model_label(row: Mapping[str, Any]) -> str:
    """A row's model with the run's other dimensions, for tables whose columns are the systems:
    ``gpt-4 [typo] T=0.6``."""
    return f"{row.get('model')}{dimension_text(row)}"


def group_label(row: Mapping[str, Any]) -> str:
    """A results group, the same in the gate's checks, the reports and the terminal:
    ``gpt-4 / icd10cm``, ``gpt-4 / icd10cm [typo] T=0.6``."""
    return f"{row.get('model')} / {row.get('system')}{dimension_text(row)}"


# -- the error mix: what kind of answer a case got, finer than its outcome -------------------------

#: Correct, another real code, a real code that cannot be billed, a code that does not exist, no code at
#: all, or a failed call (counted apart). The reports' stacked bars and case filters use these words.
MIX_CORRECT, MIX_WRONG_VALID, MIX_NOT_BILLABLE = "correct", "wrong but valid", "valid, not billable"
MIX_FABRICATED, MIX_NO_CODE, MIX_FAILED = "fabricated", "no code", "call failed"
MIX_OUTDATED, MIX_NOT_YET_VALID = "outdated", "not yet valid"
ERROR_MIX: tuple[str, ...] = (MIX_CORRECT, MIX_WRONG_VALID, MIX_NOT_BILLABLE, MIX_OUTDATED, MIX_NOT_YET_VALID,
                              MIX_FABRICATED, MIX_NO_CODE, MIX_FAILED)


def error_kind(record: Mapping[str, Any]) -> str:
    """Which part of the error mix a case is in (one of :data:`ERROR_MIX`)."""
    outcome = record.get("outcome")
    if outcome == CORRECT:
        return MIX_CORRECT
    if outcome == ERROR:
        return MIX_FAILED
    if outcome == NO_CODE:
        return MIX_NO_CODE
    if record.get("fabricated"):
        return MIX_FABRICATED
    if record.get("outdated"):
        return MIX_OUTDATED
    if record.get("not_yet_valid"):
        return MIX_NOT_YET_VALID
    if record.get("valid_not_billable"):
        return MIX_NOT_BILLABLE
    return MIX_WRONG_VALID
