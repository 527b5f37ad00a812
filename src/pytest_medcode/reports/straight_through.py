"""The straight-through numbers (results/selective.py) in words, the same in every report: "auto-codes 71.3 %
(68.9–73.5) of cases at ≥ 95 % accuracy, threshold 0.83", the calibration and abstention beside it, and the
one warning line per coder whose confidences were no probability. Documents' (results/document_selective.py)
the same way: "auto-codes 62.0 % (48.0–74.0) of documents at ≥ 95 % precision, threshold 0.92"."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pytest_medcode.reports.text import wrapped
from pytest_medcode.safetext import visible
from pytest_medcode.vocabulary import group_label

__all__ = ["coverage_sentence", "document_coverage_sentence", "document_row_lines", "document_section_lines",
           "document_table_rows", "invalid_confidence_lines", "row_lines", "section_lines"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _share_sentence(entry: dict[str, Any], bar: str, units: str, none: str) -> str:
    """One target's share auto-coded: the share, its interval, the target (``bar``: accuracy or precision) and the
    threshold; ``none`` is what auto-codes nothing."""
    target = f"≥ {100 * entry['target']:g} % {bar}"
    if entry.get("threshold") is None:
        return f"auto-codes {none} at {target} (no confidence threshold reaches it)"
    interval = ""
    if entry.get("low") is not None and entry.get("high") is not None:
        interval = f" ({100 * entry['low']:.1f}–{100 * entry['high']:.1f})"
    return (f"auto-codes {_pct(entry['value'])}{interval} of {units} at {target}, "
            f"threshold {entry['threshold']:.2f}")


def coverage_sentence(entry: dict[str, Any]) -> str:
    """One target's coverage: the share, its interval, the target and the threshold."""
    return _share_sentence(entry, "accuracy", "cases", "nothing")


def row_lines(row: dict[str, Any]) -> list[str]:
    """A group's lines: its coverage at each target, then calibration, area and abstention."""
    label = visible(group_label(row))
    if not row.get("coverage"):
        return [f"{label}: no confidence in the answers (no straight-through numbers)"]
    lines = [f"{label}: {coverage_sentence(entry)}" for entry in row["coverage"].values()]
    extra = [f"ECE {row['ece']:.3f}" if row.get("ece") is not None else "",
             f"AURC {row['aurc']:.3f}" if row.get("aurc") is not None else "",
             f"{row['with_confidence']}/{row['n']} with a confidence" if row["with_confidence"] < row["n"] else ""]
    declined = row.get("abstained") or {}
    if declined.get("value"):
        on_declined, on_answered = row["accuracy_abstained"]["value"], row["accuracy_answered"]["value"]
        extra.append(f"declines {_pct(declined['value'])} (accuracy on declined {_pct(on_declined)}, "
                     f"on answered {_pct(on_answered)})")
    tail = ", ".join(e for e in extra if e)
    return [*lines, f"{' ' * 2}{tail}"] if tail else lines


def section_lines(rows: Sequence[dict[str, Any]], width: int) -> list[str]:
    """The terminal's block: a heading, then each group's lines wrapped to ``width``; [] without rows."""
    if not rows:
        return []
    out = ["", "straight-through coding (cases taken in decreasing confidence):"]
    for row in rows:
        for line in row_lines(row):
            out += wrapped(f"  {line}", width, indent="    ")
    return out


def invalid_confidence_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """One warning line per coder that gave a confidence outside [0, 1] or NaN (its cases: no confidence)."""
    seen: dict[str, list[Any]] = {}
    for record in records:
        if record.get("confidence_invalid") is not None:
            seen.setdefault(str(record.get("model")), []).append(record["confidence_invalid"])
    return [visible(f"warning: {model} gave {len(values)} confidence(s) outside [0, 1] or not a number (first: "
                    f"{values[0]}); those cases are recorded as no confidence") for model, values in seen.items()]


def rows_of(records: Sequence[dict[str, Any]], summary: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """The run's straight-through rows: summary.json's, or computed from the records for a summary written
    before they existed (``medcode report`` on an older run)."""
    if "selective" in summary:
        return list(summary.get("selective") or [])
    from pytest_medcode.results.selective import selective_rows
    from pytest_medcode.vocabulary import group_fields, query_records

    queries = query_records(records)
    return selective_rows(queries, seed=seed, by=group_fields(queries))


TABLE_HEADERS = ("Model / system", "Target accuracy", "Auto-coded (95% CI)", "Threshold", "Accuracy on auto-coded",
                 "ECE", "AURC", "Declined")


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per group and target, for report.md and report.html (the same cells)."""
    out = []
    for row in rows:
        label = visible(group_label(row))
        if not row.get("coverage"):
            declined = _pct((row.get("abstained") or {}).get("value"))
            out.append([label, "-", "no confidence", "-", "-", "-", "-", declined])
            continue
        for entry in row["coverage"].values():
            interval = ("" if entry.get("low") is None else
                        f" ({100 * entry['low']:.1f}–{100 * entry['high']:.1f})")
            out.append([label, f"{100 * entry['target']:g} %", f"{_pct(entry['value'])}{interval}",
                        "-" if entry.get("threshold") is None else f"{entry['threshold']:.3f}",
                        _pct(entry.get("accuracy")), f"{row['ece']:.3f}" if row.get("ece") is not None else "-",
                        f"{row['aurc']:.3f}" if row.get("aurc") is not None else "-",
                        _pct((row.get("abstained") or {}).get("value"))])
    return out


# -- documents: auto-coded when every code they predict clears the threshold ------------------------------------

DOCUMENT_HEADING = "straight-through document coding (auto-coded: every predicted code at or above the threshold):"
DOCUMENT_NOTE = ("A document is auto-coded at a threshold when every code it predicts has a confidence at or above "
                 "it (a code without one, or a declined document, goes to a person); the share auto-coded is the "
                 "largest whose documents' codes are at least the target precise, documents taken in decreasing "
                 "confidence (the lowest of their codes'; ties together), with a seeded bootstrap interval over "
                 "documents. Codes kept: the predicted codes taken one by one in decreasing confidence, the largest "
                 "share at the target precision, and the threshold that keeps them.")
DOCUMENT_TABLE_HEADERS = ("Model / system", "Target precision", "Documents auto-coded (95% CI)", "Threshold",
                          "Precision of their codes", "Codes kept at the target (threshold)",
                          "Codes with a confidence")


def document_coverage_sentence(entry: dict[str, Any]) -> str:
    """One target's share of documents auto-coded: the share, its interval, the target and the threshold."""
    return _share_sentence(entry, "precision", "documents", "no document")


def document_row_lines(row: dict[str, Any]) -> list[str]:
    """A document group's lines: its share auto-coded at each target, then its codes' precision and confidences."""
    label = visible(group_label(row))
    if not row.get("coverage"):
        return [f"{label}: no confidence for its codes (no straight-through numbers)"]
    lines = [f"{label}: {document_coverage_sentence(entry)}" for entry in row["coverage"].values()]
    extra = [f"precision of all {row['predicted_codes']:,} predicted codes {_pct(row.get('precision'))}"]
    if row["with_confidence"] < row["predicted_codes"]:
        extra.append(f"{row['with_confidence']:,}/{row['predicted_codes']:,} with a confidence")
    if row.get("declined"):
        extra.append(f"declines {row['declined']} of {row['n_documents']} documents")
    return [*lines, f"{' ' * 2}{', '.join(extra)}"]


def document_section_lines(rows: Sequence[dict[str, Any]], width: int) -> list[str]:
    """The terminal's block of documents: a heading, then each group's lines wrapped to ``width``; [] without."""
    if not rows:
        return []
    out = ["", *wrapped(DOCUMENT_HEADING, width)]
    for row in rows:
        for line in document_row_lines(row):
            out += wrapped(f"  {line}", width, indent="    ")
    return out


def document_table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per document group and target, for report.md and report.html (the same cells)."""
    out = []
    for row in rows:
        label = visible(group_label(row))
        given = f"{row['with_confidence']:,}/{row['predicted_codes']:,}"
        if not row.get("coverage"):
            out.append([label, "-", "no confidence", "-", "-", "-", given])
            continue
        for key, entry in row["coverage"].items():
            interval = ("" if entry.get("low") is None else
                        f" ({100 * entry['low']:.1f}–{100 * entry['high']:.1f})")
            kept = (row.get("codes") or {}).get(key) or {}
            codes = ("-" if kept.get("threshold") is None else
                     f"{_pct(kept.get('value'))} (≥ {kept['threshold']:.3f})")
            out.append([label, f"{100 * entry['target']:g} %", f"{_pct(entry['value'])}{interval}",
                        "-" if entry.get("threshold") is None else f"{entry['threshold']:.3f}",
                        _pct(entry.get("precision")), codes, given])
    return out
