"""Merging the shards of a full-scale run against writing one run folder of that size.

Records a run of every ICD-10-CM billable code (74,719 cases, the offline lookup coder, similarity off)
once whole and once as 4 shards (pytest-split's ``--splits 4 --group K``), each a real pytest session in
its own process. Then times, each in a fresh process with its peak RSS:

  * ``medcode merge SHARD1..4 --out DIR``: read the 4 shards, check them, put them in order, score what
    needs the whole run, write the folder;
  * ``medcode report WHOLE --out DIR``: read the unsharded run's cases, summarise, write the folder — one
    run folder of that size written from its cases, the same work without the shards.

and checks the merged folder is the unsharded run (cases.parquet and summary.json, per-run fields aside).

Run from the repository root (dev environment, pytest-split installed: ``pip install -e '.[shards]'``):
    python perf/merge.py                    # every billable code
    python perf/merge.py --sample 2000      # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

BENCHMARK = "def test_code_query(medcode_case, medcode):\n    medcode.check(medcode_case)\n"
PER_RUN_SUMMARY = ("run_id", "created", "duration_s", "merged_from")
PER_RUN_NESTED = (("queries", "phase_s"), ("similarity", "seconds"))


def timed(argv: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall s, peak RSS MB, exit status) of one process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def record(folder: Path, sample: str, *extra: str) -> Path:
    argv = [sys.executable, "-m", "pytest", "-q", "--tb=no", "-p", "no:cacheprovider", "--model", "lookup",
            "--medcode-system", "icd10cm", "--medcode-sample", sample, "--medcode-no-similarity",
            "--medcode-report-dir", str(folder), *extra, "test_code_query.py"]
    wall, rss, status = timed(argv, folder.parent)
    if status not in (0, 1):
        raise SystemExit(f"run {' '.join(extra) or 'whole'} exited {status}")
    print(f"  recorded {folder.name}: {wall:.1f} s, {rss:.0f} MB", flush=True)
    return (folder / "latest").resolve()


def comparable(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    out = {k: v for k, v in summary.items() if k not in PER_RUN_SUMMARY}
    for key, inner in PER_RUN_NESTED:
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k != inner}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="all", help="--medcode-sample of the run (default: all)")
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medcode-merge-"))
    (work / "test_code_query.py").write_text(BENCHMARK)
    print(f"recording in {work}", flush=True)
    whole = record(work / "whole", args.sample)
    shards = [record(work / f"shard{k}", args.sample, "--splits", str(args.shards), "--group", str(k))
              for k in range(1, args.shards + 1)]
    medcode = [sys.executable, "-m", "pytest_medcode.cli"]
    merge = timed([*medcode, "merge", *map(str, shards), "--out", str(work / "merged")], work)
    write = timed([*medcode, "report", str(whole), "--out", str(work / "rewritten")], work)
    for name, (_, _, status) in (("merge", merge), ("report", write)):
        if status != 0:
            raise SystemExit(f"medcode {name} exited {status}")
    cases = pq.read_table(whole / "cases.parquet")
    merged = pq.read_table(work / "merged" / "cases.parquet")
    same = (cases.drop_columns(["latency_s"]).equals(merged.drop_columns(["latency_s"]))
            and comparable(whole) == comparable(work / "merged"))
    print(f"\n{cases.num_rows:,} cases, {args.shards} shards; merged folder is the unsharded run: {same}")
    print("| step | wall s | peak RSS MB |\n|---|---:|---:|")
    print(f"| medcode merge ({args.shards} shards) | {merge[0]:.1f} | {merge[1]:.0f} |")
    print(f"| medcode report (one run folder of that size) | {write[0]:.1f} | {write[1]:.0f} |")
    print(f"\nmerge / write: {merge[0] / write[0]:.2f}x time, peak {merge[1] / 1024:.2f} GB")
    if not same:
        raise SystemExit("the merged folder differs from the unsharded run")


if __name__ == "__main__":
    main()
