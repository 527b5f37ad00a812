"""The ``medcode`` command on real run folders: ``report`` re-renders, ``compare`` gates."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_medcode.cli import build_parser, main
from pytest_medcode.codesystems import load_system
from pytest_medcode.paths import cache_root
from pytest_medcode.runs import folder as files
from pytest_medcode.runs.folder import load_run
from pytest_medcode.scoring.codes import code_metrics
from pytest_medcode.testing.responders import wrong_code

ENV = {**os.environ, "MEDCODE_CACHE_DIR": str(cache_root())}


@pytest.fixture(scope="module")
def base_run(lookup_run_folder: Callable[..., Path]) -> Path:
    """A real run: 300 ICD-10-CM cases answered by the lookup coder."""
    return lookup_run_folder("--medcode-system", "icd10cm", "--medcode-sample", "300")


def spoil(record: dict[str, Any]) -> dict[str, Any]:
    bad = wrong_code(record["code"])
    metrics = code_metrics(load_system(record["system"]), record["code"], bad)
    return {**record, **metrics, "predicted_code": bad, "raw_answer": f"Code: {bad}", "outcome": "incorrect"}


@pytest.fixture(scope="module")
def worse_run(base_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same cases, 10% of them answered wrong, written as the plugin writes a run folder."""
    folder = tmp_path_factory.mktemp("worse-run")
    run = load_run(base_run)
    worse = [spoil(r) if i % 10 == 0 else r for i, r in enumerate(run.records)]
    files.write_cases(worse, folder / "cases.parquet")
    shutil.copy(base_run / "summary.json", folder / "summary.json")
    return folder


def test_compare_a_run_with_itself_passes(base_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(base_run), str(base_run)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "medcode gate PASSED: all 2 checks passed"  # 300 cases: a 2.3-point drop would show
    assert any(line.startswith("lookup / icd10cm  exact_match  300") and line.endswith("ok") for line in out)


def test_compare_a_worse_run_fails_with_the_paired_test(worse_run: Path, base_run: Path, capsys) -> None:
    assert main(["compare", str(base_run), str(worse_run), "--max-drop", "exact_match=2pp"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "exact_match  300" in line)
    assert all(part in row for part in ("100.0%", "90.0%", "-10.0 pp", "30/0", "2.0 pp", "REGRESSED"))
    last = out.strip().splitlines()[-1]
    assert last.startswith("medcode gate FAILED: exact_match lookup / icd10cm: exact match dropped 10.0 pp")
    assert "McNemar exact p = 1.9e-09 < 0.05" in last
    # A wide enough margin lets the same drop through.
    assert main(["compare", str(base_run), str(worse_run), "--max-drop", "exact_match=15pp"]) == 0


def test_compare_as_json_with_thresholds(worse_run: Path, base_run: Path, capsys) -> None:
    code = main(["compare", str(base_run), str(worse_run), "--json", "--max-drop", "digit_match=0.5pp",
                 "--fail-under", "exact_match=0.95", "--fail-over", "fabricated=0.5"])
    verdict = json.loads(capsys.readouterr().out)
    assert code == 1 and verdict["passed"] is False
    kinds = {(c["kind"], c["metric"]): c["passed"] for c in verdict["checks"]}
    assert kinds == {("errors", "error_rate"): True, ("threshold", "exact_match"): False,
                     ("threshold", "fabricated"): True, ("regression", "digit_match"): False}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-drop", "exact_match=2%"], "write percentage points, e.g. 2pp"),
        (["--fail-under", "fabricated=0.1"], "lower-is-better"),
        (["--alpha", "1.5"], "--alpha 1.5: must be above 0 and at most 0.5"),
        (["--alpha", "0.7"], "--alpha 0.7: must be above 0 and at most 0.5"),  # --medcode-alpha's bounds
        (["--max-error-rate", "-1"], "--max-error-rate -1.0: must be between 0 and 1"),
        (["--fail-under", "bogus"], "--fail-under 'bogus': expected METRIC=LIMIT"),
        (["--fail-over", "exact_match=0.5"], "--fail-over 'exact_match=0.5': exact_match is higher-is-better; "
                                             "limit it with --fail-under exact_match=0.5"),
        (["--max-drop", "x=1"], "--max-drop 'x=1': unknown metric 'x'"),
    ],
)
def test_compare_bad_input_exits_2_with_one_line(base_run: Path, capsys, args: list[str], message: str):
    assert main(["compare", str(base_run), str(base_run), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("medcode compare: ") and message in err


def test_compare_a_missing_run(base_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path / "gone"), str(base_run)]) == 2
    assert "no such run folder or file" in capsys.readouterr().err


def test_report_rerenders_the_run_folder(base_run: Path, tmp_path: Path, capsys) -> None:
    folder = Path(shutil.copytree(base_run, tmp_path / "run"))
    before = json.loads((folder / "summary.json").read_text())
    (folder / "report.html").unlink()
    (folder / "report.md").unlink()
    (folder / "summary.json").write_text(json.dumps({**before, "results": [], "n_cases": 0}))
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "lookup  icd10cm  300   100.0% (98.7–100.0)" in out and "report.html" in out
    after = json.loads((folder / "summary.json").read_text())
    assert after["results"] == before["results"] and after["n_cases"] == 300
    assert after["config"] == before["config"] and after["gate"] == before["gate"]
    assert (folder / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "## Exact match, % (95% CI)" in (folder / "report.md").read_text()


def test_report_from_a_bare_parquet_into_another_folder(base_run: Path, tmp_path: Path, capsys) -> None:
    shutil.copy(base_run / "cases.parquet", tmp_path / "cases.parquet")
    out = tmp_path / "out"
    assert main(["report", str(tmp_path / "cases.parquet"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema_version"] == files.SCHEMA_VERSION and summary["n_cases"] == 300
    assert (out / "report.html").exists() and (out / "report.md").exists()
    assert not (tmp_path / "report.html").exists()


def test_report_of_an_unreadable_run(tmp_path: Path, capsys) -> None:
    (tmp_path / "cases.parquet").write_text("nope")
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("medcode report: RUN_DIR ")


def test_the_installed_command(worse_run: Path, base_run: Path) -> None:
    """``medcode compare`` as CI calls it: its own process, exit status 1 on a regression."""
    command = shutil.which("medcode", path=str(Path(sys.executable).parent)) or shutil.which("medcode")
    argv = [command] if command else [sys.executable, "-m", "pytest_medcode.cli"]
    proc = subprocess.run([*argv, "compare", str(base_run), str(worse_run)], capture_output=True, text=True,
                          env=ENV, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("medcode gate FAILED")


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["lookup", "icd11", "E11.9"], 2, "medcode lookup: unknown system 'icd11'; choose from icd9cm, icd9cm-proc, "
                                          "icd10cm, cpt, icd10pcs (or give your own system's table with --codeset "
                                          "PATH)"),
        (["lookup", "cpt", "99213"], 2, "medcode lookup: CPT descriptors are licensed and not bundled: give your "
                                        "file with --codeset PATH (CSV, TSV or Parquet with code and description "
                                        "columns)"),
        (["lookup", "cpt", "99213", "--codeset", "/nonexistent/cpt.csv"], 2,
         "medcode lookup: --codeset /nonexistent/cpt.csv: no such file"),
    ],
)
def test_lookup_bad_input_is_one_line(args: list[str], status: int, message: str, capsys) -> None:
    assert main(args) == status
    out, err = capsys.readouterr()
    assert (out, err.strip().splitlines()) == ("", [message])


def test_lookup_reads_any_spelling_and_names_the_system_when_a_code_is_not_in_it(tmp_path: Path, capsys) -> None:
    assert main(["lookup", "ICD10CM", "e119"]) == 0
    assert json.loads(capsys.readouterr().out)["code"] == "E11.9"
    assert main(["lookup", "icd10cm", "E11.99"]) == 1
    assert capsys.readouterr().out == "E11.99: not a code of ICD-10-CM\n"
    cpt = tmp_path / "cpt.csv"
    cpt.write_text("code,description\n99213,Office visit\n")
    assert main(["lookup", "cpt", "99213", "--codeset", str(cpt)]) == 0
    assert json.loads(capsys.readouterr().out)["description"] == "Office visit"


# -- help and usage errors ----------------------------------------------------------------------------------

def test_every_command_and_argument_has_help(capsys) -> None:
    parser = build_parser()
    top = parser.format_help()
    assert "``" not in top and "medcode" in top
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) >= {"systems", "lookup", "show", "report", "compare", "cache", "rescore"}
    listed = {c.dest for c in commands._choices_actions}
    assert listed == set(commands.choices)  # each command has its one-line help in the top-level help
    assert all(c.help for c in commands._choices_actions)
    for name, sub in commands.choices.items():
        missing = [a.dest for a in sub._actions if not a.help and not isinstance(a, argparse._HelpAction)]
        assert missing == [], f"medcode {name}: no help for {missing}"
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: medcode {name}") and "``" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "medcode: the following arguments are required: COMMAND"),
        (["frobnicate"], "medcode: argument COMMAND: invalid choice: 'frobnicate'"),
        (["compare"], "medcode compare: the following arguments are required: base_run, new_run"),
        (["compare", "a", "b", "--alpha", "x"], "medcode compare: argument --alpha: invalid float value: 'x'"),
        (["show", "--width", "10"], "medcode show: argument --width: must be at least 40, got 10"),
        (["cache", "shrink"], "medcode cache: argument action: invalid choice: 'shrink'"),
        (["rescore", "--profile", "authors"], "medcode rescore: argument --profile: invalid choice: 'authors'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(message), err


def test_compare_of_runs_that_share_no_codes_says_so(base_run: Path, tmp_path: Path, capsys) -> None:
    """Same model and system, other codes (another seed): not "not in the baseline" but "share no codes"."""
    records = load_run(base_run).records
    files.write_cases(records[:150], tmp_path / "base" / "cases.parquet")
    files.write_cases(records[150:], tmp_path / "new" / "cases.parquet")
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "new")]) == 1
    out = capsys.readouterr().out
    assert "share no codes" in out and "not in the baseline" not in out
    # Two models; one shares its codes with the baseline, the other does not: the warning names it.
    other = [{**r, "model": "other"} for r in records]
    files.write_cases(records[:150] + other[:150], tmp_path / "base2" / "cases.parquet")
    files.write_cases(records[:150] + other[150:], tmp_path / "new2" / "cases.parquet")
    assert main(["compare", str(tmp_path / "base2"), str(tmp_path / "new2")]) == 0
    out = capsys.readouterr().out
    assert "warning: other / icd10cm: the baseline has it but no case in common with this run (they share no " \
           "codes)" in out
    assert "not in the baseline" not in out


def test_show_fits_the_width_and_quiet_prints_one_table(base_run: Path, capsys) -> None:
    assert main(["show", str(base_run), "--width", "60"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 60 and "Error analysis: lookup" in lines
    assert main(["show", str(base_run), "-q", "--width", "100"]) == 0
    quiet = capsys.readouterr().out.splitlines()
    assert quiet[0].split()[:4] == ["model", "system", "n", "exact"] and len(quiet) == 3
    assert quiet[2].startswith("lookup  icd10cm  300   100.0% (98.7–100.0)") and "errors" not in quiet[0]


def test_show_of_a_missing_run_names_it(tmp_path: Path, capsys) -> None:
    assert main(["show", str(tmp_path / "gone")]) == 2
    assert capsys.readouterr().err == f"medcode show: RUN_DIR {tmp_path / 'gone'}: no such run folder or file\n"


def test_show_of_a_run_whose_cases_are_broken_says_so_and_exits_2(base_run: Path, tmp_path: Path, capsys) -> None:
    """The summary alone would print fine tables; a damaged cases.parquet beside it is not hidden."""
    folder = tmp_path / "run"
    shutil.copytree(base_run, folder)
    (folder / "cases.parquet").write_bytes(b"PAR1 this is not a parquet file")
    assert main(["show", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"medcode show: {folder / 'cases.parquet'}: not a readable Parquet file"), err


def test_show_checks_the_summary_as_every_reader_of_a_run_folder_does(base_run: Path, tmp_path: Path, capsys):
    """The schema version check of runs/folder.load_summary: a summary from another format is refused."""
    folder = tmp_path / "run"
    shutil.copytree(base_run, folder)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    (folder / "summary.json").write_text(json.dumps({**summary, "schema_version": 999}), encoding="utf-8")
    assert main(["show", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "summary schema version 999, this pytest-medcode reads version" in err, err
    assert main(["show", str(folder / "summary.json")]) == 2  # the summary file itself, checked alike
    assert "summary schema version 999" in capsys.readouterr().err


@pytest.mark.parametrize("alpha", ["-0.1", "0", "1e-9", "0.05", "0.5", "0.5000001", "0.7", "0.999", "1", "nan"])
def test_compare_accepts_exactly_the_alpha_the_plugin_accepts(alpha: str, tmp_path: Path, capsys) -> None:
    from pytest_medcode.plugin.options import _gate

    gate_options = ("medcode_fail_under", "medcode_fail_over", "medcode_baseline", "medcode_max_drop",
                    "medcode_alpha", "medcode_max_error_rate")
    try:
        _gate({**dict.fromkeys(gate_options), "medcode_alpha": alpha})
        plugin_accepts = True
    except pytest.UsageError:
        plugin_accepts = False
    # The runs do not exist: an accepted alpha gets as far as reading BASE_RUN.
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "new"), "--alpha", alpha]) == 2
    err = capsys.readouterr().err
    assert ("--alpha" not in err) == plugin_accepts, err


def test_the_commands_defaults_and_choices_are_the_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read from results/rules and the profiles table when the parser is built, never copied as literals."""
    from pytest_medcode.results import rules
    from pytest_medcode.scoring import parsing

    monkeypatch.setattr(rules, "DEFAULT_ALPHA", 0.01)
    monkeypatch.setattr(rules, "DEFAULT_MAX_ERROR_RATE", 0.2)
    monkeypatch.setattr(rules, "DEFAULT_MAX_DROP", "exact_match=3pp")
    monkeypatch.setattr(parsing, "PROFILES", {**parsing.PROFILES, "strict": parsing.extract_default})
    parser = build_parser()
    compare = parser.parse_args(["compare", "a", "b"])
    assert (compare.alpha, compare.max_error_rate) == (0.01, 0.2)
    assert parser.parse_args(["rescore", "--profile", "strict"]).profile == "strict"
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    shown = " ".join(commands.choices["compare"].format_help().split())
    assert "(default exact_match=3pp)" in shown and "at most 0.5 (default 0.01)" in shown
