"""How many answers of the labelled corpus a version of the parser reads right.

    python perf/answer_corpus.py                 # the working tree's scoring/parsing.py
    python perf/answer_corpus.py --rev 74646d4   # scoring/parsing.py as it was at a commit (the rest as now)

Two rates over tests/data/answer_corpus.jsonl: the answers whose every code is read as labelled (in order,
none missing, none extra), and the answers whose prediction - the first code, the one scored - is right;
then the answers read otherwise, each with its id.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "answer_corpus.jsonl"


def extractor(rev: str | None) -> Callable[[str, str], tuple[str, ...]]:
    if rev is None:
        from pytest_medcode.scoring.parsing import extract_default
    else:
        source = subprocess.run(["git", "show", f"{rev}:src/pytest_medcode/scoring/parsing.py"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
        module = sys.modules[f"parsing_at_{rev}"] = types.ModuleType(f"parsing_at_{rev}")  # its dataclass needs it
        exec(compile(source, f"parsing.py@{rev}", "exec"), module.__dict__)  # the repository's own code
        extract_default = module.extract_default
    return lambda system, text: tuple(extract_default(system, text).codes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=None, help="read with scoring/parsing.py of this git revision")
    args = parser.parse_args(argv)
    read = extractor(args.rev)
    items = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]
    wrong = [(item, read(item["system"], item["answer"])) for item in items]
    wrong = [(item, got) for item, got in wrong if list(got) != item["codes"]]
    mispredicted = sum((got[0] if got else None) != (item["codes"][0] if item["codes"] else None)
                       for item, got in wrong)
    n = len(items)
    right, predicted = n - len(wrong), n - mispredicted
    print(f"{n} answers ({args.rev or 'working tree'}): every code as labelled {right} ({100 * right / n:.1f} %), "
          f"prediction right {predicted} ({100 * predicted / n:.1f} %)")
    for item, got in wrong:
        print(f"  {item['id']}: {item['answer'][:70]!r} -> {list(got)}, labelled {item['codes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
