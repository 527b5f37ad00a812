"""The ``medcode`` command: look at code tables and run folders without starting pytest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pytest_medcode import __version__


def _cmd_systems(args: argparse.Namespace) -> int:
    from pytest_medcode.codesystems import SYSTEMS, load_system

    for name, spec in SYSTEMS.items():
        if spec.rows is None:
            print(f"{name:12} {spec.title:22} bring your own file: --medcode-codeset {name}=PATH")
            continue
        system = load_system(name)
        print(f"{name:12} {spec.title:22} {len(system.billable_codes()):>7} billable codes  {system.version}")
    return 0


def _cmd_lookup(args: argparse.Namespace) -> int:
    from pytest_medcode.codesystems import load_system

    entry = load_system(args.system).lookup(args.code)
    if entry is None:
        print(f"{args.code}: not a {args.system} code")
        return 1
    print(json.dumps(entry.__dict__, indent=2))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from pytest_medcode.reports.terminal import render_table

    run = Path(args.run_dir)
    summary_path = run / "summary.json" if run.is_dir() else run
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"medcode: cannot read {summary_path}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(render_table(summary["results"])))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medcode", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pytest-medcode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("systems", help="list the code systems and their releases").set_defaults(func=_cmd_systems)
    p = sub.add_parser("lookup", help="look a code up in a system's table")
    p.add_argument("system")
    p.add_argument("code")
    p.set_defaults(func=_cmd_lookup)
    p = sub.add_parser("show", help="print the results table of a run folder")
    p.add_argument("run_dir", nargs="?", default="reports/latest")
    p.set_defaults(func=_cmd_show)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
