"""A model that knows FY2024 ICD-10-CM, benchmarked against April 2026: how much of what it gets wrong is
outdated (a code FY2024 had and a later release deleted) and how much is made up.

The scripted server (``python -m pytest_medcode.testing``, its own process) answers, for each April 2026
description, the FY2024 code of the same title; where FY2024 has no code of that title, the FY2024 code
sharing the longest prefix with the asked code, a deleted one first (the code the model would have learnt
for the concept). The run asks the codes April 2026 added or retitled since FY2025
(``--medcode-sample changed``) plus a seeded sample of the rest, default profile and paper profile.

Run from the repository root (dev environment):
    PYTHONPATH=src python perf/release_drift.py [--sample 400]
"""

from __future__ import annotations

import argparse
import bisect
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from pytest_medcode.codesystems import load_system, release_keys

ROOT = Path(__file__).resolve().parent.parent


def _shared(a: str, b: str) -> int:
    """How many leading characters two codes share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def fy2024_answers() -> dict[str, str]:
    """April 2026 description → the code an FY2024 model answers (module doc)."""
    old = load_system("icd10cm", release="2024")
    new = load_system("icd10cm")
    by_title = {d: c for c, d in old.billable_codes()}
    current = release_keys("icd10cm", "2026")
    keys = sorted(c.replace(".", "") for c, _ in old.billable_codes())
    out = {}
    for code, title in new.billable_codes():
        if title in by_title:
            out[title] = by_title[title]
            continue
        key = code.replace(".", "")
        i = bisect.bisect_left(keys, key)
        near = [k for k in keys[max(0, i - 30): i + 30] if k[:3] == key[:3]] or keys[max(0, i - 1): i + 1]
        best = max(near, key=lambda k: (_shared(k, key), k not in current))
        out[title] = old.canonical(best)
    return out


def run(base_url: str, folder: Path, *args: str) -> dict:
    subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_code_query.py"), "-q",
                    "-p", "no:cacheprovider", "--model", "openai/fy2024-model", "--medcode-api-base", base_url,
                    "--medcode-system", "icd10cm", "--medcode-no-similarity", "--medcode-no-cache",
                    "--medcode-report-dir", str(folder), "--medcode-show-failures", "0", *args],
                   cwd=folder, capture_output=True, check=False)
    return json.loads((folder / "latest" / "summary.json").read_text())


def _line(label: str, row: dict) -> str:
    def pct(name: str) -> str:
        est = row.get(name)
        if not est or est.get("value") is None:
            return "-"
        return f"{100 * est['value']:.1f}% ({100 * est['low']:.1f}-{100 * est['high']:.1f})"

    return (f"| {label} | {row['n']:,} | {pct('exact_match')} | {pct('fabricated')} | {pct('outdated')} | "
            f"{pct('not_yet_valid')} | {pct('valid_not_billable')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", default="400", help="the seeded sample of all codes (--medcode-sample)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medcode-drift-") as tmp:
        answers = Path(tmp) / "answers.json"
        answers.write_text(json.dumps(fy2024_answers()), encoding="utf-8")
        server = subprocess.Popen([sys.executable, "-m", "pytest_medcode.testing", "--answers", str(answers)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            base_url = server.stdout.readline().strip()
            print("| asked | n | exact match | fabricated | outdated | not yet valid | valid, not billable |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for label, extra in (("codes April 2026 added or retitled since FY2025", ("--medcode-sample", "changed")),
                                 (f"{args.sample} codes drawn from all", ("--medcode-sample", args.sample))):
                for profile in ("default", "paper"):
                    folder = Path(tmp) / f"{extra[1]}-{profile}"
                    folder.mkdir()
                    row = run(base_url, folder, *extra, "--medcode-profile", profile)["results"][0]
                    print(_line(f"{label}, {profile} profile", row))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
