"""The ``medcode`` command: look at code tables and run folders without starting pytest."""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pytest_medcode import __version__

if TYPE_CHECKING:
    from pytest_medcode.asking.cache import ResponseStore

DESCRIPTION = ("Look at code tables, run folders and the response cache of pytest-medcode without starting "
               "pytest. Exit status: 0 ok, 1 a failed gate or a code not found, 2 bad input.")


def _cmd_systems(args: argparse.Namespace) -> int:
    from pytest_medcode.codesystems import SYSTEMS, load_system

    for name, spec in SYSTEMS.items():
        if spec.rows is None:
            print(f"{name:12} {spec.title:22} bring your own file: --medcode-codeset {name}=PATH")
            continue
        # the default first: what a run asks unless --medcode-release says otherwise
        ordered = sorted(spec.releases, key=lambda r: r.key != spec.default)
        for i, release in enumerate(ordered):
            system = load_system(name, release=release.key)
            option = "" if len(ordered) == 1 else f"  [--medcode-release {name}={release.key}" + (
                ", the default]" if i == 0 else "]")
            print(f"{name if i == 0 else '':12} {spec.title if i == 0 else '':22} "
                  f"{len(system.billable_codes()):>7} billable codes  {system.version}{option}")
    return 0


def _cmd_releases(args: argparse.Namespace) -> int:
    from pytest_medcode.codesystems import SYSTEMS, ReleaseError, release_of

    spec = SYSTEMS.get(args.system.strip().lower())
    if spec is None or len(spec.releases) < 2:
        shown = [n for n, s in SYSTEMS.items() if len(s.releases) > 1]
        print(f"medcode releases: {args.system!r} has no releases to compare; choose from {', '.join(shown)}",
              file=sys.stderr)
        return 2
    ordered = sorted(spec.releases, key=lambda r: r.order)
    try:
        first = release_of(spec.name, args.from_) if args.from_ else ordered[0]
        last = release_of(spec.name, args.to) if args.to else ordered[-1]
    except ReleaseError as exc:
        print(f"medcode releases: {exc}", file=sys.stderr)
        return 2
    if first.order >= last.order:
        print(f"medcode releases: --from {first.key} must be an earlier release than --to {last.key}",
              file=sys.stderr)
        return 2
    steps = ordered[ordered.index(first): ordered.index(last) + 1]
    pairs = [*itertools.pairwise(steps)] + ([(first, last)] if len(steps) > 2 else [])
    return _print_changes(spec.name, pairs, Path(args.out) if args.out else None)


def _print_changes(name: str, pairs: list[Any], out: Path | None) -> int:
    """Counts per pair of releases, and every change into ``out`` (CSV) when given."""
    import csv

    from pytest_medcode.codesystems.changes import changes_between, counts

    rows = []
    print(f"{'from':12} {'to':12} {'added':>7} {'deleted':>7} {'retitled':>8}   (billable: added/deleted/retitled)")
    for old, new in pairs:
        found = changes_between(name, old.key, new.key)
        n, b = counts(found), counts(found, billable_only=True)
        print(f"{old.label:12} {new.label:12} {n['added']:>7,} {n['deleted']:>7,} {n['retitled']:>8,}   "
              f"({b['added']:,}/{b['deleted']:,}/{b['retitled']:,})"
              + (f"  compared on {new.coverage or old.coverage}" if new.covers or old.covers else ""))
        rows += [(old.key, new.key, c.kind, c.code, c.billable, c.old_title or "", c.new_title or "") for c in found]
    if out is not None:
        try:
            with out.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(("from", "to", "change", "code", "billable", "old_title", "new_title"))
                writer.writerows(rows)
        except OSError as exc:
            print(f"medcode releases: --out {out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"{len(rows):,} changes written to {out}")
    return 0


def _cmd_lookup(args: argparse.Namespace) -> int:
    from pytest_medcode.codesystems import SYSTEMS, CodeFileError, load_system

    name = args.system.strip().lower()
    spec = SYSTEMS.get(name)
    if spec is None and not args.codeset:
        print(f"medcode lookup: unknown system {args.system!r}; choose from {', '.join(SYSTEMS)} (or give "
              "your own system's table with --codeset PATH)", file=sys.stderr)
        return 2
    if spec is not None and spec.rows is None and not args.codeset:
        print(f"medcode lookup: {spec.title} descriptors are licensed and not bundled: give your file with "
              "--codeset PATH (CSV, TSV or Parquet with code and description columns)", file=sys.stderr)
        return 2
    try:  # a name that is not built in is the user's own system, read from its table
        system = load_system(name, Path(args.codeset).expanduser() if args.codeset else None)
    except CodeFileError as exc:
        print(f"medcode lookup: --codeset {exc}", file=sys.stderr)
        return 2
    entry = system.lookup(args.code)
    if entry is None:
        print(f"{args.code}: not a code of {system.title}")
        return 1
    print(json.dumps(entry.__dict__, indent=2))
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, with every usage error as one line naming the command (exit 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (--help for usage)\n")


def terminal_width(asked: int | None = None) -> int:
    """``--width``, else the terminal's width, at most the tables' default (as pytest's summary does)."""
    from pytest_medcode.reports.text import DEFAULT_WIDTH

    if asked is not None:
        return asked
    return max(40, min(DEFAULT_WIDTH, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns))


def _cmd_show(args: argparse.Namespace) -> int:
    """The run's tables from its summary.json, read and checked as every reader of a run folder does; a
    cases.parquet beside it that cannot be read is said in one line, not hidden behind good-looking tables."""
    from pytest_medcode.reports.terminal import render_summary
    from pytest_medcode.runs.folder import RunFormatError, load_run, load_summary

    run = Path(args.run_dir)
    summary_path = run / "summary.json" if run.is_dir() else run
    if not summary_path.exists():
        print(f"medcode show: RUN_DIR {summary_path}: no such run folder or file", file=sys.stderr)
        return 2
    try:
        summary = load_summary(summary_path) or {}
        if not isinstance(summary.get("results"), list):
            raise RunFormatError(f"{summary_path}: not a pytest-medcode summary (no results)")
        cases = summary_path.parent / "cases.parquet"
        if cases.exists():
            load_run(cases, columns=())  # the required columns only: a damaged or foreign file fails here
    except RunFormatError as exc:
        print(f"medcode show: {exc}", file=sys.stderr)
        return 2
    print("\n".join(render_summary(summary, terminal_width(args.width), compact=args.quiet)))
    return 0


def _width(value: str) -> int:
    """``--width``: a whole number of columns, 40 or more (a table needs room for its labels)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of columns, got {value!r}") from None
    if number < 40:
        raise argparse.ArgumentTypeError(f"must be at least 40, got {number}")
    return number


def _load_user_systems(summary: dict) -> None:
    """Read the run's own code systems' tables again when they are still there, so the prompt's example code
    of each is known (the example-echo flag in "Most returned codes"); a table that is gone is skipped."""
    from pytest_medcode.codesystems import SYSTEMS, CodeFileError, load_system

    for name, path in ((summary.get("config") or {}).get("codesets") or {}).items():
        if name not in SYSTEMS and Path(path).is_file():
            try:
                load_system(name, Path(path))
            except CodeFileError:
                continue


def _cmd_report(args: argparse.Namespace) -> int:
    """Re-render summary.json's tables, report.md and report.html from cases.parquet."""
    from pytest_medcode.reports.terminal import render_table
    from pytest_medcode.runs.folder import SCHEMA_VERSION, RunFormatError, load_run, summarise, write_run

    try:
        run = load_run(Path(args.run_dir))
    except RunFormatError as exc:
        print(f"medcode report: RUN_DIR {exc}", file=sys.stderr)
        return 2
    summary = dict(run.summary or {"schema_version": SCHEMA_VERSION, "run_id": run.folder.name})
    seed = args.seed if args.seed is not None else int((summary.get("config") or {}).get("seed") or 0)
    _load_user_systems(summary)
    summary.update(summarise(run.records, seed=seed))
    out = Path(args.out) if args.out else run.folder
    problems = write_run(out, run.records, summary, seed)
    print("\n".join(render_table(summary["results"], terminal_width())))
    for problem in problems:
        print(f"medcode report: {problem}", file=sys.stderr)
    print(f"wrote {out / 'cases.parquet'}, {out / 'summary.json'}, {out / 'report.md'}, {out / 'report.html'}")
    return 1 if problems else 0


def _gate_args(args: argparse.Namespace, systems: set[str] | None = None) -> dict[str, Any]:
    """The gate options read as pytest's --medcode-* twins are (the same declarations), by GateSpec field;
    ``systems`` known, the thresholds' scopes are checked too. A bad value: ValueError naming the option."""
    from pytest_medcode.results.options import gate_options, plain

    out = {}
    for opt in gate_options("", systems):
        try:
            out[opt.field] = opt.read(getattr(args, opt.dest), plain)
        except ValueError as exc:
            raise ValueError(f"--{opt.name} {exc}") from None
    return out


def _cmd_compare(args: argparse.Namespace) -> int:
    """The paired comparison of two runs and the gate's verdict: exit 0 pass, 1 fail, 2 bad input."""
    from pytest_medcode.codesystems import SYSTEMS
    from pytest_medcode.reports import straight_through
    from pytest_medcode.reports.verdict import comparison_lines, render_verdict, verdict_dict
    from pytest_medcode.results.gate import evaluate
    from pytest_medcode.runs.folder import RunFormatError, load_run

    option = ""  # the argument being read, named in the error line
    try:
        _gate_args(args)  # the thresholds' shape and metric first; their scopes once the runs are read
        option = "BASE_RUN "
        base = load_run(Path(args.base_run))
        option = "NEW_RUN "
        new = load_run(Path(args.new_run))
        option = ""
        gate = _gate_args(args, {*SYSTEMS, *(str(r.get("system")) for r in (*base.records, *new.records))})
        if gate["threshold_from_baseline"] and all(r.get("confidence") is None for r in base.records):
            raise ValueError("--threshold-from-baseline: the baseline has no confidences (recorded without them), "
                             "so it has no threshold to carry")
    except (ValueError, RunFormatError) as exc:
        # The rules speak pytest's option names; this command's are the same without "medcode-".
        print(f"medcode compare: {option}{str(exc).replace('--medcode-', '--')}", file=sys.stderr)
        return 2
    seed = int(((new.summary or {}).get("config") or {}).get("seed") or 0)
    verdict = evaluate(new.records, base.records, thresholds=gate["fail_under"] + gate["fail_over"],
                       max_drops=gate["max_drops"], alpha=gate["alpha"], max_error_rate=gate["max_error_rate"],
                       seed=seed, threshold_from_baseline=gate["threshold_from_baseline"],
                       carried_threshold=gate["carried_threshold"], threshold_accuracy=gate["threshold_accuracy"],
                       release_mismatch=gate["release_mismatch"])
    if args.json:
        print(json.dumps(verdict_dict(verdict), indent=2, default=str))
    else:
        print(f"baseline: {base.path} ({len(base.records)} cases)")
        print(f"new:      {new.path} ({len(new.records)} cases)")
        print("")
        for name, run in (("baseline", base), ("new", new)):  # straight-through coding, when they have confidences
            rows = straight_through.rows_of(run.records, run.summary or {}, seed)
            for line in [f"{name}:", *straight_through.section_lines(rows, 100)[2:], ""] if rows else ():
                print(line)
        lines = comparison_lines(verdict)
        if lines:
            print("\n".join(lines) + "\n")
        print("\n".join(render_verdict(verdict)))
    return 0 if verdict.passed else 1


def _cmd_cache(args: argparse.Namespace) -> int:
    """Inspect or trim the response cache (the file ``--medcode-cache`` names)."""
    from pytest_medcode.asking.cache import CacheError, ResponseStore

    if args.action == "merge":
        return _cache_merge(args)
    if args.files or args.into:
        print(f"medcode cache {args.action}: FILE arguments and --into are for 'medcode cache merge'; this one reads "
              "--path", file=sys.stderr)
        return 2
    path = Path(args.path)
    if not path.exists():
        print(f"medcode cache: --path {path}: no response cache there (pytest writes it at --medcode-cache)",
              file=sys.stderr)
        return 2
    try:
        return _cache_action(ResponseStore(path), args)
    except CacheError as exc:  # locked by a run, a full disk: one line
        print(f"medcode cache: {exc}", file=sys.stderr)
        return 2


def _cache_merge(args: argparse.Namespace) -> int:
    """Several caches (shards of a run asked on several machines) into one that replays them all."""
    from pytest_medcode.asking.cache import CacheError
    from pytest_medcode.asking.cache_merge import merge_caches
    from pytest_medcode.scoring import score_store

    if not args.files or not args.into:
        print("medcode cache merge: name the caches and where the merge goes: medcode cache merge A.sqlite3 "
              "B.sqlite3 --into C.sqlite3", file=sys.stderr)
        return 2
    try:
        done = merge_caches([Path(f) for f in args.files], Path(args.into), carry=(score_store.TABLE,))
    except CacheError as exc:
        print(f"medcode cache merge: {exc}", file=sys.stderr)
        return 2
    scores = done.carried.get(score_store.TABLE, 0)
    print(f"merged {done.files} file(s) into {done.into}: {done.answers} answers, {done.errors} stored failures, "
          f"{scores} similarity scores")
    return 0


def _cache_action(store: ResponseStore, args: argparse.Namespace) -> int:
    from pytest_medcode.scoring import score_store

    if args.action == "stats":
        stats = store.stats()
        print(f"{stats['path']}: {stats['bytes'] / 1e6:.1f} MB")
        for m in stats["models"]:
            print(f"  {m['model']:40} {m['answers']:>8} answers {m['errors']:>6} errors")
        scores = score_store.counts(store)
        for metric, n in sorted(scores.items()):
            print(f"  {'similarity: ' + metric:40} {n:>8} scores")
        if not stats["models"] and not scores:
            print("  (empty)")
    elif args.action == "prune":
        older = args.older_than_days * 86400 if args.older_than_days is not None else None
        if older is None and not args.errors and args.model is None and not args.scores:
            print("medcode cache prune: say what to remove (--errors, --model NAME, --scores, --older-than-days N)",
                  file=sys.stderr)
            return 2
        if args.scores:  # scores alone; with --older-than-days, only the old ones
            print(f"removed {score_store.prune(store, older)} similarity scores")
        else:
            print(f"removed {store.prune(older, args.errors, args.model)} entries")
            if older is not None and not args.errors and args.model is None:
                print(f"removed {score_store.prune(store, older)} similarity scores")
    else:
        removed = store.prune()
        print(f"removed {removed} entries and {score_store.prune(store)} similarity scores")
    store.close()
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    """The provider batches a cache records (--medcode-batch): list them, or cancel one or all."""
    from pytest_medcode.asking.batch import BatchRejected, cancel, status_lines
    from pytest_medcode.asking.cache import CacheError, ResponseStore
    from pytest_medcode.redaction import redact_run_secrets

    redact_run_secrets(None)  # a provider that echoes the environment's key in a refusal: masked as in a run
    path = Path(args.cache)
    if not path.exists():
        print(f"medcode: no response cache at {path}", file=sys.stderr)
        return 2
    if args.action == "cancel" and not args.all and args.batch_id is None:
        print("medcode batch cancel: name a batch id, or --all", file=sys.stderr)
        return 2
    try:
        store = ResponseStore(path)
        lines = status_lines(store) if args.action == "status" else cancel(store, None if args.all else args.batch_id)
        store.close()
    except (CacheError, BatchRejected) as exc:
        print(f"medcode batch: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _cmd_rescore(args: argparse.Namespace) -> int:
    """Score a run's raw answers again under another profile; writes a new run folder beside it."""
    from pytest_medcode.reports.terminal import render_summary
    from pytest_medcode.runs.rescore import RescoreError, rescore_run

    codesets = {}
    for value in args.codeset:
        name, sep, path = value.partition("=")
        if not sep or not path.strip():
            print(f"medcode rescore: --codeset {value!r}: expected SYSTEM=PATH", file=sys.stderr)
            return 2
        codesets[name.partition(":")[0].strip().lower()] = Path(path.strip()).expanduser()
    try:
        done = rescore_run(
            Path(args.run_dir), args.profile, out=Path(args.out) if args.out else None, codesets=codesets,
            similarity=not args.no_similarity, bertscore_model=args.bertscore_model,
            bertscore_device=args.bertscore_device, seed=args.seed,
        )
    except RescoreError as exc:
        print(f"medcode rescore: {exc}", file=sys.stderr)  # names the option or the run folder
        return 2
    print("\n".join(render_summary(done.summary, terminal_width())))
    for problem in done.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"re-scored {len(done.records)} cases under the {args.profile} profile: {done.folder}")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    """The shards of one run (pytest-split's groups, one folder each) → one run folder: exit 0, 2 bad input."""
    from pytest_medcode.reports.terminal import render_summary
    from pytest_medcode.runs.merge import MergeError, merge_runs

    try:
        done = merge_runs([Path(p) for p in args.shards], Path(args.out))
    except MergeError as exc:
        print(f"medcode merge: {exc}", file=sys.stderr)  # names the offending shard; nothing was written
        return 2
    print("\n".join(render_summary(done.summary, terminal_width())))
    for problem in done.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"merged {len(args.shards)} shard(s), {len(done.records)} cases: {done.folder}")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    """Exact match per model × system over every run under a reports directory: a table and history.html."""
    from pytest_medcode.reports.history import render_terminal
    from pytest_medcode.runs.history import write_history

    root = Path(args.reports_dir).expanduser()
    if not root.is_dir():
        print(f"medcode history: {root}: no such reports directory", file=sys.stderr)
        return 2
    if args.last is not None and args.last < 1:
        print(f"medcode history: --last {args.last}: must be at least 1", file=sys.stderr)
        return 2
    try:
        history, page = write_history(root, Path(args.out).expanduser() if args.out else None)
    except OSError as exc:
        print(f"medcode history: cannot write the page: {exc}", file=sys.stderr)
        return 2
    for problem in history.problems:
        print(f"medcode history: skipped {problem}", file=sys.stderr)
    if not history.runs:
        print(f"medcode history: no run folders under {root}", file=sys.stderr)
        return 2
    print("\n".join(render_terminal(history.runs, args.last)))
    print(f"wrote {page} ({len(history.runs)} runs)")
    return 0


def _cmd_estimate(pytest_args: list[str]) -> int:
    """A run's calls, tokens and cost range without a call: pytest's collection with --medcode-estimate."""
    import pytest

    status = pytest.main([*pytest_args, "--medcode-estimate", "-W", "ignore::pytest.PytestAssertRewriteWarning"])
    return 2 if status == pytest.ExitCode.USAGE_ERROR else int(status)


def build_parser() -> Parser:
    """Every command and argument, each with its help text; the options the plugin has too are its own
    declarations (results/options.py), so their defaults, bounds and choices are the plugin's."""
    from pytest_medcode.results.options import add_options, gate_options, profile_option

    parser = Parser(prog="medcode", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"pytest-medcode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of the commands below; medcode COMMAND --help for its options")
    sub.add_parser("systems", help="list the code systems and their releases").set_defaults(func=_cmd_systems)
    p = sub.add_parser("releases", help="what changed between releases of a system: codes added, deleted and "
                       "retitled")
    p.add_argument("system", help="a system with several releases: icd10cm or icd10pcs")
    p.add_argument("--from", dest="from_", default=None, metavar="RELEASE", help="the earlier release (default: "
                   "the oldest)")
    p.add_argument("--to", default=None, metavar="RELEASE", help="the later release (default: the newest)")
    p.add_argument("--out", default=None, metavar="FILE", help="write every change to FILE (CSV: from, to, "
                   "change, code, billable, old_title, new_title)")
    p.set_defaults(func=_cmd_releases)
    p = sub.add_parser("lookup", help="look a code up in a system's table")
    p.add_argument("system", help="code system: icd9cm, icd9cm-proc, icd10cm or cpt")
    p.add_argument("code", help="the code, in any form a model writes (E11.9, e119, 250.00)")
    p.add_argument("--codeset", default=None, metavar="PATH",
                   help="the system's table file (CSV/TSV/Parquet with code and description; needed for cpt)")
    p.set_defaults(func=_cmd_lookup)
    p = sub.add_parser("show", help="print the results tables of a run folder, as the pytest summary does")
    p.add_argument("run_dir", nargs="?", default="reports/latest",
                   help="run folder or its summary.json (default: reports/latest)")
    p.add_argument("-q", "--quiet", action="store_true", help="one compact table, as pytest -q prints")
    p.add_argument("--width", type=_width, default=None, metavar="COLUMNS",
                   help="widest line (default: the terminal's width, at most 100)")
    p.set_defaults(func=_cmd_show)
    p = sub.add_parser("report", help="re-render summary.json, report.md and report.html from cases.parquet")
    p.add_argument("run_dir", nargs="?", default="reports/latest", help="run folder or its cases.parquet")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed (default: the run's own seed)")
    p.add_argument("--out", default=None, metavar="DIR", help="write the files here instead of the run folder")
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("compare", help="pair two runs' cases and apply the gate (exit 1 when it fails)")
    p.add_argument("base_run", help="baseline run folder or cases.parquet")
    p.add_argument("new_run", help="new run folder or cases.parquet")
    add_options(p.add_argument, gate_options(""))
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser("cache", help="response cache: stats, prune, clear or merge")
    p.add_argument("action", choices=["stats", "prune", "clear", "merge"],
                   help="stats: size and answers per model; prune: remove what the options say; clear: everything; "
                   "merge: FILE... into --into (the first answer of a key kept)")
    p.add_argument("files", nargs="*", metavar="FILE", help="merge: the caches to merge, in order of precedence")
    p.add_argument("--into", default=None, metavar="PATH",
                   help="merge: the merged cache (its own answers, when it exists, come first); written whole")
    p.add_argument("--path", default=".medcode/responses.sqlite3", help="the cache file (--medcode-cache)")
    p.add_argument("--errors", action="store_true", help="prune: failed calls only")
    p.add_argument("--model", default=None, metavar="NAME", help="prune: one model's answers")
    p.add_argument("--scores", action="store_true",
                   help="prune: the similarity scores kept beside the answers (they are computed again when needed)")
    p.add_argument("--older-than-days", type=float, default=None, metavar="N",
                   help="prune: entries older than N days")
    p.set_defaults(func=_cmd_cache)
    p = sub.add_parser("batch", help="provider batches recorded in a response cache (--medcode-batch): status, "
                       "cancel")
    p.add_argument("action", choices=["status", "cancel"],
                   help="status: each recorded batch's state and counts; cancel: ask the provider to stop batches")
    p.add_argument("batch_id", nargs="?", default=None, help="cancel: the batch to cancel")
    p.add_argument("--all", action="store_true", help="cancel: every open batch")
    p.add_argument("--cache", default=".medcode/responses.sqlite3", help="the cache file (--medcode-cache)")
    p.set_defaults(func=_cmd_batch)
    p = sub.add_parser("rescore", help="score a run's raw answers again under another profile (no model calls)")
    p.add_argument("run_dir", nargs="?", default="reports/latest", help="run folder or its cases.parquet")
    add_options(p.add_argument, [profile_option("")], required=True)
    p.add_argument("--out", default=None, help="the new run folder (default: <run_id>-<profile> beside the run)")
    p.add_argument("--codeset", action="append", default=[], metavar="SYSTEM=PATH",
                   help="a code table file (CPT), when the run's own path is gone")
    p.add_argument("--no-similarity", action="store_true", help="skip METEOR/BERTScore")
    p.add_argument("--bertscore-model", default=None, metavar="NAME_OR_PATH", help="BERTScore model")
    p.add_argument("--bertscore-device", default=None, metavar="DEVICE", help="BERTScore device")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed (default: the run's own seed)")
    p.set_defaults(func=_cmd_rescore)
    p = sub.add_parser("merge", help="merge the shards of a run split with pytest-split (--splits N --group K) "
                       "into one run folder, scored as one run")
    p.add_argument("shards", nargs="*", metavar="RUN_DIR", help="each shard's run folder, one per group")
    p.add_argument("--out", required=True, metavar="DIR", help="the merged run folder (new, or an empty folder)")
    p.set_defaults(func=_cmd_merge)
    p = sub.add_parser("history", help="exact match per model and system over all runs; writes history.html")
    p.add_argument("reports_dir", nargs="?", default="reports", help="the reports directory (default: reports)")
    p.add_argument("--last", type=int, default=30, help="runs shown in the terminal (default 30; the page has all)")
    p.add_argument("--out", default=None, help="the page's path (default: REPORTS_DIR/history.html)")
    p.set_defaults(func=_cmd_history)
    p = sub.add_parser("estimate", help="what a run would cost, without asking anything: the same arguments as "
                       "the pytest run, e.g. medcode estimate benchmarks/ --model gpt-4 --medcode-sample all")
    p.add_argument("pytest_args", nargs="*", help="the run's pytest arguments, options included")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["estimate"] and not {"-h", "--help"} & set(argv[1:]):  # pytest parses the rest
        return _cmd_estimate(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
