"""Mutation testing of the core: do the fast tests notice when the code is wrong?

Runs mutmut (https://github.com/boxed/mutmut, 3.x) over the modules whose mistakes cost a user a
wrong verdict or wrong money — answer parsing, per-case and document scoring, statistics, the gate,
case selection, the results rows, the cache key, the query engine and its circuit breaker, batches,
preflight, costs, budget and prices — with only the fast, in-process test files that exercise them
(``--list`` shows which). Not part of CI: a full run takes tens of minutes on two cores.

    pip install 'mutmut==3.8.1'          # or: pip install -e '.[mutation]'
    python perf/mutation.py              # every core module; prints the score and the survivors
    python perf/mutation.py gate stats   # some of them
    python perf/mutation.py --max-children 1 --workdir /tmp/mut parsing
    python perf/mutation.py --list                        # the modules, their files and tests
    python perf/mutation.py --summary --workdir /tmp/mut parsing   # the last run's per-module counts again
    python perf/mutation.py --survivors --workdir /tmp/mut parsing # new tests: re-run only what survived

Why mutmut: it forks one warmed-up pytest per mutant (imports paid once) and runs only the tests that
executed the mutated function, so a mutant costs tens of milliseconds, where cosmic-ray starts a
fresh interpreter per mutant (seconds each, with torch imported by the test conftest).

The run happens in a copy (``--workdir``, default ``$TMPDIR/pytest-medcode-mutation``): src/, the
chosen test files and a pyproject.toml that only configures mutmut, so the repository is never
touched. Tests that start pytest in a subprocess (``pytester``) are left out of the copy's collection:
the subprocess would import the unmutated package, and each takes seconds. The gate tests' 1,000-case
lookup run is recorded once, before mutmut starts (``MEDCODE_TEST_LOOKUP_RUN``), instead of once per
mutant run.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Module name -> (source file under src/, mutmut names of the mutants to run, the fast tests that exercise it).
#: Of the cache only the key is core (the SQLite store is exercised by the end-to-end tests instead); of the
#: query engine's module, ``breaker`` is the circuit breaker alone (mutmut names a method ``xǁClassǁmethod``).
MODULES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "parsing": ("pytest_medcode/scoring/parsing.py", "pytest_medcode.scoring.parsing.*",
                ("test_parsing.py", "test_answer_corpus.py", "test_scoring_codes.py")),
    "scoring": ("pytest_medcode/scoring/codes.py", "pytest_medcode.scoring.codes.*",
                ("test_scoring_codes.py", "test_aggregate.py")),
    "stats": ("pytest_medcode/results/stats.py", "pytest_medcode.results.stats.*",
              ("test_stats.py", "test_stats_reference.py", "test_gate.py")),
    "gate": ("pytest_medcode/results/gate.py", "pytest_medcode.results.gate.*",
             ("test_gate.py", "test_pairing.py", "test_verdict.py")),
    "cases": ("pytest_medcode/dataset/cases.py", "pytest_medcode.dataset.cases.*", ("test_cases.py",)),
    "aggregate": ("pytest_medcode/results/aggregate.py", "pytest_medcode.results.aggregate.*",
                  ("test_aggregate.py",)),
    "cache": ("pytest_medcode/asking/cache.py", "pytest_medcode.asking.cache.x_request_key__mutmut_*",
              ("test_cache.py",)),
    "engine": ("pytest_medcode/asking/engine.py", "pytest_medcode.asking.engine.*",
               ("test_querying.py", "test_faults.py")),
    "breaker": ("pytest_medcode/asking/engine.py", "pytest_medcode.asking.engine.xǁCircuitBreakerǁ*",
                ("test_querying.py", "test_faults.py", "test_preflight.py")),
    "batch": ("pytest_medcode/asking/batch.py", "pytest_medcode.asking.batch.*",
              ("test_batch.py", "test_batch_runner.py")),
    "preflight": ("pytest_medcode/asking/preflight.py", "pytest_medcode.asking.preflight.*", ("test_preflight.py",)),
    "costs": ("pytest_medcode/results/costs.py", "pytest_medcode.results.costs.*", ("test_money.py",)),
    "budget": ("pytest_medcode/asking/budget.py", "pytest_medcode.asking.budget.*", ("test_money.py",)),
    "pricing": ("pytest_medcode/asking/pricing.py", "pytest_medcode.asking.pricing.*", ("test_money.py",)),
    "documents": ("pytest_medcode/scoring/code_sets.py", "pytest_medcode.scoring.code_sets.*",
                  ("test_document_scoring.py", "test_documents.py", "test_stats_reference.py")),
    "document-results": ("pytest_medcode/results/document_summary.py", "pytest_medcode.results.document_summary.*",
                         ("test_document_scoring.py", "test_documents.py", "test_stats_reference.py")),
}
#: mutmut's exit codes (mutmut/stats.py) as the statuses it reports.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}

#: Fixtures whose tests are left out of a mutation run (see the module docstring).
SLOW_FIXTURES = ("pytester", "icd9_codes", "icd10_answers")

_DESELECT = f'''

# -- added by perf/mutation.py in the mutation work copy only ------------------------------------
def pytest_collection_modifyitems(config, items):
    """Leave out tests that run pytest in a subprocess or build a 1,000-case run (perf/mutation.py)."""
    slow = {SLOW_FIXTURES!r}
    keep = [item for item in items if not set(getattr(item, "fixturenames", ())) & set(slow)]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
'''


def _mutmut() -> str:
    exe = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if exe is None:
        sys.exit("mutmut is not installed: pip install 'mutmut==3.8.1' (or pip install -e '.[mutation]')")
    return exe


def _with_imported(tests: list[str]) -> list[str]:
    """The test files and the test modules they import helpers from (``from helpers import ...``,
    ``from test_querying import ...``), conftest's own included."""
    found, todo = set(tests), [*tests, "conftest.py"]
    while todo:
        text = (ROOT / "tests" / todo.pop()).read_text(encoding="utf-8")
        for name in re.findall(r"^\s*from (\w+) import", text, flags=re.MULTILINE):
            if f"{name}.py" not in found and name != "conftest" and (ROOT / "tests" / f"{name}.py").is_file():
                found.add(f"{name}.py")
                todo.append(f"{name}.py")
    return sorted(found)


def prepare(workdir: Path, modules: list[str]) -> None:
    """A fresh copy of src/ and the chosen test files, with a mutmut-only pyproject.toml."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    shutil.copytree(ROOT / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    tests = sorted({t for m in modules for t in MODULES[m][2]})
    (workdir / "tests").mkdir()
    for name in ["conftest.py", *_with_imported(tests)]:
        shutil.copy2(ROOT / "tests" / name, workdir / "tests" / name)
    if (ROOT / "tests" / "data").is_dir():  # the tests' data files (the labelled answer corpus)
        shutil.copytree(ROOT / "tests" / "data", workdir / "tests" / "data")
    with open(workdir / "tests" / "conftest.py", "a", encoding="utf-8") as f:
        f.write(_DESELECT)
    only = [f"src/{MODULES[m][0]}" for m in modules]
    selection = [f"tests/{t}" for t in tests]
    (workdir / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {json.dumps(only)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(selection)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-x"]\n'
        "\n[tool.pytest.ini_options]\n"
        'testpaths = ["tests"]\n'
        'filterwarnings = ["ignore::DeprecationWarning"]\n',
        encoding="utf-8",
    )


def record_lookup_run(workdir: Path, env: dict[str, str]) -> Path:
    """The gate tests' 1,000 ICD-10-CM lookup cases, run once with the unmutated copy."""
    folder = workdir / "lookup-run"
    folder.mkdir()
    (folder / "test_codes.py").write_text(
        "def test_code_query(medcode_case, medcode):\n    medcode.check(medcode_case)\n"
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--medcode-no-similarity",
           "--medcode-report-dir", "reports", "--medcode-system", "icd10cm", "--medcode-sample", "1000",
           "test_codes.py"]
    proc = subprocess.run(cmd, cwd=folder, env={**env, "PYTHONPATH": str(workdir / "src")}, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"recording the lookup run failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return (folder / "reports" / "latest").resolve()


def results(workdir: Path, module: tuple[str, str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """(mutant, status) of one module's selected mutants, from mutmut's own record (``<file>.meta``)."""
    meta = json.loads((workdir / "mutants" / "src" / f"{module[0]}.meta").read_text())
    return [(name, STATUS.get(code, "suspicious")) for name, code in sorted(meta["exit_code_by_key"].items())
            if fnmatch.fnmatch(name, module[1])]


def summary(workdir: Path, modules: list[str]) -> list[str]:
    """Per module: killed/total, score and the mutants no test ran; then every mutant not killed."""
    lines = [f"  {'module':10} {'killed':>6}/{'total':<6} {'score':>7}  {'no tests':>8}  other statuses"]
    killed = total = 0
    survivors: list[str] = []
    for module in modules:
        counts: dict[str, int] = {}
        for name, status in results(workdir, MODULES[module]):
            counts[status] = counts.get(status, 0) + 1
            if status not in ("killed", "timeout"):
                survivors.append(f"{name}: {status}")
        n = sum(counts.values())
        k = counts.get("killed", 0) + counts.get("timeout", 0)
        killed, total = killed + k, total + n
        rest = {s: c for s, c in counts.items() if s not in ("killed", "no tests")}
        lines.append(f"  {module:10} {k:6}/{n:<6} {100 * k / max(n, 1):6.1f} %  {counts.get('no tests', 0):8}  {rest}")
    lines.append(f"score: {killed}/{total} mutants killed = {100 * killed / max(total, 1):.1f} %")
    lines.append("not killed (`mutmut show NAME` in the work dir shows each one's diff):")
    lines.extend(f"  {line}" for line in survivors)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pytest-medcode-mutation")
    parser.add_argument("--list", action="store_true", help="list the modules, their source files and tests")
    parser.add_argument("--summary", action="store_true",
                        help="print the per-module summary of the last run in --workdir, without running")
    parser.add_argument("--survivors", action="store_true",
                        help="in --workdir, copy the current tests again and re-run only the mutants the last run "
                             "did not kill (the source must be unchanged since that run)")
    args = parser.parse_args(argv)
    if args.list:
        for name, (source, pattern, tests) in MODULES.items():
            print(f"{name:10} src/{source}  [{pattern}]  tests: {', '.join(tests)}")
        return 0
    modules = args.modules or list(MODULES)
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    if args.summary:
        print("\n".join(summary(args.workdir, modules)))
        return 0
    exe = _mutmut()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the mutated copy must be imported
    env.setdefault("MEDCODE_CACHE_DIR", str(Path(tempfile.gettempdir()) / "pytest-medcode-tests-cache"))
    names = [MODULES[m][1] for m in modules]
    if args.survivors:
        unchanged = all((ROOT / "src" / MODULES[m][0]).read_bytes() == (args.workdir / "src" / MODULES[m][0])
                        .read_bytes() for m in modules)
        if not unchanged:
            sys.exit("the source changed since the last run in --workdir: run without --survivors")
        conftest = (args.workdir / "tests" / "conftest.py").read_text(encoding="utf-8")
        for name in _with_imported(sorted({t for m in modules for t in MODULES[m][2]})):
            shutil.copy2(ROOT / "tests" / name, args.workdir / "tests" / name)
        (args.workdir / "tests" / "conftest.py").write_text(conftest, encoding="utf-8")
        names = [name for m in modules for name, status in results(args.workdir, MODULES[m])
                 if status not in ("killed", "timeout")]
        lookup = args.workdir / "lookup-run" / "reports" / "latest"
        if lookup.exists():
            env["MEDCODE_TEST_LOOKUP_RUN"] = str(lookup.resolve())
        print(f"re-running the {len(names)} mutants not killed by the last run", flush=True)
    else:
        prepare(args.workdir, modules)
        if "gate" in modules or "stats" in modules:
            env["MEDCODE_TEST_LOOKUP_RUN"] = str(record_lookup_run(args.workdir, env))
    started = time.monotonic()
    log = args.workdir / "mutmut-run.log"
    print(f"mutmut run over {', '.join(modules)}; progress in {log}", flush=True)
    with open(log, "w", encoding="utf-8") as out:
        run = subprocess.run([exe, "run", "--max-children", str(args.max_children), *names], cwd=args.workdir,
                             env=env, stdout=out, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - started
    if run.returncode != 0:
        print(f"mutmut run failed (exit {run.returncode}); see {log}", file=sys.stderr)
        return run.returncode
    print(f"\nmodules: {', '.join(modules)}; {elapsed / 60:.1f} min with --max-children {args.max_children}")
    print("\n".join(summary(args.workdir, modules)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
