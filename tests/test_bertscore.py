"""BERTScore from per-description embeddings: the matching by hand, and the real model against bert-score."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from conftest import missing
from pytest_medcode.codesystems import load_system
from pytest_medcode.scoring.bertscore import EmbeddingCache, neighbourhood_order, pair_f1
from pytest_medcode.scoring.similarity import BertScorer, SimilarityUnavailable


def _unit(*rows: list[float]) -> np.ndarray:
    out = np.array(rows, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_pair_f1_by_hand() -> None:
    # Candidate tokens: [CLS], a, b; reference tokens: [CLS], a, c. Cosines: a-a 1, b-c 0.6, b-a 0,
    # c-a -0.8 (clamped to 0, as bert-score's padding makes it); [CLS] matched against, never averaged.
    cls = [0.0, 0.0, 1.0]
    cand = _unit(cls, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    ref = _unit(cls, [1.0, 0.0, 0.0], [-0.8, 0.6, 0.0])
    weighted = np.array([False, True, True])
    precision = (1.0 + 0.6) / 2  # a→a, b→c
    recall = (1.0 + 0.6) / 2  # a→a, c→b (0.6 beats c→a, which is negative)
    assert pair_f1(cand, ref, weighted, weighted) == pytest.approx(2 * precision * recall / (precision + recall))
    # Each candidate token only sees negative cosines but [CLS]'s 0: precision is 0, so F1 is 0.
    far = _unit(cls, [-1.0, 0.0, 0.0])
    assert pair_f1(far, _unit(cls, [1.0, 0.0, 0.0]), np.array([False, True]), np.array([False, True])) == 0.0
    # A side with no weighted token (only special tokens): bert-score's NaN, reported as 0.
    assert pair_f1(cand, ref, np.array([False, False, False]), weighted) == 0.0


def test_neighbourhood_order_puts_pairs_sharing_a_description_together() -> None:
    # Two groups linked inside, not to each other; sorted, their pairs interleave (A.., B.., A.., B..).
    pairs = [("A1", "Z1"), ("B1", "Y1"), ("Z1", "C1"), ("Y1", "D1"), ("C1", "X9"), ("A1", "Z1")]
    ordered = neighbourhood_order(pairs)
    assert sorted(ordered) == sorted(set(pairs))  # each distinct pair once
    assert ordered == [("A1", "Z1"), ("Z1", "C1"), ("C1", "X9"), ("B1", "Y1"), ("Y1", "D1")]
    assert neighbourhood_order(list(reversed(pairs))) == ordered  # the same order whatever order they came in
    assert neighbourhood_order([]) == []


def _sibling_pairs(step: int) -> list[tuple[str, str]]:
    by_category: dict[str, list[str]] = defaultdict(list)
    for code, description in load_system("icd10cm").billable_codes():
        by_category[code[:3]].append(description)
    return [(group[0], group[i]) for group in list(by_category.values())[::step] for i in (1, 2, 3)
            if len(group) > i and group[i] != group[0]]


@pytest.fixture(scope="module")
def scorer() -> BertScorer:
    out = BertScorer(batch_size=32, precision="fp32")
    try:
        out.load()
    except SimilarityUnavailable as exc:  # make installs the model: in CI it must load
        missing(f"the BERTScore model: {exc}")
    return out


def test_agrees_with_bert_score_and_embeds_each_description_once(scorer: BertScorer) -> None:
    """~100 sibling pairs: each F1 within 1e-4 of ``bert_score.BERTScorer.score`` (perf/similarity_speed.py
    measured 2.3e-7 at most on 2,000); a second call pairing the same descriptions the other way round runs
    none of them through the model again."""
    pairs = _sibling_pairs(48)
    assert len(pairs) >= 100
    inner = scorer._load()
    _, _, f1 = inner.score([c for _, c in pairs], [r for r, _ in pairs], batch_size=32)
    ours = scorer.score(pairs)
    assert max(abs(a - b) for a, b in zip(f1.tolist(), ours, strict=True)) <= 1e-4
    cache = scorer._embeddings()
    encoded = cache.encoded
    assert encoded == len({s for p in pairs for s in p})
    swapped = [(c, r) for r, c in pairs]  # new pairs, the same descriptions (F1 is symmetric)
    assert scorer.score(swapped) == pytest.approx(ours, abs=1e-6)
    assert cache.encoded == encoded


def test_kept_embeddings_stay_within_the_budget(scorer: BertScorer) -> None:
    inner = scorer._load()
    cache = EmbeddingCache(inner._model, inner._tokenizer, inner.device, 32, scorer._autocast, budget=200_000)
    pairs = _sibling_pairs(200)
    first = cache.score(pairs)
    assert 0 < cache.used <= 200_000 and len(cache._kept) < len({s for p in pairs for s in p})
    assert cache.score(pairs) == pytest.approx(first, abs=1e-6)  # evicted ones are embedded again, same values


def test_batches_hold_at_most_their_size_and_token_budget_and_every_sentence_once() -> None:
    """Longest first: short descriptions go in full batches, long ones fewer at a time, none left out; a sentence
    longer than the budget still goes alone."""
    from pytest_medcode.scoring.bertscore import _batches

    widths = [600, *range(120, 0, -1)] * 3
    order = [f"s{i}" for i in range(len(widths))]
    ids = {s: [0] * w for s, w in zip(order, sorted(widths, reverse=True), strict=True)}
    batches = list(_batches(order, ids, 16, 256))
    assert [s for b in batches for s in b] == order
    assert batches[0] == ["s0"] and all(len(b) <= 16 for b in batches)
    assert all(len(b) * len(ids[b[0]]) <= 256 for b in batches[3:])
    assert len(batches[-2]) == 16  # the shortest fill whole batches (the last holds what is left)
