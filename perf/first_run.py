"""Time `make benchmark`'s run as a newcomer gets it: the default benchmark (benchmarks/first-run.args) from a
clean folder, with an empty response cache, so every model call is really made.

    PYTHONPATH=src python perf/first_run.py --runs 3

Each run copies benchmarks/ into a fresh temporary folder and runs ``pytest benchmarks/
@benchmarks/first-run.args`` there; it prints the wall time, the model-call line and the machine's load
average before and after (the timing depends on what else the machine runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load() -> float:
    return os.getloadavg()[0]


def one_run(index: int) -> tuple[float, str, float, float]:
    """(seconds, the model-call line, load before, load after) of one clean run."""
    with tempfile.TemporaryDirectory(prefix="medcode-first-run-") as work:
        shutil.copytree(REPO / "benchmarks", Path(work) / "benchmarks")
        before, start = load(), time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "benchmarks/", "@benchmarks/first-run.args"],
            cwd=work, capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"},
        )
        took = time.perf_counter() - start
        calls = next((line for line in proc.stdout.splitlines() if line.startswith("model calls:")), "")
        if proc.returncode not in (0, 1):
            sys.exit(f"run {index}: exit {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        return took, calls, before, load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="clean runs to time (default 3)")
    args = parser.parse_args()
    print("args:", " ".join((REPO / "benchmarks" / "first-run.args").read_text().split()))
    times = []
    for i in range(1, args.runs + 1):
        took, calls, before, after = one_run(i)
        times.append(took)
        print(f"run {i}: {took:.0f} s ({took / 60:.1f} min), load average {before:.1f} -> {after:.1f}; {calls}")
    print(f"wall time: min {min(times):.0f} s, max {max(times):.0f} s over {len(times)} clean run(s)")


if __name__ == "__main__":
    main()
