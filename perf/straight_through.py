"""Straight-through numbers on real runs, and what they cost: coverage@95 and ECE for ``lookup`` (exact and lay
wording) and for the scripted server (15 % wrong, log-probabilities that follow correctness) on 2,000 ICD-10-CM
cases; the time ``selective_rows`` takes at 74,719 synthetic records; the bytes the section adds to report.html.
``--parts rag-local`` (or adding it to the parts) runs ``rag:local:smollm2`` too — the local llama.cpp model given
the 15 nearest codes, whose confidence is the chosen candidate's retrieval score — on 200 ICD-10-CM cases
(``--rag-local-sample``), not 2,000: on a 2-core machine the local model takes seconds a call with the candidates
in its prompt (6.5 s measured: 22 minutes for the 200; perf/README.md).

    PYTHONPATH=src python perf/straight_through.py [--sample 2000] [--parts lookup,scripted,timing,rag-local]
        [--rag-local-sample 200] [--out perf/straight_through.json]
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


PARTS = ("lookup", "scripted", "timing", "rag-local")
#: The local model's settings of the default benchmark (benchmarks/first-run.args): two calls in flight, a long
#: timeout for a loaded machine.
LOCAL_ARGS = ("--medcode-concurrency", "2", "--medcode-timeout", "180")


def _run(folder: Path, *args: str) -> dict[str, Any]:
    """One pytest session in ``folder`` (gate mode, so wrong codes do not fail it); its summary and seconds."""
    (folder / "test_q.py").write_text(TEST)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "test_q.py", "-q", "-p", "no:cacheprovider",
                           "--medcode-system", "icd10cm", "--medcode-no-similarity", "--medcode-no-cache",
                           "--medcode-max-error-rate", "1", *args], cwd=folder, capture_output=True, text=True,
                          timeout=3 * 3600)
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


def _exact_match(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each group's exact match over its answered cases, and how many calls failed (a loaded machine times out)."""
    return [{"group": f"{r['model']} / {r['system']}", "exact_match": (r.get("exact_match") or {}).get("value"),
             "n": r.get("n"), "errors": r.get("errors")} for r in summary["results"]]


def _rag_local(folder: Path, sample: int) -> dict[str, Any]:
    """``rag:local:smollm2`` on ``sample`` ICD-10-CM cases: the local model started by the plugin, as in the
    default benchmark; no --medcode-confidence (the local server is asked for no log-probabilities: the
    confidence is rag:'s chosen candidate's retrieval score)."""
    from pytest_medcode.asking.coders.local import runtime_problem

    problem = runtime_problem("smollm2")
    if problem is not None:
        raise SystemExit(f"rag:local:smollm2 cannot run here: {problem}")
    run = _run(folder, "--model", "rag:local:smollm2", "--medcode-sample", str(sample), *LOCAL_ARGS)
    return {"numbers": _numbers(run["summary"]), "exact_match": _exact_match(run["summary"]),
            "seconds": run["seconds"], "terminal": run["lines"], "sample": sample}


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


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"--parts takes some of {', '.join(PARTS)}, got {text!r}")
    return parts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--parts", type=_parts, default=("lookup", "scripted", "timing"),
                        help=f"what to measure, a comma list of {', '.join(PARTS)} (default: all but rag-local)")
    parser.add_argument("--rag-local-sample", type=int, default=200,
                        help="cases of the rag:local:smollm2 run (the local model: seconds a call)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    result: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        if "lookup" in args.parts:
            Path(tmp, "lookup").mkdir()
            lookup = _run(Path(tmp, "lookup"), "--model", "lookup", "--medcode-variant", "exact,lay",
                          "--medcode-sample", str(args.sample))
            result["lookup"] = {"numbers": _numbers(lookup["summary"]), "seconds": lookup["seconds"],
                                "terminal": lookup["lines"], "report_html": _html_bytes(lookup["run"])}
        if "scripted" in args.parts:
            Path(tmp, "scripted").mkdir()
            scripted = _scripted(Path(tmp, "scripted"), args.sample)
            result["scripted"] = {"numbers": _numbers(scripted["summary"]), "seconds": scripted["seconds"],
                                  "terminal": scripted["lines"], "report_html": _html_bytes(scripted["run"])}
        if "rag-local" in args.parts:
            Path(tmp, "rag-local").mkdir()
            result["rag_local"] = _rag_local(Path(tmp, "rag-local"), args.rag_local_sample)
    if "timing" in args.parts:
        result["selective_rows_s_at_74719"] = round(_timing(), 3)
    result["load_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
