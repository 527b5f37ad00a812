"""Fresh-pair throughput of description similarity, and how far the faster path moves the scores.

Draws ``--pairs`` (reference, near miss) description pairs from ICD-10-CM the way wrong answers look (a sibling
code of the same category), then scores them with BERTScore in fp32 (the path before bf16 existed) and with
the default precision (bf16 autocast where the CPU computes bfloat16 natively), alternating rounds so both
see the same machine load, and with METEOR. Reports pairs/s (best round), the ratio, and the largest and mean
absolute difference between the two BERTScore paths over every pair.

Run: PYTHONPATH=src python perf/similarity_speed.py [--pairs 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import defaultdict

from pytest_medcode.codesystems import load_system
from pytest_medcode.scoring.similarity import BertScorer, MeteorScorer


def near_misses(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    codes = load_system("icd10cm").billable_codes()
    by_category: dict[str, list[str]] = defaultdict(list)
    for code, description in codes:
        by_category[code[:3]].append(description)
    out = []
    for code, description in rng.sample(codes, n):
        sibling = rng.choice(by_category[code[:3]])
        out.append((description, sibling if sibling != description else rng.choice(codes)[1]))
    return out


def timed(scorer, pairs) -> tuple[float, list[float]]:
    scorer._memo.clear()
    start = time.perf_counter()
    values = scorer.score(pairs)
    return time.perf_counter() - start, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pairs = near_misses(args.pairs, args.seed)
    exact, fast = BertScorer(precision="fp32"), BertScorer()
    exact.load()
    fast.load()
    timed(exact, pairs[:64])  # warm-up: the first call of each path pays one-off kernel set-up
    timed(fast, pairs[:64])
    best = {"fp32": float("inf"), fast.precision: float("inf")}
    values = {}
    for _ in range(args.rounds):
        for name, scorer in (("fp32", exact), (fast.precision, fast)):
            seconds, values[name] = timed(scorer, pairs)
            best[name] = min(best[name], seconds)
    meteor = MeteorScorer()
    meteor.score(pairs[:10])
    meteor._memo.clear()
    start = time.perf_counter()
    meteor.score(pairs)
    meteor_s = time.perf_counter() - start
    diffs = [abs(a - b) for a, b in zip(values["fp32"], values[fast.precision], strict=True)]
    print(f"{len(pairs)} pairs · {os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.1f} · "
          f"default precision here: {fast.precision}")
    for name, seconds in best.items():
        print(f"  BERTScore {name:5} {len(pairs) / seconds:8.1f} pairs/s  (best of {args.rounds}: {seconds:.2f} s)")
    print(f"  speed-up of the default over fp32: {best['fp32'] / best[fast.precision]:.2f}x")
    print(f"  |default - fp32|: max {max(diffs):.5f}, mean {sum(diffs) / len(diffs):.5f}")
    print(f"  METEOR ({meteor.label}) {len(pairs) / meteor_s:8.1f} pairs/s")


if __name__ == "__main__":
    main()
