"""Time to open a damaged response cache: detection, salvage and the fresh file, per kind of damage.

    PYTHONPATH=src python perf/salvage.py [--rows 2068 75000] [--old SECONDS]

A cache of N answers (rows shaped like a real run's: a sha256 key, a one-line answer, usage JSON) is
written through ResponseStore, then a copy has pages overwritten the way a failing disk does: a third of
the key index's leaf pages, one table leaf, one interior page below the root, the table's root. Each copy
is opened with ResponseStore (which finds the damage and salvages it); printed are the wall time of that
open, the page reader's own time (``salvage_s``), the rows kept and the warning's count of rows lost.
Where the ``sqlite3`` shell is installed, its ``.recover`` is run on the same copy as an independent
count of what was readable. ``--old SECONDS`` also times the row-by-row SQL salvage this replaced (from
git, killed after SECONDS).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from pytest_medcode.asking.cache import _COLUMNS, ResponseStore, Stored
from pytest_medcode.asking.salvage import salvage

OLD_COMMIT = "74646d4"
OLD_SCRIPT = """
import sys, time, importlib.util
from pathlib import Path
spec = importlib.util.spec_from_file_location("old_salvage", sys.argv[1])
mod = importlib.util.module_from_spec(spec); sys.modules["old_salvage"] = mod; spec.loader.exec_module(mod)
start = time.perf_counter()
found = mod.salvage(Path(sys.argv[2]), tuple(sys.argv[3].split(",")))
print(f"{time.perf_counter() - start:.2f} {len(found.rows)} {found.lost}")
"""


def build(path: Path, rows: int) -> None:
    store = ResponseStore(path)
    batch = []
    for i in range(rows):
        key = hashlib.sha256(str(i).encode()).hexdigest()
        text = f"Code: E11.{i % 10}\nType 2 diabetes mellitus without complications" + " (as asked)" * (i % 5)
        batch.append((key, "openai/gpt-4o", Stored(text, None, {"prompt_tokens": 120 + i % 40,
                                                                 "completion_tokens": 9}, 0.8, 1)))
    store.put_many(batch)
    store.close()


def pages(path: Path) -> dict[str, list[int]]:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        found: dict[str, list[int]] = {"index-leaf": [], "table-leaf": [], "table-interior": [], "table-root": []}
        for name, page, kind, where in db.execute("SELECT name, pageno, pagetype, path FROM dbstat "
                                                  "WHERE name IN ('responses', 'sqlite_autoindex_responses_1') "
                                                  "ORDER BY pageno"):
            if name == "responses":
                found["table-root" if where == "/" else f"table-{'leaf' if kind == 'leaf' else 'interior'}"].append(
                    page)
            elif kind == "leaf":
                found["index-leaf"].append(page)
        return found


def damage(path: Path, numbers: list[int]) -> None:
    size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as fh:
        for number in numbers:
            fh.seek((number - 1) * size)
            fh.write(b"\xa5" * size)


def recover_with_shell(path: Path, out: Path) -> str:
    """What the sqlite3 shell's ``.recover`` makes of the file (it needs a shell built with sqlite_dbpage)."""
    shell = shutil.which("sqlite3")
    if shell is None:
        return "no sqlite3 shell"
    start = time.perf_counter()
    done = subprocess.run([shell, str(path), ".recover"], capture_output=True)
    if done.returncode != 0:
        return f"sqlite3 .recover failed: {done.stderr.decode(errors='replace').strip().splitlines()[0]}"
    subprocess.run([shell, str(out)], input=done.stdout, capture_output=True, check=True)
    elapsed = time.perf_counter() - start
    with sqlite3.connect(out) as db:
        count = db.execute("SELECT count(*) FROM responses").fetchone()[0]
    return f"sqlite3 .recover: {count:,} rows in {elapsed:.2f} s"


def old_salvage(path: Path, limit_s: float, work: Path) -> str:
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:src/pytest_medcode/asking/salvage.py"],
                            capture_output=True, text=True, check=True).stdout
    module = work / "old_salvage.py"
    module.write_text(source)
    try:
        done = subprocess.run([sys.executable, "-c", OLD_SCRIPT, str(module), str(path), ",".join(_COLUMNS)],
                              capture_output=True, text=True, timeout=limit_s, check=True)
    except subprocess.TimeoutExpired:
        return f"still running after {limit_s:.0f} s (stopped)"
    seconds, kept, lost = done.stdout.split()
    return f"{float(seconds):.1f} s, kept {kept}, lost {lost}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[2068, 75000])
    parser.add_argument("--old", type=float, default=0, help="also time the old salvage, up to this many seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for rows in args.rows:
            base = work / f"base-{rows}.sqlite3"
            build(base, rows)
            found = pages(base)
            size = base.stat().st_size / 1e6
            print(f"{rows:,} rows, {size:.1f} MB: {len(found['table-leaf'])} table leaves, "
                  f"{len(found['table-interior'])} interior below the root, {len(found['index-leaf'])} index leaves")
            kinds = {"index pages (1 in 3)": found["index-leaf"][::3], "one table leaf": found["table-leaf"][len(
                found["table-leaf"]) // 2:][:1], "one interior page": found["table-interior"][:1],
                "the table's root": found["table-root"]}
            for kind, numbers in kinds.items():
                if not numbers:
                    continue
                copy = work / f"copy-{rows}.sqlite3"
                for side in work.glob(f"copy-{rows}.sqlite3*"):
                    side.unlink()
                shutil.copy(base, copy)
                damage(copy, numbers)
                shell = recover_with_shell(copy, work / f"shell-{rows}.sqlite3")
                (work / f"shell-{rows}.sqlite3").unlink(missing_ok=True)
                before = ""
                if args.old and kind.startswith("index"):
                    before = f"; old salvage: {old_salvage(copy, args.old, work)}"
                start = time.perf_counter()
                alone = salvage(copy, _COLUMNS)  # the page reader by itself (it changes nothing)
                salvage_s = time.perf_counter() - start
                assert len(alone.rows) <= rows
                start = time.perf_counter()
                with warnings.catch_warnings(record=True) as said:
                    warnings.simplefilter("always")
                    store = ResponseStore(copy)
                elapsed = time.perf_counter() - start
                kept = store.recovered[0] if store.recovered else rows
                store.close()
                lost = next((str(w.message).split("lost ", 1)[1].split(";")[0] for w in said), "nothing")
                print(json.dumps({"rows": rows, "damage": kind, "pages": len(numbers), "open_s": round(elapsed, 2),
                                  "salvage_s": round(salvage_s, 2),
                                  "kept": kept, "lost": lost}) + f"; {shell}{before}", flush=True)


if __name__ == "__main__":
    main()
