"""The end-of-session pass over all records, on the process that reports (the xdist controller).

Description similarity is scored here, once, not per test: every distinct (reference description,
predicted code's description) pair across models and systems is scored once and in batches (the scorers
dedupe and short-cut identical descriptions to 1.0). Per record this writes:

- ``meteor``, ``bertscore``: the score where the predicted code resolves to a description (the study's
  policy), None where it does not, where similarity is off, or where the metric is unavailable;
- ``code_frequency``: how many answered prompts of the same model and system returned this case's
  predicted code (our reading of the study's "code frequency"; None for answers without a code).

A metric that cannot run (bert-score or torch not installed, a model that does not load, no nltk) is
reported as unavailable with a one-line reason; the run never fails for it.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pytest_medcode.codesystems import CodeSystem
from pytest_medcode.scoring.bertscore import neighbourhood_order
from pytest_medcode.scoring.score_store import ScoreStore
from pytest_medcode.vocabulary import ERROR, GROUP_KEYS

__all__ = [
    "SimilarityReport",
    "add_code_frequency",
    "bert_scorer",
    "meteor_scorer",
    "reference_description",
    "score_similarity",
]



class Scorer(Protocol):
    label: str
    identity: str  # everything that changes a score: the score store's key

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...


@dataclass
class MetricStatus:
    """What one similarity metric did in this run, for the report."""

    available: bool
    label: str
    reason: str | None = None  # why unavailable, one line
    model: str | None = None  # BERTScore: the model used
    synonyms: bool | None = None  # METEOR: WordNet synonym matching on


@dataclass
class SimilarityReport:
    enabled: bool
    meteor: MetricStatus | None = None
    bertscore: MetricStatus | None = None
    scorable: int = 0  # answered cases whose predicted code has a description
    pairs: int = 0  # distinct (reference, candidate) pairs
    seconds: float = 0.0
    scored: dict[str, int] = field(default_factory=dict)  # metric → distinct pairs computed in this run
    stored: dict[str, int] = field(default_factory=dict)  # metric → distinct pairs read from the score store
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def available(self) -> dict[str, bool]:
        """Metric name → whether its per-case values were computed."""
        return {
            "meteor": bool(self.enabled and self.meteor and self.meteor.available),
            "bertscore": bool(self.enabled and self.bertscore and self.bertscore.available),
        }

    def lines(self) -> list[str]:
        """One line per metric: what was computed (or why not)."""
        return describe(self.to_dict())


def describe(info: dict[str, Any] | None) -> list[str]:
    """The similarity lines of a report, from ``SimilarityReport.to_dict()`` (as kept in summary.json)."""
    if not info:
        return []
    if not info.get("enabled"):
        return ["description similarity: off (--medcode-no-similarity)"]
    out = []
    for name, title in (("meteor", "METEOR"), ("bertscore", "BERTScore")):
        status = info.get(name) or {}
        if status.get("available"):
            out.append(f"{title}: {status.get('label')}")
        else:
            out.append(f"{title} unavailable: {status.get('reason') or 'not computed'}")
    return out


# -- scorers, one per process and configuration (loading BERTScore's model costs seconds) ---------------

_SCORERS: dict[tuple[Any, ...], Any] = {}
_SCORERS_LOCK = threading.Lock()


def meteor_scorer() -> Any:
    """The process's METEOR scorer: WordNet synonyms when a WordNet copy can be prepared (prepare_wordnet)."""
    from pytest_medcode.scoring.similarity import MeteorScorer

    with _SCORERS_LOCK:
        key = ("meteor",)
        if key not in _SCORERS:
            _SCORERS[key] = MeteorScorer(use_wordnet=True)
        return _SCORERS[key]


def bert_scorer(model: str | None = None, device: str | None = None) -> Any:
    """The process's BERTScore scorer for ``model``/``device`` (default: the bundled all-MiniLM-L6-v2)."""
    from pytest_medcode.scoring.similarity import BertScorer

    with _SCORERS_LOCK:
        key = ("bertscore", model, device)
        if key not in _SCORERS:
            _SCORERS[key] = BertScorer(model=model, device=device)
        return _SCORERS[key]


# -- the pass ---------------------------------------------------------------------------------------------


def reference_description(record: dict[str, Any], system: CodeSystem | None) -> str | None:
    """The reference code's own description from the table (a robustness variant may have reworded what
    the model was given), else the description the case carried."""
    if system is not None:
        entry = system.lookup(str(record["code"]))
        if entry is not None and entry.description:
            return entry.description
    return record.get("description")


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# Fresh pairs are scored in chunks of this many, so the progress line moves and a large run says how long.
_CHUNK = 1024


class Progress(Protocol):
    def __call__(self, line: str, final: bool = False) -> None: ...


def _score(scorer: Any, name: str, pairs: list[tuple[str, str]], store: ScoreStore | None,
           progress: Progress | None, report: SimilarityReport) -> list[float]:
    """One value per pair: from the store where it has the pair under this scorer's identity, else computed
    (each distinct pair once, in chunks, with a progress line) and kept in the store."""
    distinct = list(dict.fromkeys(pairs))
    # A pair whose two sides are the same string is the scorer's shortcut (1.0): no store traffic for it.
    lookup = [p for p in distinct if p[0] != p[1]]
    identity = scorer.identity if store is not None and lookup else ""
    known = store.get(identity, lookup) if identity and store is not None else {}
    # pairs sharing a description side by side: its kept embeddings serve them all (scoring/bertscore.py)
    fresh = neighbourhood_order(p for p in distinct if p not in known)
    report.stored[name] = len(known)
    report.scored[name] = sum(1 for p in fresh if p[0] != p[1])
    values: dict[tuple[str, str], float] = dict(known)
    started, done, total = time.monotonic(), 0, report.scored[name]
    for start in range(0, len(fresh), _CHUNK):
        chunk = fresh[start : start + _CHUNK]
        computed = scorer.score(chunk)
        values.update(zip(chunk, computed, strict=True))
        if identity and store is not None:
            store.put(identity, name, ((p, v) for p, v in zip(chunk, computed, strict=True) if p[0] != p[1]))
        done += sum(1 for p in chunk if p[0] != p[1])
        if progress is not None and total:
            elapsed = time.monotonic() - started
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = f"{(total - done) / rate:.0f} s" if rate > 0 and done < total else "-"
            progress(f"medcode: {name} {done:,}/{total:,} new description pairs · {rate:,.0f} pairs/s · "
                     f"ETA {eta}", final=done >= total)
    return [values[p] for p in pairs]


def _run(scorer: Any, name: str, pairs: list[tuple[str, str]], status: MetricStatus, store: ScoreStore | None,
         progress: Progress | None, report: SimilarityReport) -> list[float] | None:
    from pytest_medcode.scoring.similarity import SimilarityUnavailable

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library chatter (transformers, nltk) is not the user's problem
            return _score(scorer, name, pairs, store, progress, report)
    except SimilarityUnavailable as exc:
        status.available, status.reason = False, str(exc)
    except ImportError as exc:
        status.available = False
        status.reason = f"not installed ({_one_line(exc)}): pip install 'pytest-medcode[metrics]'"
    except Exception as exc:  # a metric that breaks is reported, never a traceback that ends the run
        status.available, status.reason = False, _one_line(exc)
    return None


def score_similarity(
    records: Sequence[dict[str, Any]],
    system_of: Callable[[str], CodeSystem | None],
    *,
    enabled: bool = True,
    bertscore_model: str | None = None,
    bertscore_device: str | None = None,
    meteor: Scorer | None = None,
    bertscore: Scorer | None = None,
    announce: Callable[[str], None] | None = None,
    store: ScoreStore | None = None,
    progress: Progress | None = None,
) -> SimilarityReport:
    """Write ``meteor`` and ``bertscore`` into every record (in place) and say what was computed.

    ``system_of(name)`` gives the code table of a system (for the reference descriptions). Scorers can be
    passed in (tests); by default the process's cached ones are used. ``announce`` gets one line before the
    scoring starts (a large run spends a minute here; the terminal should say why). ``store`` keeps scores
    across runs (only new pairs are computed); ``progress`` gets a line per chunk of new pairs.
    """
    report = SimilarityReport(enabled=enabled)
    for r in records:
        r["meteor"] = None
        r["bertscore"] = None
    if not enabled:
        return report
    started = time.perf_counter()
    todo = _scorable(records, system_of)
    run = _Pass(todo, [p for _, p in todo], store, progress, report)
    report.scorable = len(todo)
    report.pairs = len(set(run.pairs))
    if announce is not None and report.pairs:
        announce(f"pytest-medcode: scoring description similarity, {report.scorable:,} cases, "
                 f"{report.pairs:,} distinct description pairs")
    _score_meteor(run, meteor)
    _score_bertscore(run, bertscore, bertscore_model, bertscore_device)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _scorable(records: Sequence[dict[str, Any]],
              system_of: Callable[[str], CodeSystem | None]) -> list[tuple[dict[str, Any], tuple[str, str]]]:
    """The answered records whose predicted code has a description, each with its (reference, candidate)
    pair; each system's table is asked for once, and a system without one falls back to the case's text."""
    systems: dict[str, CodeSystem | None] = {}
    todo: list[tuple[dict[str, Any], tuple[str, str]]] = []
    for r in records:
        cand = r.get("predicted_description")
        if r.get("outcome") == ERROR or not cand:
            continue
        name = str(r["system"])
        if name not in systems:
            try:
                systems[name] = system_of(name)
            except Exception:  # no table: fall back to the case's own description
                systems[name] = None
        ref = reference_description(r, systems[name])
        if ref:
            todo.append((r, (ref, cand)))
    return todo


@dataclass
class _Pass:
    """What both metrics' passes share: the records to score with their pairs, the score store, the
    progress line and the report they fill in."""

    todo: list[tuple[dict[str, Any], tuple[str, str]]]
    pairs: list[tuple[str, str]]
    store: ScoreStore | None
    progress: Progress | None
    report: SimilarityReport

    def apply(self, scorer: Any, name: str, status: MetricStatus) -> None:
        """Score every pair with ``scorer`` into the records' ``name``; a metric that fails leaves them None
        (``status`` says why)."""
        values = _run(scorer, name, self.pairs, status, self.store, self.progress, self.report) if self.pairs else []
        if values is not None:
            for (r, _), v in zip(self.todo, values):
                r[name] = float(v)


def _score_meteor(run: _Pass, meteor: Scorer | None) -> None:
    """METEOR into the records and ``report.meteor``; without nltk it is reported unavailable, not raised."""
    m = meteor
    if m is None:
        try:
            m = meteor_scorer()
        except ImportError as exc:  # nltk missing
            run.report.meteor = MetricStatus(False, "METEOR", f"not installed ({_one_line(exc)})")
    if m is None:
        return
    status = run.report.meteor = MetricStatus(True, "METEOR")
    run.apply(m, "meteor", status)
    try:
        status.label = m.label
        status.synonyms = getattr(m, "synonyms", None)
    except Exception:  # a label is not worth a failure
        pass


def _score_bertscore(run: _Pass, bertscore: Scorer | None, model: str | None, device: str | None) -> None:
    """BERTScore into the records and ``report.bertscore``; a scorer that cannot load (no bert-score, an
    unknown model) is reported unavailable with its reason, not raised."""
    b = bertscore
    if b is None:
        try:
            b = bert_scorer(model, device)
        except (ImportError, ValueError) as exc:
            run.report.bertscore = MetricStatus(False, "BERTScore F1", _one_line(exc), model=model)
    if b is None:
        return
    model_name = getattr(b, "model_name", model)
    status = run.report.bertscore = MetricStatus(True, getattr(b, "label", "BERTScore F1"), model=model_name)
    run.apply(b, "bertscore", status)


def add_code_frequency(records: Sequence[dict[str, Any]], by: Sequence[str] = GROUP_KEYS) -> None:
    """``code_frequency`` per record (in place): answered prompts of its group that returned the same code."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for r in records:
        if r.get("outcome") != ERROR and r.get("predicted_code") is not None:
            counts[(*(r.get(k) for k in by), r["predicted_code"])] += 1
    for r in records:
        if r.get("outcome") == ERROR or r.get("predicted_code") is None:
            r["code_frequency"] = None
        else:
            r["code_frequency"] = counts[(*(r.get(k) for k in by), r["predicted_code"])]
