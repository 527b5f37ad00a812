"""Size and render time of report.html for a full-scale run, and how fast the case explorer works in it.

Builds a synthetic run shaped like the study's largest: 75,000 cases (5 models × ICD-10-CM and ICD-9-CM
× 7,500 codes), answers drawn like real ones (35 % exact, 40 % a sibling code, 12 % a popular wrong code,
5 % a code not in the table, 5 % a sentence with no code, 3 % failed calls; one answer in 100 a 2,000
character essay with markup in it), scored by the real per-case scorer. Then it times
``summarise`` + ``reports.html.render``, writes the page, and reports its size and what part of it is the
explorer's JSON; then renders it again with the explorer's text made beforehand, as the session makes it while
the records arrive, and checks the page is the same. With ``--chromium`` it opens the page in headless
Chromium through the DevTools protocol and times the load and one search typed into the explorer.

Run: PYTHONPATH=src python perf/report_size.py [--per-system 7500] [--models 5] [--out /tmp/report-75k]
     [--chromium]
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pytest_medcode.codesystems import load_system
from pytest_medcode.reports import html
from pytest_medcode.reports.explorer import ExplorerText
from pytest_medcode.results.records import score_record
from pytest_medcode.runs.folder import SCHEMA_VERSION, summarise
from pytest_medcode.vocabulary import ERROR

SYSTEMS = ("icd10cm", "icd9cm")
STATUS = "document.getElementById('explorer-status').textContent"
ESSAY = ("The most appropriate code depends on documentation; <b>consider</b> laterality, encounter type and "
         "</script><script>alert(1)</script> any sequela. ") * 14


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_records(per_system: int, models: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    records: list[dict] = []
    for name in SYSTEMS:
        system = load_system(name)
        codes = system.billable_codes()
        chosen = rng.sample(range(len(codes)), per_system)
        popular = [c for c, _ in rng.sample(codes, 20)]
        for m in range(models):
            for at in chosen:
                code, description = codes[at]
                roll = rng.random()
                siblings = [c for c, _ in codes[max(0, at - 3):at + 4] if c != code]  # neighbours in the table
                if roll < 0.35:
                    text = f"Code: {code}"
                elif roll < 0.75 and siblings:
                    text = f"Code: {rng.choice(siblings)}"
                elif roll < 0.87:
                    text = f"Code: {rng.choice(popular)}"
                elif roll < 0.92:
                    text = f"Code: {code[:-1]}{'Z' if code[-1] != 'Z' else 'Y'}9"
                elif roll < 0.97:
                    text = "I cannot determine a single code from this description without more information."
                else:
                    text = None
                if text is not None and rng.random() < 0.01:
                    text = f"{text}\n{ESSAY}"
                record = {"model": f"model-{m}", "system": name, "code": code, "description": description,
                          "case_id": f"model-{m}-{name}-{code}", "variant": "exact", "cost_usd": None,
                          "answer_chars": None, "raw_answer": None, "error": None}
                if text is None:
                    record.update(outcome=ERROR, error="APIError: 503 upstream overloaded", exact_match=None,
                                  predicted_code=None)
                else:
                    record.update(raw_answer=text, answer_chars=len(text))
                    score_record(record, system, text)
                records.append(record)
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-system", type=int, default=7_500)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/report-75k")
    parser.add_argument("--chromium", action="store_true", help="also time the page in headless Chromium")
    args = parser.parse_args()

    start = time.perf_counter()
    records = build_records(args.per_system, args.models, args.seed)
    print(f"{len(records):,} records built and scored in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    summary = {"schema_version": SCHEMA_VERSION, "run_id": "synthetic-75k", **summarise(records, seed=0)}
    print(f"summarise: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    page = html.render(records, summary)
    render_s = time.perf_counter() - start
    size = len(page.encode("utf-8"))
    block = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', page, re.S)
    data = len(block.group(1).encode("utf-8")) if block else 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(page, encoding="utf-8")
    print(f"report.html: {size / 1e6:.2f} MB ({size:,} bytes), rendered in {render_s:.1f} s; explorer JSON "
          f"{data / 1e6:.2f} MB ({100 * data / size:.0f} %), {data / len(records):.0f} bytes a case; "
          f"peak RSS {rss_mb():,.0f} MB")
    print(f"written to {out / 'report.html'}")
    text = ExplorerText()
    start = time.perf_counter()
    for record in records:  # what the reporting process does as each record arrives
        text.add(record)
    made_s = time.perf_counter() - start
    start = time.perf_counter()
    same = html.render(records, summary, explorer_text=text) == page
    print(f"with the explorer's text made as the records arrived ({made_s:.1f} s over the run): rendered in "
          f"{time.perf_counter() - start:.1f} s at the end, {'the same page' if same else 'A DIFFERENT PAGE'}")
    if args.chromium:
        return browse(out / "report.html")
    return 0


def browse(page: Path) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from devtools import DevTools  # the browser check's DevTools client

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        print("no chromium on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, DevTools(binary, Path(tmp) / "profile", timeout=180) as tab:
        start = time.perf_counter()
        tab.open(page.as_uri(), 1400, 900)
        print(f"chromium: load event after {time.perf_counter() - start:.1f} s; "
              f"{tab.evaluate(STATUS)}")
        # Each key re-filters every case; time the whole typed word, from first key to drawn rows.
        start = time.perf_counter()
        tab.type("#explorer-q", "fracture")
        typed = time.perf_counter() - start
        print(f"chromium: typing 'fracture' (8 keys, each re-filtering all cases): {typed:.2f} s; "
              f"{tab.evaluate(STATUS)}")
        start = time.perf_counter()
        tab.click('button[data-col="5"]')
        print(f"chromium: sort the matches by description: {time.perf_counter() - start:.2f} s")
        heap = tab.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
        if heap:
            print(f"chromium: JS heap in use {heap / 1e6:.0f} MB")
        print(f"chromium: console errors {tab.errors or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
