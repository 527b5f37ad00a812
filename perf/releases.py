"""Release tables: cold build and cached load of each one, the memory of three ICD-10-CM releases, and what
changed between each pair.

Each measurement runs in a fresh process against an empty cache folder (cold: the table is built from its
package's files and written as Parquet) and then again against the filled one (cached: the Parquet file
read back), so no process reuses another's work. Memory: peak RSS of a process that loads the default
ICD-10-CM table only, against one that loads all three ICD-10-CM releases (and, apart, one that loads the
default table plus the two other releases' compact code sets, what the outdated check reads).

Run from the repository root (dev environment):
    PYTHONPATH=src python perf/releases.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_LOAD = """
import json, resource, sys, time
from pytest_medcode.codesystems import load_system, release_keys
t = time.perf_counter()
for name, key in json.loads(sys.argv[1]):
    load_system(name, release=key)
for name, key in json.loads(sys.argv[2]):
    release_keys(name, key)
print(json.dumps({"s": time.perf_counter() - t, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_BASE = """
import json, resource
import pytest_medcode.codesystems
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TABLES = [("icd10cm", "2024"), ("icd10cm", "2025"), ("icd10cm", "2026"), ("icd10pcs", "2024"), ("icd10pcs", "2025")]


def _run(cache: str, script: str, *args: str) -> dict[str, float]:
    env = {**os.environ, "MEDCODE_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _tables(cache_parent: str) -> None:
    print("| system | release | cold build (s) | cached load (s) |")
    print("|---|---|---:|---:|")
    for name, key in TABLES:
        with tempfile.TemporaryDirectory(dir=cache_parent) as cache:
            cold = _run(cache, _LOAD, json.dumps([[name, key]]), "[]")["s"]
            cached = min(_run(cache, _LOAD, json.dumps([[name, key]]), "[]")["s"] for _ in range(3))
        print(f"| {name} | {key} | {cold:.2f} | {cached:.2f} |")


def _memory(cache_parent: str) -> None:
    with tempfile.TemporaryDirectory(dir=cache_parent) as cache:
        cm = [["icd10cm", k] for k in ("2024", "2025", "2026")]
        _run(cache, _LOAD, json.dumps(cm), json.dumps(cm))  # fill the cache
        base = _run(cache, _BASE)["rss_mb"]
        one = _run(cache, _LOAD, json.dumps([["icd10cm", "2026"]]), "[]")["rss_mb"]
        three = _run(cache, _LOAD, json.dumps(cm), "[]")["rss_mb"]
        sets = _run(cache, _LOAD, json.dumps([["icd10cm", "2026"]]), json.dumps(cm[:2]))
    print(f"| peak RSS: package imported, no table | {base:.0f} MB |")
    print(f"| default ICD-10-CM table (April 2026) | {one:.0f} MB |")
    print(f"| all three ICD-10-CM tables | {three:.0f} MB (+{three - one:.0f} MB) |")
    print(f"| default table + FY2024/FY2025 code sets (the outdated check) | {sets['rss_mb']:.0f} MB "
          f"(+{sets['rss_mb'] - one:.0f} MB, read in {sets['s']:.2f} s) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("tables", "memory"), default=None, help="one part of the measurement")
    args = parser.parse_args()
    parent = tempfile.mkdtemp(prefix="medcode-releases-perf-")
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if args.only in (None, "tables"):
        _tables(parent)
    if args.only in (None, "memory"):
        _memory(parent)


if __name__ == "__main__":
    main()
