"""Query-engine throughput against a local OpenAI-compatible server with heavy-tailed latency.

Compares, on the same 2,000 ICD-10-CM cases and the same server (a separate process, so its
threads do not share our GIL):
  1. a bare AsyncOpenAI loop with 32 calls in flight (the best a hand-written client does);
  2. the study's design: batches of 100 gathered with a barrier, at most 32 in flight;
  3. the plugin, `pytest benchmarks/ --model openai/...`, with -n 0 and with -n 2;
  4. a fully cached re-run of (3) against the bare-pytest floor for 2,000 trivial cases.
Requests are counted at the server. Run: python perf/query_engine.py [--cases 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pytest_medcode.codesystems import load_system
from pytest_medcode.dataset.cases import select_codes
from pytest_medcode.dataset.prompts import load_template

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 32


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats") as response:
        return json.load(response)


def start_server(mapping: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_medcode.testing", "--port", "0", "--answers", str(mapping),
         "--latency", "lognormal", "--median", "0.3", "--p95", "2.0", "--seed", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


async def bare(base_url: str, prompts: list[str], batch: int | None) -> float:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="sk-perf", max_retries=0, timeout=60)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(prompt: str) -> str:
        async with slots:
            r = await client.chat.completions.create(
                model="perf", messages=[{"role": "user", "content": prompt}], temperature=0.2, max_tokens=50)
            return r.choices[0].message.content or ""

    start = time.perf_counter()
    if batch is None:
        await asyncio.gather(*(one(p) for p in prompts))
    else:
        for i in range(0, len(prompts), batch):
            await asyncio.gather(*(one(p) for p in prompts[i : i + batch]))
    took = time.perf_counter() - start
    await client.close()
    return took


def run_pytest(args: list[str], cwd: Path) -> tuple[float, dict | None]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"pytest failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    summary = cwd / "reports" / "latest" / "summary.json"
    return took, json.loads(summary.read_text()) if summary.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=2000)
    n = parser.parse_args().cases
    system = load_system("icd10cm")
    pairs = select_codes(system, n, 0, None)
    template = load_template("paper")
    prompts = [template.render(system.prompt_name, d, system.example) for _, d in pairs]
    work = Path(tempfile.mkdtemp(prefix="medcode-perf-"))
    mapping = work / "mapping.json"
    mapping.write_text(json.dumps({d: c for c, d in pairs}))
    codes = work / "codes.csv"
    codes.write_text("code\n" + "\n".join(c for c, _ in pairs) + "\n")
    (work / "benchmarks").mkdir()
    (work / "benchmarks" / "test_code_query.py").write_text((ROOT / "benchmarks" / "test_code_query.py").read_text())
    (work / "trivial").mkdir()
    (work / "trivial" / "test_trivial.py").write_text(
        f"import pytest\n\n@pytest.mark.parametrize('i', range({n}))\ndef test_trivial(i):\n    assert i >= 0\n")

    proc, base_url = start_server(mapping)
    rows: list[tuple[str, str, str]] = []
    try:
        t_bare = asyncio.run(bare(base_url, prompts, None))
        rows.append(("bare AsyncOpenAI, 32 in flight", f"{t_bare:.1f}", f"{n / t_bare:.1f}"))
        t_study = asyncio.run(bare(base_url, prompts, 100))
        rows.append(("study design: batches of 100 with a barrier", f"{t_study:.1f}", f"{n / t_study:.1f}"))
        common = ["benchmarks/", "-q", "-p", "no:cacheprovider", "--model", "openai/perf", "--medcode-api-base",
                  base_url, "--medcode-system", "icd10cm", "--medcode-codes", str(codes),
                  "--medcode-concurrency", str(CONCURRENCY), "--medcode-no-similarity", "--medcode-sample", "all"]
        results = {}
        for label, extra in (("-n 0", []), ("-n 2", ["-n", "2"])):
            cache = work / f"cache{label[-1]}.sqlite3"
            before = server_stats(base_url)["total_requests"]
            took, summary = run_pytest([*common, "--medcode-cache", str(cache), *extra], work)
            asked = server_stats(base_url)["total_requests"] - before
            phase = summary["queries"]["phase_s"] if summary else None
            results[label] = (took, phase, asked)
            rows.append((f"plugin {label}: whole pytest run (requests at server: {asked})", f"{took:.1f}",
                         f"{n / took:.1f}"))
            if phase:
                rows.append((f"plugin {label}: query phase only", f"{phase:.1f}", f"{n / phase:.1f}"))
        before = server_stats(base_url)["total_requests"]
        t_cached, _ = run_pytest([*common, "--medcode-cache", str(work / "cache0.sqlite3")], work)
        cached_requests = server_stats(base_url)["total_requests"] - before
        t_floor, _ = run_pytest(["trivial/", "-q", "-p", "no:cacheprovider"], work)
        rows.append((f"plugin -n 0, fully cached re-run (requests at server: {cached_requests})",
                     f"{t_cached:.1f}", f"{n / t_cached:.1f}"))
        rows.append((f"bare pytest floor, {n} trivial parametrized tests", f"{t_floor:.1f}", f"{n / t_floor:.1f}"))
    finally:
        proc.terminate()
        proc.wait()
    print(f"\n{n} ICD-10-CM cases, server latency log-normal (median 0.3 s, p95 2 s), {CONCURRENCY} in flight, "
          f"{os.cpu_count()} cores\n")
    print("| what | seconds | cases/s |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    phase0 = results["-n 0"][1] or results["-n 0"][0]
    print(f"\nplugin query phase vs bare client: {t_bare / phase0:.2f}x throughput "
          f"(whole run incl. pytest start-up: {t_bare / results['-n 0'][0]:.2f}x)")
    print(f"plugin vs study design: {t_study / phase0:.2f}x faster")
    print(f"cached re-run vs bare-pytest floor: {t_cached / t_floor:.2f}x the floor's time")


if __name__ == "__main__":
    main()
