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
    python perf/merge.py --work DIR --repeat 3   # time again the runs recorded in DIR (best of 3)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


#: The session's own end, in a fresh process: summarise the records it holds and write the folder (the read
#: of cases.parquet that stands in for the records a session has in memory is not timed); prints seconds.
SESSION_END = """
import sys, time
from pathlib import Path
from pytest_medcode.runs.folder import load_run, summarise, write_run
run = load_run(Path(sys.argv[1]))
started = time.perf_counter()
summary = {**run.summary, **summarise(run.records, seed=0)}
write_run(Path(sys.argv[2]), run.records, summary, 0)
print(time.perf_counter() - started)
"""


def session_end(whole: Path, out: Path) -> tuple[float, float]:
    """(s, peak RSS MB): what a session does at its end with its records, timed without reading them."""
    proc = subprocess.Popen([sys.executable, "-c", SESSION_END, str(whole), str(out)], stdout=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # one line of output: the pipe never fills
    if os.waitstatus_to_exitcode(status) != 0 or proc.stdout is None:
        raise SystemExit("the session's end exited with an error")
    return float(proc.stdout.read().decode().split()[-1]), usage.ru_maxrss / 1024


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
    parser.add_argument("--work", type=Path, default=None, help="a folder this script recorded into before: "
                        "time its runs again without recording them")
    parser.add_argument("--repeat", type=int, default=1, help="time each step this many times, alternating; best kept")
    args = parser.parse_args()
    shard_names = [f"shard{k}" for k in range(1, args.shards + 1)]
    if args.work is not None:
        work = args.work
        whole, shards = (work / "whole" / "latest").resolve(), [(work / n / "latest").resolve() for n in shard_names]
    else:
        work = Path(tempfile.mkdtemp(prefix="medcode-merge-"))
        (work / "test_code_query.py").write_text(BENCHMARK)
        print(f"recording in {work}", flush=True)
        whole = record(work / "whole", args.sample)
        shards = [record(work / n, args.sample, "--splits", str(args.shards), "--group", str(n[5:]))
                  for n in shard_names]
    medcode = [sys.executable, "-m", "pytest_medcode.cli"]
    merges, writes, ends = [], [], []
    for _ in range(args.repeat):
        for out in ("merged", "rewritten", "session-end"):
            shutil.rmtree(work / out, ignore_errors=True)
        merges.append(timed([*medcode, "merge", *map(str, shards), "--out", str(work / "merged")], work))
        writes.append(timed([*medcode, "report", str(whole), "--out", str(work / "rewritten")], work))
        ends.append(session_end(whole, work / "session-end"))
        for name, (_, _, status) in (("merge", merges[-1]), ("report", writes[-1])):
            if status != 0:
                raise SystemExit(f"medcode {name} exited {status}")
    merge, write, end = min(merges), min(writes), min(ends)
    cases = pq.read_table(whole / "cases.parquet")
    merged = pq.read_table(work / "merged" / "cases.parquet")
    same = (cases.drop_columns(["latency_s"]).equals(merged.drop_columns(["latency_s"]))
            and comparable(whole) == comparable(work / "merged"))
    print(f"\n{cases.num_rows:,} cases, {args.shards} shards; merged folder is the unsharded run: {same}")
    print("| step | wall s | peak RSS MB |\n|---|---:|---:|")
    print(f"| medcode merge ({args.shards} shards) | {merge[0]:.1f} | {merge[1]:.0f} |")
    print(f"| medcode report (one run folder of that size) | {write[0]:.1f} | {write[1]:.0f} |")
    print(f"| a session's end: summarise + write_run, records in memory (read not timed) | {end[0]:.1f} | "
          f"{end[1]:.0f} |")
    print(f"\nmerge / medcode report: {merge[0] / write[0]:.2f}x time; merge / session's end: "
          f"{merge[0] / end[0]:.2f}x; merge peak {merge[1] / 1024:.2f} GB")
    if not same:
        raise SystemExit("the merged folder differs from the unsharded run")


if __name__ == "__main__":
    main()
