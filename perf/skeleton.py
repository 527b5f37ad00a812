"""Code-table load times and an offline 2,000-case run with the lookup coder.

- cold build of each bundled table from its source package, and a cached load (a fresh process
  each, so imports count as a user would see them);
- `pytest benchmarks/ --medcode-sample ...` with the lookup coder, 2,000 cases, -n 0 and -n 2,
  against the bare-pytest floor for 2,000 trivial cases.
Run: python perf/skeleton.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOAD = "import time; t=time.perf_counter(); from pytest_medcode.codesystems import load_system; " \
       "s=load_system({name!r}); s.lookup('X'); print(time.perf_counter()-t)"


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    cache = Path(tempfile.mkdtemp(prefix="medcode-tables-"))
    env = {**os.environ, "MEDCODE_CACHE_DIR": str(cache)}
    print("| table | cold build (s) | cached load (s) |\n|---|---:|---:|")
    for name in ("icd9cm", "icd9cm-proc", "icd10cm"):
        cold = float(subprocess.run([sys.executable, "-c", LOAD.format(name=name)], env=env, check=True,
                                    capture_output=True, text=True).stdout)
        warm = min(float(subprocess.run([sys.executable, "-c", LOAD.format(name=name)], env=env, check=True,
                                        capture_output=True, text=True).stdout) for _ in range(3))
        print(f"| {name} | {cold:.2f} | {warm:.2f} |")

    work = Path(tempfile.mkdtemp(prefix="medcode-run-"))
    (work / "benchmarks").mkdir()
    (work / "benchmarks" / "test_code_query.py").write_text((ROOT / "benchmarks" / "test_code_query.py").read_text())
    (work / "test_trivial.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('i', range(2000))\ndef test_trivial(i):\n    assert i >= 0\n")
    # 2,000 cases: 667 per bundled system (2,001), or 2,000 ICD-10-CM codes.
    base = [sys.executable, "-m", "pytest", "benchmarks/", "-q", "-p", "no:cacheprovider",
            "--medcode-system", "icd10cm", "--medcode-sample", "2000"]
    extra = ["--medcode-no-similarity"] if "--medcode-no-similarity" in subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, cwd=work).stdout else []
    rows = []
    for label, args in (("lookup, 2,000 ICD-10-CM cases, -n 0", []), ("lookup, 2,000 cases, -n 2", ["-n", "2"])):
        best = min(timed([*base, *extra, *args], env, work) for _ in range(2))
        rows.append((label + (" (similarity off)" if extra else ""), best))
    if extra:
        rows.append(("lookup, 2,000 cases, -n 0, with METEOR and BERTScore", timed(base, env, work)))
    floor = min(timed([sys.executable, "-m", "pytest", "test_trivial.py", "-q", "-p", "no:cacheprovider"], env, work)
                for _ in range(2))
    rows.append(("bare pytest, 2,000 trivial parametrized tests", floor))
    print("\n| run | wall time (s) |\n|---|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
