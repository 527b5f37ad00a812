"""Straight-through numbers on real runs, and what they cost: coverage@95 and ECE for ``lookup`` (exact and lay
wording) and for the scripted server (15 % wrong, log-probabilities that follow correctness) on 2,000 ICD-10-CM
cases; the time ``selective_rows`` takes at 74,719 synthetic records; the bytes the section adds to report.html.

    PYTHONPATH=src python perf/straight_through.py [--sample 2000] [--out perf/straight_through.json]
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
from typing import Any

import numpy as np

from pytest_medcode.codesystems import load_system
from pytest_medcode.reports import html
from pytest_medcode.results.selective import selective_rows
from pytest_medcode.runs.folder import load_run

TEST = "def test_code_query(medcode_case, medcode):\n    medcode.check(medcode_case)\n"


def _run(folder: Path, *args: str) -> dict[str, Any]:
    """One pytest session in ``folder`` (gate mode, so wrong codes do not fail it); its summary and seconds."""
    (folder / "test_q.py").write_text(TEST)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "test_q.py", "-q", "-p", "no:cacheprovider",
                           "--medcode-system", "icd10cm", "--medcode-no-similarity", "--medcode-no-cache",
                           "--medcode-max-error-rate", "1", *args], cwd=folder, capture_output=True, text=True,
                          timeout=3600)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    run = folder / "reports" / "latest"
    return {"summary": json.loads((run / "summary.json").read_text()), "seconds": round(elapsed, 1), "run": run,
            "lines": [line for line in proc.stdout.splitlines() if "auto-codes" in line or "ECE" in line]}


def _numbers(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for row in summary["selective"]:
        c95 = row["coverage"]["95"] if row["coverage"] else None
        out.append({"group": f"{row['model']} / {row['system']}" + (f" [{row['variant']}]" if "variant" in row else ""),
                    "n": row["n"], "coverage@95": c95 and c95["value"], "ci": c95 and [c95["low"], c95["high"]],
                    "threshold": c95 and c95["threshold"], "accuracy_auto_coded": c95 and c95["accuracy"],
                    "ece": row["ece"], "aurc": row["aurc"]})
    return out


def _scripted(folder: Path, sample: int) -> dict[str, Any]:
    answers = folder / "answers.json"
    answers.write_text(json.dumps({d: c for c, d in load_system("icd10cm").billable_codes()}))
    server = subprocess.Popen([sys.executable, "-m", "pytest_medcode.testing", "--answers", str(answers),
                               "--wrong-fraction", "0.15", "--seed", "4", "--logprobs"],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = (server.stdout.readline() if server.stdout else "").strip()
        base = url if url.endswith("/v1") else url.rstrip("/") + "/v1"
        return _run(folder, "--model", "openai/m", "--medcode-api-base", base, "--medcode-confidence",
                    "--medcode-sample", str(sample))
    finally:
        server.terminate()
        server.wait(timeout=30)


def _timing(n: int = 74_719) -> float:
    rng = np.random.default_rng(0)
    conf = rng.random(n)
    hit = rng.random(n) < conf
    records = [{"model": "m", "system": "icd10cm", "outcome": "correct" if h else "incorrect", "exact_match": bool(h),
                "confidence": float(c)} for c, h in zip(conf, hit, strict=True)]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        selective_rows(records, seed=0)
        best = min(best, time.perf_counter() - start)
    return best


def _html_bytes(run: Path) -> dict[str, int]:
    """report.html of a run, and the same run's page without any confidence (no section, no explorer column)."""
    loaded = load_run(run)
    summary = dict(loaded.summary or {})
    with_section = html.render(loaded.records, summary, 0)
    plain = [{**r, "confidence": None, "abstained": None} for r in loaded.records]
    without = html.render(plain, {**summary, "selective": []}, 0)
    return {"with": len(with_section.encode()), "without": len(without.encode())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    result: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        lookup_dir, scripted_dir = Path(tmp, "lookup"), Path(tmp, "scripted")
        lookup_dir.mkdir()
        scripted_dir.mkdir()
        lookup = _run(lookup_dir, "--model", "lookup", "--medcode-variant", "exact,lay", "--medcode-sample",
                      str(args.sample))
        scripted = _scripted(scripted_dir, args.sample)
        result["lookup"] = {"numbers": _numbers(lookup["summary"]), "seconds": lookup["seconds"],
                            "terminal": lookup["lines"], "report_html": _html_bytes(lookup["run"])}
        result["scripted"] = {"numbers": _numbers(scripted["summary"]), "seconds": scripted["seconds"],
                              "terminal": scripted["lines"], "report_html": _html_bytes(scripted["run"])}
    result["selective_rows_s_at_74719"] = round(_timing(), 3)
    result["load_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
