"""Full scale: every ICD-10-CM billable code (74,719 cases) answered from the response cache and scored.

Measures, for ``-n 0`` and ``-n 2``:
  * wall time of a fully cached run (`pytest benchmarks/ --model openai/m ... --medcode-sample all`)
    against the bare-pytest floor: the same number of trivially passing parametrized cases, plugin off;
  * peak RSS of the whole process tree (controller + workers), sampled from /proc every 0.1 s;
  * the size of the run folder (Parquet, JSON, Markdown, HTML) and of the terminal output.

The cache is filled the honest way first: the real plugin path (a whole run, whose query phase asks
every case) against a local OpenAI-compatible server with zero latency (a separate process), and that fill is
timed too. The server stays up during the cached runs and its request count must not move.

Run from the repository root (dev environment):
    python perf/full_scale.py                          # all 74,719 codes, -n 0 and -n 2, similarity off
    python perf/full_scale.py --cases 10000 --workers 0
    python perf/full_scale.py --similarity             # METEOR + BERTScore on as well: every pair computed
                                                       # (scores forgotten first), then every score kept
    python perf/full_scale.py --wrong-fraction 0.66 --pytest-args '--medcode-fail-under exact_match=0.2'

A model wrong on most codes makes that many failing tests, and pytest's own failure summary is
quadratic in the number of reports (``_get_teardown_reports`` rescans every report for each failure):
for 49,000 failures among 74,719 cases that is ~7 billion report checks. Large runs belong in gate mode
(wrong codes are "mismatched", not failures; the gate decides the exit status) or need ``--tb=line``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from pytest_medcode.codesystems import load_system

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
FLOOR_TEST = """
import os

import pytest


@pytest.mark.parametrize("i", range(int(os.environ["FLOOR_CASES"])))
def test_case(i):
    pass
"""


# -- measuring a process tree -----------------------------------------------------------------------


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


class PeakRSS(threading.Thread):
    """Largest sum of RSS over a process and its descendants, sampled every ``every_s``."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak = self.peak_single = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            sizes = [_rss(p) for p in _tree(self.pid)]
            self.peak = max(self.peak, sum(sizes))
            self.peak_single = max(self.peak_single, max(sizes, default=0))
            self._stop_event.wait(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict:
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        watcher = PeakRSS(proc.pid)
        watcher.start()
        proc.wait()
        watcher.stop()
    return {"wall_s": round(time.perf_counter() - start, 1), "exit": proc.returncode,
            "peak_rss_mb": round(watcher.peak / 2**20), "peak_rss_one_process_mb": round(watcher.peak_single / 2**20),
            "output_kb": round(log.stat().st_size / 1024), "last_line": _last_line(log)}


def best_of(times: int, cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict:
    """The fastest of ``times`` runs (a shared machine only ever adds time), peak RSS the largest seen."""
    runs = [measure(cmd, cwd, env, log) for _ in range(times)]
    best = min(runs, key=lambda r: r["wall_s"])
    return {**best, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "walls_s": [r["wall_s"] for r in runs]}


def _last_line(log: Path) -> str:
    lines = log.read_bytes().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- the server -----------------------------------------------------------------------------------


def start_server(answers: Path, wrong_fraction: float, port: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_medcode.testing", "--port", str(port), "--answers", str(answers),
         "--wrong-fraction", str(wrong_fraction), "--seed", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def server_requests(base_url: str) -> int:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats") as response:
        return json.load(response)["total_requests"]


# -- the runs -------------------------------------------------------------------------------------


def forget_scores(cache: Path) -> None:
    """Drop the similarity scores a run kept, so the next run computes every pair (the answers stay)."""
    with sqlite3.connect(cache) as db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'similarity_scores'").fetchone():
            db.execute("DELETE FROM similarity_scores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="all", help="'all' (74,719) or a number drawn with seed 0")
    parser.add_argument("--workers", default="0,2", help="comma list of -n values")
    parser.add_argument("--wrong-fraction", type=float, default=0.0, help="share of answers the model gets wrong")
    parser.add_argument("--similarity", action="store_true", help="also measure with the similarity pass on")
    parser.add_argument("--dir", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--port", type=int, default=0, help="server port; keep it and --dir to reuse a filled cache")
    parser.add_argument("--repeat", type=int, default=1, help="measure each run this many times, keep the fastest")
    parser.add_argument("--no-bytecode-cache", action="store_true", help="keep PYTHONDONTWRITEBYTECODE if set")
    parser.add_argument("--pytest-args", default="", help="more arguments for the cached runs, e.g. gate mode: "
                        "'--medcode-fail-under exact_match=0.2' (with many wrong codes, see the module doc)")
    args = parser.parse_args()
    workers = [w.strip() for w in args.workers.split(",") if w.strip()]
    work = args.dir or Path(tempfile.mkdtemp(prefix="medcode-full-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    # A normal Python caches bytecode; with PYTHONDONTWRITEBYTECODE=1 (set on some CI images) every run
    # compiles and assertion-rewrites the plugin's modules again (~2 s), which the floor never imports.
    env = {k: v for k, v in os.environ.items() if args.no_bytecode_cache or k != "PYTHONDONTWRITEBYTECODE"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

    pairs = load_system("icd10cm").billable_codes()
    n = len(pairs) if args.cases == "all" else int(args.cases)
    answers = work / "answers.json"
    answers.write_text(json.dumps({d: c for c, d in pairs}))
    shutil.copy(ROOT / "benchmarks" / "test_code_query.py", work / "test_code_query.py")
    floor_dir = work / "floor"
    floor_dir.mkdir(exist_ok=True)
    (floor_dir / "test_floor.py").write_text(FLOOR_TEST)

    server, base_url = start_server(answers, args.wrong_fraction, args.port)
    results: dict[str, dict] = {}
    try:
        common = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--model", "openai/m",
                  "--medcode-api-base", base_url, "--medcode-system", "icd10cm", "--medcode-sample", args.cases,
                  "--medcode-cache", str(work / "cache" / "responses.sqlite3"), "--medcode-concurrency", "32",
                  "--medcode-report-dir", str(work / "reports"), "test_code_query.py"]
        extra_args = shlex.split(args.pytest_args)
        # 1. Fill the cache through the real path: a whole run (--collect-only asks nothing: the query phase
        #    waits for a run whose tests will run).
        fill = measure([*common, "--medcode-no-similarity", "-n", "0"], work, env,
                       work / "fill.log")
        fill["requests"] = server_requests(base_url)
        stored = sqlite3.connect(work / "cache" / "responses.sqlite3").execute(
            "SELECT count(*) FROM responses WHERE text IS NOT NULL").fetchone()[0]
        results["fill (real path, a whole run, -n 0)" if fill["requests"] else "fill (cache was full)"] = fill
        print(f"fill: {fill}", flush=True)
        assert fill["requests"] in (0, n) and stored >= n, f"{fill['requests']} requests, {stored} stored, {n} cases"

        variants = [("no similarity", ["--medcode-no-similarity"])]
        if args.similarity:  # first with no score kept (every pair computed), then with every score kept
            variants += [("similarity, scores fresh", []), ("similarity, scores cached", [])]
        for label, extra in variants:
            for w in workers:
                name = f"cached, {label}, -n {w}"
                if label.endswith("fresh"):
                    forget_scores(work / "cache" / "responses.sqlite3")
                before = sorted(p.name for p in (work / "reports").iterdir()) if (work / "reports").exists() else []
                run = best_of(args.repeat, [*common, *extra_args, *extra, "-n", w], work, env,
                              work / f"run-{label}-{w}.log")
                new = [p for p in sorted((work / "reports").iterdir()) if p.name not in before and p.name != "latest"]
                run["report_mb"] = round(folder_size(new[-1]) / 2**20, 1) if new else None
                if new:
                    summary = json.loads((new[-1] / "summary.json").read_text())
                    run["queries"] = {k: summary["queries"][k] for k in ("asked", "cache_hits")}
                    if summary.get("similarity") and summary["similarity"].get("enabled"):
                        sim = summary["similarity"]
                        run["similarity"] = {k: sim.get(k) for k in ("pairs", "scored", "stored", "seconds")}
                run["server_requests_after"] = server_requests(base_url)
                results[name] = run
                print(f"{name}: {run}", flush=True)
                assert run["server_requests_after"] == fill["requests"], "a cached run asked the server"

        floor_env = {**env, "FLOOR_CASES": str(n)}
        for w in workers:
            name = f"floor, bare pytest, -n {w}"
            results[name] = best_of(args.repeat, [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                                  "-p", "no:medcode", "-n", w, "test_floor.py"], floor_dir, floor_env,
                                    work / f"floor-{w}.log")
            print(f"{name}: {results[name]}", flush=True)
    finally:
        server.terminate()
        server.wait()

    print()
    print(f"{n} cases · {os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.1f} · work folder {work}")
    print(f"{'run':48} {'wall s':>8} {'vs floor':>9} {'peak RSS MB':>12} {'report MB':>10} {'output KB':>10}")
    for name, r in results.items():
        w = name.rsplit("-n ", 1)[-1]
        floor = results.get(f"floor, bare pytest, -n {w}")
        ratio = f"{r['wall_s'] / floor['wall_s']:.2f}×" if floor and name.startswith("cached") else ""
        print(f"{name:48} {r['wall_s']:>8} {ratio:>9} {r['peak_rss_mb']:>12} {r.get('report_mb') or '':>10} "
              f"{r['output_kb']:>10}")
    (work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
