"""Several endpoints of one model (--medcode-router) against one endpoint, at the same total concurrency.

Each endpoint is a scripted server in its own process that works on at most ``--capacity`` requests at once
with a fixed latency, as a model server with a fixed batch size does: more calls in flight at one endpoint
then only queue. Runs, each with a fresh cache, the same cases and ``--medcode-concurrency``:

  1. one endpoint, ``--model openai/perf --medcode-api-base URL`` (the official client, no router);
  2. a router of one endpoint (litellm's Router, to see its own cost);
  3. a router of three endpoints;
  4. a router of three endpoints, one of them killed (SIGKILL) a few seconds into the query phase.

Throughput is cases per second of the query phase (summary.json ``queries.phase_s``); answers lost are the
cases that ended as errors. Run: PYTHONPATH=src python perf/router.py [--cases 600]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from pytest_medcode.codesystems import load_system
from pytest_medcode.dataset.cases import select_codes

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 24


def start_server(mapping: Path, capacity: int, latency_s: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_medcode.testing", "--port", "0", "--answers", str(mapping),
         "--latency", "fixed", "--latency-s", str(latency_s), "--capacity", str(capacity)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def successes(base_url: str) -> int:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats") as response:
        return int(sum(json.load(response)["successes_per_key"].values()))


def router_file(path: Path, bases: list[str]) -> Path:
    lines = ["model_list:"]
    for i, base in enumerate(bases):
        lines += ["  - model_name: openai/perf",
                  f"    litellm_params: {{model: openai/perf, api_base: '{base}', api_key: sk-perf}}",
                  f"    model_info: {{id: replica-{i}}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(work: Path, name: str, common: list[str], extra: list[str]) -> dict:
    cache = work / f"{name}.sqlite3"
    proc = subprocess.run([sys.executable, "-m", "pytest", *common, "--medcode-cache", str(cache),
                           "--medcode-report-dir", str(work / name), *extra], cwd=work, capture_output=True,
                          text=True, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                          "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get(
                                              "PYTHONPATH", "")])})
    if proc.returncode not in (0, 1):
        sys.exit(f"pytest failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads((work / name / "latest" / "summary.json").read_text())


def kill_later(proc: subprocess.Popen, base_url: str, after: int) -> threading.Thread:
    """SIGKILL ``proc`` once its server has answered ``after`` requests."""
    def watch() -> None:
        while proc.poll() is None and successes(base_url) < after:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=400, help="ICD-10-CM cases per run")
    parser.add_argument("--capacity", type=int, default=2, help="requests an endpoint works on at once")
    parser.add_argument("--latency-s", type=float, default=0.3, help="seconds an endpoint takes per request")
    options = parser.parse_args()
    n = options.cases
    pairs = select_codes(load_system("icd10cm"), n, 0, None)
    work = Path(tempfile.mkdtemp(prefix="medcode-router-perf-"))
    mapping = work / "mapping.json"
    mapping.write_text(json.dumps({d: c for c, d in pairs}))
    (work / "codes.csv").write_text("code\n" + "\n".join(c for c, _ in pairs) + "\n")
    (work / "benchmarks").mkdir()
    (work / "benchmarks" / "test_code_query.py").write_text((ROOT / "benchmarks" / "test_code_query.py").read_text())
    common = ["benchmarks/", "-q", "-p", "no:cacheprovider", "--model", "openai/perf", "--medcode-system", "icd10cm",
              "--medcode-codes", "codes.csv", "--medcode-concurrency", str(CONCURRENCY), "--medcode-no-similarity",
              "--medcode-sample", "all"]
    # three replicas, and a fourth for the run that kills one
    servers = [start_server(mapping, options.capacity, options.latency_s) for _ in range(4)]
    bases = [base for _, base in servers]
    rows: list[tuple[str, float, float, int, int]] = []
    try:
        for label, name, extra in (
            ("one endpoint (openai client, no router)", "one", ["--medcode-api-base", bases[0]]),
            ("router of 1 endpoint", "router1", ["--medcode-router", str(router_file(work / "r1.yaml", bases[:1]))]),
            ("router of 3 endpoints", "router3", ["--medcode-router", str(router_file(work / "r3.yaml", bases[:3]))]),
        ):
            summary = run(work, name, common, extra)
            phase = summary["queries"]["phase_s"]
            rows.append((label, phase, n / phase, summary["queries"]["errors"], len(summary["deployments"] or [])))
        killed, killed_base = servers[3]
        path = router_file(work / "rk.yaml", [bases[1], bases[2], killed_base])
        watcher = kill_later(killed, killed_base, 40)
        summary = run(work, "killed", common, ["--medcode-router", str(path)])
        watcher.join(10)
        phase = summary["queries"]["phase_s"]
        rows.append(("router of 3, one killed (SIGKILL) after 40 answers", phase, n / phase,
                     summary["queries"]["errors"], len(summary["deployments"] or [])))
        shares = {row["deployment"]: row["cases"] for row in summary["deployments"] or []}
    finally:
        for proc, _ in servers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    print(f"\n{n} ICD-10-CM cases; each endpoint: {options.capacity} requests at once, {options.latency_s:g} s each; "
          f"--medcode-concurrency {CONCURRENCY} in every run; {os.cpu_count()} cores\n")
    print("| run | query phase, s | cases/s | answers lost | deployments that answered |\n|---|---:|---:|---:|---:|")
    for label, phase, rate, lost, answered in rows:
        print(f"| {label} | {phase:.1f} | {rate:.1f} | {lost} | {answered} |")
    print(f"\nrouter of 3 vs one endpoint: {rows[2][2] / rows[0][2]:.2f}x throughput; "
          f"router of 1 vs one endpoint: {rows[1][2] / rows[0][2]:.2f}x")
    print(f"cases per deployment in the kill run: {shares}")


if __name__ == "__main__":
    main()
