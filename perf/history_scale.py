"""Time ``medcode history`` over hundreds of run folders (a script, not a test).

Writes ``--runs`` synthetic run folders (default 300) through runs/folder.py, each with ``--cases`` cases
(default 2,000: 4 models × ICD-10-CM and ICD-9-CM × 250 codes, exact match drifting from run to run, every
seventh run's gate failed). One run in ten has a summary without results, as an interrupted session
leaves it, so its exact match is read from the cases' columns. Then it times collecting the history,
rendering the page and the terminal table in this process, and ``medcode history`` end to end in a fresh
process (imports included).

Run: PYTHONPATH=src python perf/history_scale.py [--runs 300] [--cases 2000] [--out /tmp/history-300]
"""

from __future__ import annotations

import argparse
import copy
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pytest_medcode.reports.history import render_html, render_terminal
from pytest_medcode.results.stats import wilson
from pytest_medcode.runs.folder import SCHEMA_VERSION, summarise, write_cases, write_json
from pytest_medcode.runs.history import collect

MODELS = ("gpt-4", "gpt-3.5-turbo", "claude-3-opus", "llama-3-70b")
SYSTEMS = ("icd10cm", "icd9cm")


def template(cases: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    per = max(1, cases // (len(MODELS) * len(SYSTEMS)))
    return [{"model": m, "system": s, "code": f"C{i:05d}", "description": f"case {i}", "outcome": "incorrect",
             "exact_match": rng.random() < 0.4, "variant": "exact"}
            for m in MODELS for s in SYSTEMS for i in range(per)]


def write_runs(root: Path, runs: int, cases: int, seed: int) -> None:
    rng = random.Random(seed)
    records = template(cases, seed)
    base = {"schema_version": SCHEMA_VERSION, **summarise(records, seed=0)}
    base.pop("tables")
    for k in range(runs):
        run_id = f"20260101-{k:06d}-synthetic"
        folder = root / run_id
        folder.mkdir(parents=True)
        summary = copy.deepcopy(base)
        summary.update(run_id=run_id, created=f"2026-01-01T00:00:00+00:00#{k:06d}", config={"prompt": "paper"},
                       prompt_template="What is the {system} code for <{description}>?",
                       code_systems={"icd10cm": "2026", "icd9cm": "CMS v32"},
                       gate={"passed": k % 7 != 6, "reason": "exact_match below 40%" if k % 7 == 6 else "ok"})
        for row in summary["results"]:
            n = row["exact_match"]["n"]
            hits = max(0, min(n, round(n * (row["exact_match"]["value"] + rng.uniform(-0.05, 0.05)))))
            est = wilson(hits, n)
            row["exact_match"] = {"value": est.value, "low": est.low, "high": est.high, "n": n}
        if k % 10 == 9:
            del summary["results"]
        write_cases(records, folder / "cases.parquet")
        write_json(summary, folder / "summary.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--cases", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/history-300")
    args = parser.parse_args()
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    write_runs(root, args.runs, args.cases, args.seed)
    print(f"{args.runs} run folders of {args.cases:,} cases written in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    history = collect(root)
    collect_s = time.perf_counter() - start
    start = time.perf_counter()
    page = render_html(history.runs, str(root))
    page_s = time.perf_counter() - start
    start = time.perf_counter()
    lines = render_terminal(history.runs, 30)
    table_s = time.perf_counter() - start
    print(f"collect: {len(history.runs)} runs in {collect_s:.2f} s ({len(history.problems)} unreadable); "
          f"history.html rendered in {page_s:.2f} s, {len(page.encode()) / 1e6:.2f} MB; terminal table "
          f"({len(lines)} lines) in {table_s * 1000:.0f} ms; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest_medcode.cli", "history", str(root)],
                          capture_output=True, text=True)
    print(f"medcode history (fresh process, imports included): {time.perf_counter() - start:.2f} s, "
          f"exit {proc.returncode}; {proc.stdout.strip().splitlines()[-1]}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
