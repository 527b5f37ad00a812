"""The per-case record: one plain, JSON-able dict per case, the unit every report is built from.

Records travel from xdist workers to the controller on ``report.user_properties`` and become the
rows of ``cases.parquet``.
"""

from __future__ import annotations

from typing import Any

from pytest_medcode.asking.coders.router import DEPLOYMENT
from pytest_medcode.asking.engine import ABSTAINED, CODE_CONFIDENCES, CONFIDENCE, CONFIDENCE_INVALID, Outcome
from pytest_medcode.codesystems import CodeSystem
from pytest_medcode.dataset.cases import Case
from pytest_medcode.dataset.document_cases import DocumentCase
from pytest_medcode.safetext import visible
from pytest_medcode.scoring.code_sets import score_document, unscored_document_fields
from pytest_medcode.scoring.codes import score_answer, unscored_fields
from pytest_medcode.vocabulary import CORRECT, DOCUMENT, ERROR, INCORRECT, NO_CODE

PROPERTY = "medcode_record"
RAW_ANSWER_LIMIT = 20_000  # characters kept of a runaway answer; the length is recorded too


def call_fields(outcome: Outcome) -> dict[str, Any]:
    """What the call cost and how it went, the same columns for every kind of case: a document asked through a
    batch is priced at the batch discount as a code query is."""
    return {
        "latency_s": round(outcome.latency_s, 6),
        "attempts": outcome.attempts,
        "cache_hit": outcome.cached,
        "error": outcome.error,
        "prompt_tokens": outcome.usage.get("prompt_tokens"),
        "completion_tokens": outcome.usage.get("completion_tokens"),
        "cost_usd": outcome.usage.get("cost_usd"),
        "deployment": outcome.usage.get(DEPLOYMENT),  # --medcode-router: which endpoint answered; else None
        "batch": outcome.usage.get("batch"),  # asked through a provider's batch API: priced at its discount
        "verify_rounds": outcome.usage.get("verify_rounds"),  # verify:MODEL follow-ups used; else None
        # The coder's confidence (0-1) and abstention; None is "no confidence", never 1.0 (api.Reply).
        "confidence": outcome.usage.get(CONFIDENCE),
        "confidence_source": "coder" if outcome.usage.get(CONFIDENCE) is not None else None,
        "abstained": bool(outcome.usage.get(ABSTAINED)) if outcome.text is not None else None,
        "confidence_invalid": outcome.usage.get(CONFIDENCE_INVALID),  # what it gave instead (for the warning)
    }


def build_record(case: Case, system: CodeSystem, outcome: Outcome, profile: str = "default") -> dict[str, Any]:
    record: dict[str, Any] = {
        **case.to_dict(),
        "case_id": case.id,
        "release": system.release or None,  # the table's release the case was drawn from and scored against
        "raw_answer": None,
        "answer_chars": None,
        "codes": [],
        "predicted_code": None,
        "n_codes": 0,
        **call_fields(outcome),
        # Filled at session end (scoring/session_metrics.py); present from the start, so a record's dict is
        # sized once (adding keys to 75k dicts later resizes each of them, ~80 MB).
        "meteor": None,
        "bertscore": None,
        "code_frequency": None,
    }
    if outcome.text is None:
        record.update(outcome=ERROR, **unscored_fields(profile))
        return record
    record.update(raw_answer=outcome.text[:RAW_ANSWER_LIMIT], answer_chars=outcome.chars or len(outcome.text))
    return score_record(record, system, outcome.text, profile)


def score_record(record: dict[str, Any], system: CodeSystem, text: str, profile: str = "default") -> dict[str, Any]:
    """Fill the answer-derived fields and the outcome of an answered case (also used by ``medcode rescore``)."""
    record.update(score_answer(system, record["code"], text, profile))
    if record["predicted_code"] is None:
        record["outcome"] = NO_CODE
    else:
        record["outcome"] = CORRECT if record["exact_match"] else INCORRECT
    return record


def explain(record: dict[str, Any], limit: int = 200) -> str:
    """The failure message a person reads in the test report (control characters shown as ``\\xNN``)."""
    return visible(_explain(record, limit))


def _explain(record: dict[str, Any], limit: int) -> str:
    raw = record.get("raw_answer") or ""
    if len(raw) > limit:  # the note counts the whole answer, not the excerpt the record keeps
        total = max(record.get("answer_chars") or 0, len(raw))
        raw = raw[:limit] + f"... [{total - limit} more characters]"
    if record["outcome"] == ERROR:
        failed = (f"model call failed after {record['attempts']} attempt(s): {record['error']}"
                  if record["attempts"] else record["error"])  # never asked: the reason says why
        return (
            f"{failed}\n"
            f"  description: {record['description']}{_asked(record)}\n  expected:    {record['code']}"
        )
    verdict = "fabricated (not in the code system)" if record.get("fabricated") else (
        record["release_note"] if record.get("release_note") else
        "exists but is not billable" if record.get("valid") and not record.get("billable") else "a real code")
    predicted = record.get("predicted_code") or "(no code found in the answer)"
    return (
        f"{record['model']} gave {predicted} for {record['system']} {record['code']}"
        + (f" — {verdict}" if record.get("predicted_code") else "")
        + f"\n  description: {record['description']}{_asked(record)}\n  expected:    {record['code']}\n"
        f"  predicted:   {predicted}\n  raw answer:  {raw!r}"
    )


def _asked(record: dict[str, Any]) -> str:
    """The wording a robustness variant asked with, under the official description."""
    if record.get("perturbed") is None:
        return ""
    return f"\n  asked ({record.get('variant')}): {record['perturbed']}"


class RecordRows:
    """Records as they arrive, each kept as a row of values over one shared list of keys.

    The reporting process holds every record of the run until the session ends; as dicts that is ~2 KB a
    case (0.2 GB at 75k cases, while the xdist workers are still alive beside it). Rows cost the values
    and one pointer per key. They are turned back into dicts, in collection order, once the tests are done.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        self._rows: list[tuple[Any, ...]] = []
        self._nodeids: list[str] = []  # where each row came from, to put them in collection order
        self._taken: list[dict[str, Any]] | None = None  # after take(): the records, in arrival order

    def __len__(self) -> int:
        return len(self._taken) if self._taken is not None else len(self._rows)

    def append(self, record: dict[str, Any], nodeid: str) -> int:
        """Keep ``record``; its position, which :meth:`record` takes back."""
        if not record.keys() <= self._index.keys():  # a key not seen before (the first record, a new column)
            for key in record:
                if key not in self._index:
                    self._index[key] = len(self.keys)
                    self.keys.append(key)
        self._rows.append(tuple(map(record.get, self.keys)))
        self._nodeids.append(nodeid)
        return len(self._rows) - 1

    def record(self, position: int) -> dict[str, Any]:
        if self._taken is not None:
            return self._taken[position]
        row = self._rows[position]
        return dict(zip(self.keys, row + (None,) * (len(self.keys) - len(row))))

    def take(self, order: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """Every record as a dict, in ``order`` (nodeid → position; arrival order without one). The rows are
        let go: after this the records are the caller's."""
        arrived = [self.record(i) for i in range(len(self._rows))]
        self._rows.clear()
        self._taken = arrived
        if not order:
            return list(arrived)
        last = len(order)
        rank = [order.get(nodeid, last) for nodeid in self._nodeids]
        return [arrived[i] for i in sorted(range(len(arrived)), key=rank.__getitem__)]


def build_document_record(case: DocumentCase, system: CodeSystem, outcome: Outcome) -> dict[str, Any]:
    """The record of a document case: the case, the call, and the set scored against the gold set
    (scoring/code_sets.py). ``kind`` tells it from a code query's record in every report."""
    record: dict[str, Any] = {
        **case.to_dict(),
        "kind": DOCUMENT,
        "case_id": case.id,
        "release": system.release or None,  # the table's release the case was drawn from and scored against
        "code": None,
        "raw_answer": None,
        "answer_chars": None,
        "codes": [],
        "n_codes": 0,
        **call_fields(outcome),
    }
    if outcome.text is None:
        record.update(outcome=ERROR, **unscored_document_fields())
        return record
    record.update(raw_answer=outcome.text[:RAW_ANSWER_LIMIT], answer_chars=outcome.chars or len(outcome.text))
    # The coder's confidence in each code it named (api.Reply.code_confidences), read onto the predicted codes
    # (``code_confidences``, one per predicted code); a coder that gave none adds no field at all.
    record.update(score_document(system, case.gold_codes, outcome.text, outcome.usage.get(CODE_CONFIDENCES)))
    if record["set_match"]:
        record["outcome"] = CORRECT
    else:
        record["outcome"] = NO_CODE if not record["predicted_codes"] else INCORRECT
    return record


def explain_document(record: dict[str, Any], limit: int = 200) -> str:
    """The failure message of a document case: what was missed, what was added, the raw answer."""
    raw = record.get("raw_answer") or ""
    if len(raw) > limit:
        raw = raw[:limit] + f"... [{max(record.get('answer_chars') or 0, len(raw)) - limit} more characters]"
    gold = list(record.get("gold_codes") or ())
    if record["outcome"] == ERROR:
        text = (f"model call failed after {record['attempts']} attempt(s): {record['error']}\n"
                f"  document:  {record['document']}\n  expected:  {', '.join(gold) or '(no codes)'}")
        return visible(text)
    predicted = list(record.get("predicted_codes") or ())
    missed = [c for c in gold if c not in predicted]
    added = [c for c in predicted if c not in gold]
    fabricated = set(record.get("fabricated_codes") or ())
    text = (
        f"{record['model']} coded document {record['document']} as {{{', '.join(predicted)}}}, "
        f"expected {{{', '.join(gold)}}} (F1 {record.get('f1') or 0:.2f})\n"
        f"  missed:     {', '.join(missed) or '-'}\n"
        f"  added:      {', '.join(c + (' (fabricated)' if c in fabricated else '') for c in added) or '-'}\n"
        f"  raw answer: {raw!r}"
    )
    return visible(text)
