"""The options pytest and the ``medcode`` command share take the same values: the same bounds, defaults and
choices, since both add them from one declaration (results/options.py). Driven from the declarations, then
shown on real invocations: pytest through pytester (exit 4), ``medcode`` through its main() (exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pytest_medcode.cli import build_parser, main
from pytest_medcode.plugin.options import GATE, OPTIONS, parse_settings
from pytest_medcode.results import rules
from pytest_medcode.results.options import Option, gate_options, profile_option
from pytest_medcode.scoring import codes, parsing

#: Each shared declaration as the ``medcode`` command has it, with the command that takes it.
SHARED: list[tuple[str, Option]] = [*(("compare", o) for o in gate_options("")), ("rescore", profile_option(""))]
PLUGIN = {opt.name: opt for opt in OPTIONS}


def command_actions(command: str) -> dict[str, argparse.Action]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {s: a for a in commands.choices[command]._actions for s in a.option_strings}


def plugin_twin(opt: Option) -> Option:
    return PLUGIN[f"medcode-{opt.name}"]


def probes(opt: Option) -> list[str]:
    """Values on, just inside and just outside the bounds, and the ones no bound check may let through."""
    number = opt.number
    assert number is not None
    edges = [e for e in (number.low, number.high) if e is not None]
    near = [e + d for e in edges for d in (-1e-9, 0.0, 1e-9)]
    return [*map(repr, near), "-0", "0", "0.05", "0.5", "1", "2", "-1", "nan", "inf", "-inf", "x", ""]


def plugin_accepts(opt: Option, value: str) -> bool:
    try:
        opt.read(value)
    except ValueError:
        return False
    return True


def cli_accepts(opt: Option, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> bool:
    """``medcode compare`` on runs that do not exist: an accepted value gets as far as reading BASE_RUN."""
    try:
        code = main(["compare", str(tmp_path / "base"), str(tmp_path / "new"), f"--{opt.name}={value}"])
    except SystemExit as stop:  # argparse refused it (not a number)
        code = stop.code
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and out == "", (value, err)
    return "BASE_RUN" in err


@pytest.mark.parametrize(("command", "opt"), SHARED, ids=[o.name for _, o in SHARED])
def test_each_shared_option_has_the_same_default_and_choices_in_both(command: str, opt: Option) -> None:
    twin = plugin_twin(opt)
    action = command_actions(command)[f"--{opt.name}"]
    assert (twin.default, twin.choices, twin.number, twin.words) == (opt.default, opt.choices, opt.number, opt.words)
    assert twin.append == opt.append and twin.metavar == opt.metavar
    if opt.append:
        assert action.default == [] and tuple(twin.read(None)) == tuple(opt.read(action.default)) == ()
    elif action.required:  # medcode rescore --profile names the profile every time
        assert action.default is None or action.default == twin.default
    elif opt.flag:  # not given: argparse's False, pytest's None (so the ini twin is read); both read as off
        assert action.default is False and twin.default is None
    else:
        assert action.default == twin.default
    assert tuple(action.choices or ()) == twin.choices


def test_the_declarations_read_results_rules_and_the_profiles_table() -> None:
    gate = {opt.name: opt for opt in GATE}
    alpha, rate = gate["medcode-alpha"], gate["medcode-max-error-rate"]
    assert alpha.default == rules.DEFAULT_ALPHA and rate.default == rules.DEFAULT_MAX_ERROR_RATE
    assert alpha.number is not None and (alpha.number.low, alpha.number.high, alpha.number.above) == (
        0.0, rules.MAX_ALPHA, True)
    assert PLUGIN["medcode-profile"].choices == tuple(parsing.PROFILES) == codes.PROFILES


@pytest.mark.parametrize("opt", [o for _, o in SHARED if o.number is not None], ids=lambda o: o.name)
def test_each_numeric_option_refuses_exactly_the_same_values_in_both(opt: Option, tmp_path: Path, capsys) -> None:
    twin = plugin_twin(opt)
    verdicts = {v: (plugin_accepts(twin, v), cli_accepts(opt, v, tmp_path, capsys)) for v in probes(opt)}
    assert all(plugin == cli for plugin, cli in verdicts.values()), {v: r for v, r in verdicts.items() if r[0] != r[1]}
    assert {True, False} <= {plugin for plugin, _ in verdicts.values()}  # the probes reach both sides


def test_the_shared_defaults_are_what_both_front_ends_apply(pytester: pytest.Pytester) -> None:
    """A gate run with nothing but a threshold: its alpha and error-rate limit are medcode compare's."""
    settings = parse_settings(pytester.parseconfig("--medcode-fail-under", "exact_match=0.1"))
    compare = build_parser().parse_args(["compare", "a", "b", "--fail-under", "exact_match=0.1"])
    assert settings.gate.active and (settings.gate.alpha, settings.gate.max_error_rate) == (
        compare.alpha, compare.max_error_rate) == (rules.DEFAULT_ALPHA, rules.DEFAULT_MAX_ERROR_RATE)
    assert settings.profile == PLUGIN["medcode-profile"].default


#: The same bad value for each front end: pytest's option, medcode's arguments, what both lines say.
BAD = {
    "alpha-above-max": (("--medcode-alpha", "0.7"), ("compare", "{run}", "{run}", "--alpha", "0.7"),
                        "must be above 0"),
    "alpha-zero": (("--medcode-alpha", "0"), ("compare", "{run}", "{run}", "--alpha", "0"), "0: must be above 0"),
    "error-rate-above-one": (("--medcode-max-error-rate", "1.5"),
                             ("compare", "{run}", "{run}", "--max-error-rate", "1.5"), "must be between 0"),
    "threshold-shape": (("--medcode-fail-under", "bogus"), ("compare", "{run}", "{run}", "--fail-under", "bogus"),
                        "'bogus': expected METRIC=LIMIT"),
    "profile-unknown": (("--medcode-profile", "authors"), ("rescore", "{run}", "--profile", "authors"), "'authors'"),
}


@pytest.mark.parametrize("name", BAD)
def test_the_same_bad_value_is_one_line_from_both(name: str, pytester: pytest.Pytester, capsys) -> None:
    plugin_args, cli_args, said = BAD[name]
    result = pytester.runpytest("-p", "no:cacheprovider", *plugin_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: {plugin_args[0]} ") and said in errors[0], errors
    assert plugin_args[1] in errors[0]
    capsys.readouterr()
    try:
        code = main([a.format(run=pytester.path / "nowhere") for a in cli_args])
    except SystemExit as stop:  # argparse's own refusal (a choice)
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"medcode {cli_args[0]}: "), err
    assert said in err and cli_args[-2] in err and cli_args[-1] in err, err


def test_the_record_keeps_its_keys_and_their_order(pytester: pytest.Pytester) -> None:
    """summary.json's ``config``: derived from the Settings fields, with the keys reports have always had."""
    settings = parse_settings(pytester.parseconfig(
        "--medcode-api-base", "http://user:secret@127.0.0.1:9/v1", "--medcode-temperature", "0.3"))
    record = settings.to_dict()
    assert list(record) == [
        "models", "systems", "sample", "seed", "codes_file", "codesets", "prompt", "temperature", "max_tokens",
        "api_base", "timeout", "attempts", "max_wait", "concurrency", "cache", "rpm", "retry_errors", "gate",
        "rag_k", "verify_rounds", "variants", "temperatures", "repeats", "confidence", "coverage_targets", "profile",
        "bertscore_model",
        "bertscore_device", "similarity", "preflight", "circuit_breaker", "documents_file", "document_sample",
        "prices", "max_cost", "releases", "router",
    ]
    assert "secret" not in str(record["api_base"]) and record["temperatures"] == [0.3]
    assert record["releases"] == {"icd10cm": "2026", "icd9cm": "v32", "icd9cm-proc": "v32"}  # the defaults
    assert record["cache"] == str(settings.cache) and record["gate"] == settings.gate.to_dict()
    assert record["models"] == ["lookup"] and record["codes_file"] is None and record["prices"] == {}
