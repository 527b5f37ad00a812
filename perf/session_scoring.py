"""The end-of-session scoring pass as a run does it (a script, not a test).

``perf/scoring_dedup.py`` measures the scorers alone. This times what :mod:`pytest_medcode.plugin.reporter` runs at
the end of a session, on records shaped like a real benchmark's (eight models answering one reference list, exact
answers, near misses, popular wrong codes, fabricated codes, answers with no code):

1. per-case scoring of the raw answers, as each test does it (``score_answer``: extraction, validity,
   hierarchy, other-system check), under both profiles;
2. ``score_similarity``: METEOR and BERTScore over every record, deduplicated and batched;
3. ``summarize`` + ``build_tables``: the results rows with their bootstrap intervals and the paper tables.

Run: PYTHONPATH=src python perf/session_scoring.py [--records 20000] [--distinct 1500]
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections import defaultdict

from pytest_medcode.codesystems import load_system
from pytest_medcode.reports.tables import build_tables
from pytest_medcode.results.aggregate import summarize
from pytest_medcode.results.records import score_record
from pytest_medcode.scoring.session_metrics import add_code_frequency, bert_scorer, score_similarity


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def zipf(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def build_answers(n: int, n_distinct: int, seed: int) -> list[tuple[str, str, str]]:
    """(model, reference code, raw answer): 35% exact, 40% a sibling, 12% a popular wrong code (the prompt's
    example M24.131 among them), 8% a fabricated code, 5% no code."""
    rng = random.Random(seed)
    icd10 = load_system("icd10cm")
    leaves = [c for c, _ in icd10.billable_codes() if len(c) >= 5]
    by_category: dict[str, list[str]] = defaultdict(list)
    for code in leaves:
        by_category[code[:3]].append(code)
    references = rng.sample([c for c in leaves if len(by_category[c[:3]]) > 1], n_distinct)
    popular = ["M24.131", *rng.sample(leaves, 29)]
    siblings = {r: rng.sample([c for c in by_category[r[:3]] if c != r], min(3, len(by_category[r[:3]]) - 1))
                for r in references}
    out = []
    for i, ref in enumerate(rng.choices(references, weights=zipf(n_distinct), k=n)):
        roll = rng.random()
        if roll < 0.35:
            answer = f"Code: {ref}"
        elif roll < 0.75:
            answer = f"Code: {rng.choice(siblings[ref])}"
        elif roll < 0.87:
            answer = f"Code: {rng.choices(popular, weights=zipf(30, 1.5))[0]}"
        elif roll < 0.95:
            answer = f"Code: {ref[:-1]}{'Z' if ref[-1] != 'Z' else 'Y'}9"  # not in the table
        else:
            answer = "I cannot determine the code."
        out.append((f"model-{i % 8}", ref, answer))
    return out


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--distinct", type=int, default=1_500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    icd10 = load_system("icd10cm")
    answers, build_s = timed(lambda: build_answers(args.records, args.distinct, args.seed))
    print(f"{len(answers):,} answers built in {build_s:.1f} s")

    def per_case(profile: str, rows=answers) -> list[dict]:
        return [score_record({"model": m, "system": "icd10cm", "code": ref, "description": ""}, icd10, text, profile)
                for m, ref, text in rows]

    _, warm_s = timed(lambda: per_case("default", answers[:200]))  # the hierarchy index and GEMs, once a process
    print(f"first 200 answers (builds the hierarchy index, loads the GEMs): {warm_s:.1f} s")
    records, default_s = timed(lambda: per_case("default"))
    _, paper_s = timed(lambda: per_case("paper"))
    print(f"per-case scoring (score_answer): default {len(records) / default_s:,.0f} answers/s, "
          f"paper {len(records) / paper_s:,.0f} answers/s")

    _, load_s = timed(lambda: bert_scorer().load())  # paid once per process, timed apart
    print(f"BERTScore model load: {load_s:.1f} s")
    report, sim_s = timed(lambda: score_similarity(records, load_system))
    add_code_frequency(records)
    print(f"similarity pass: {sim_s:.1f} s for {len(records):,} records ({report.scorable:,} scorable, "
          f"{report.pairs:,} distinct pairs); {report.meteor.label}; {report.bertscore.label}")
    results, agg_s = timed(lambda: summarize(records, seed=0, similarity=report.available()))
    _, tables_s = timed(lambda: build_tables(results))
    print(f"summarize (8 groups, bootstrap CIs): {agg_s:.1f} s; tables: {tables_s * 1000:.0f} ms")
    print(f"peak RSS: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
