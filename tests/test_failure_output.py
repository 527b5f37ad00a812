"""Failure output that stays linear: the first cases in full, the rest tallied, every failure still counted.

Real pytest runs (pytester) of a model that is wrong on every case, against the scripted server.
"""

from __future__ import annotations

import xml.dom.minidom

import pytest

from conftest import BENCHMARK
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.responders import echo_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N = 30


@pytest.fixture
def wrong_run(pytester: pytest.Pytester):
    """A run of ``N`` ICD-10-CM cases whose model answers ``A00.0`` to everything (no case is A00.0)."""
    pytester.makepyfile(test_code_query=BENCHMARK)
    codes = [c for c, _ in load_system("icd10cm").billable_codes()[2000 : 2000 + N]]
    (pytester.path / "codes.csv").write_text("code\n" + "\n".join(codes) + "\n")
    with ScriptedServer(echo_responder("Code: A00.0")) as server:
        base = ["--medcode-system", "icd10cm", "--medcode-codes", "codes.csv", "--medcode-no-similarity",
                "--model", "openai/m", "--medcode-api-base", server.base_url, "--medcode-cache", "c.sqlite3"]
        yield lambda *args: pytester.runpytest(*base, *args)


def failed_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("FAILED ")]


def headers(result: pytest.RunResult) -> list[str]:
    """The FAILURES section's one header per shown failure."""
    return [line for line in result.outlines if line.startswith("_") and "test_code_query[" in line]


def test_default_mode_shows_ten_cases_and_tallies_the_rest(wrong_run, pytester: pytest.Pytester) -> None:
    result = wrong_run("--junitxml", "junit.xml")
    result.assert_outcomes(failed=N)  # every case still fails the run
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert len(failed_lines(result)) == 10
    assert len(headers(result)) == 10
    result.stdout.fnmatch_lines([
        "pytest-medcode: 20 more failing case(s) not listed above (20 wrong code)",
        "  by model · system: openai/m · icd10cm 20",
        "  every case with its answer: report.html and cases.parquet in *reports*",
        "  each still fails the run*only the first 10 are printed*",
        f"*{N} failed*",
    ])
    junit = xml.dom.minidom.parse(str(pytester.path / "junit.xml"))
    assert len(junit.getElementsByTagName("failure")) == N  # JUnit XML lists every failure


def test_last_failed_reruns_every_failure_not_only_those_shown(wrong_run, pytester: pytest.Pytester) -> None:
    wrong_run("-p", "cacheprovider")
    again = wrong_run("-p", "cacheprovider", "--lf")
    again.assert_outcomes(failed=N)
    again.stdout.fnmatch_lines(["run-last-failure: rerun previous 30 failures"])


@pytest.mark.parametrize("more", [["-v"], ["--tb=short"], ["-rf"], ["--medcode-show-failures", "all"]])
def test_asking_for_more_gives_pytests_full_listing(wrong_run, more: list[str]) -> None:
    result = wrong_run(*more)
    result.assert_outcomes(failed=N)
    assert len(failed_lines(result)) == N
    assert "more failing case(s) not listed above" not in result.stdout.str()


def test_a_different_count_and_other_tests_failures_are_always_shown(wrong_run, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_other="def test_unrelated():\n    assert 1 == 2\n")
    result = wrong_run("--medcode-show-failures", "3", "test_code_query.py", "test_other.py")
    result.assert_outcomes(failed=N + 1)
    shown = failed_lines(result)
    assert len(shown) == 4 and any("test_other.py::test_unrelated" in line for line in shown)
    result.stdout.fnmatch_lines(["pytest-medcode: 27 more failing case(s) not listed above (27 wrong code)"])


def test_zero_shows_only_the_tally(wrong_run) -> None:
    result = wrong_run("--medcode-show-failures", "0", "-n", "2")
    result.assert_outcomes(failed=N)
    assert failed_lines(result) == [] and headers(result) == []
    result.stdout.fnmatch_lines([f"pytest-medcode: {N} more failing case(s) not listed above ({N} wrong code)"])


EXPLANATION = ("  description:", "  asked (", "  expected:", "  predicted:", "  raw answer:")


@pytest.mark.parametrize(("columns", "workers"), [(72, "2"), (160, "0")])
def test_explanation_lines_fit_the_terminal_and_keep_their_whole_text_in_the_reports(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, columns: int, workers: str) -> None:
    """A long description and a long raw answer are cut with an ellipsis at the width the tables use (the
    terminal's, at most 100), in one process and from xdist workers; JUnit XML keeps every word."""
    table = load_system("icd10cm")
    code, description = max(table.billable_codes()[:3000], key=lambda pair: len(pair[1]))
    assert len(description) > 100
    answer = "Code: A00.0 " + "because the description reads so " * 8
    pytester.makepyfile(test_code_query=BENCHMARK)
    (pytester.path / "codes.csv").write_text(f"code\n{code}\n")
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("CI", "true")  # pytest keeps the short summary's whole message under CI only
    with ScriptedServer(echo_responder(answer)) as server:
        result = pytester.runpytest_subprocess(
            "--medcode-system", "icd10cm", "--medcode-codes", "codes.csv", "--medcode-no-similarity",
            "--model", "openai/m", "--medcode-api-base", server.base_url, "--medcode-cache", "c.sqlite3",
            "-n", workers, "--junitxml", "junit.xml")
    result.assert_outcomes(failed=1)
    width = min(columns, 100)
    # The FAILURES section and the short summary's lines under "FAILED ..." (that line is pytest's own: it cuts
    # it to the terminal, except under CI).
    lines = [line for line in result.outlines
             if line.startswith(EXPLANATION) or line.startswith("openai/m gave A00.0 for icd10cm ")]
    assert len(lines) == 9, result.outlines
    assert max(map(len, lines)) <= width, [line for line in lines if len(line) > width]
    described = next(line for line in lines if line.startswith("  description:"))
    assert described.endswith("…") and description.startswith(described[len("  description: "):-1])
    assert next(line for line in lines if line.startswith("  raw answer:")).endswith("…")
    failure = xml.dom.minidom.parse(str(pytester.path / "junit.xml")).getElementsByTagName("failure")[0]
    assert description in failure.getAttribute("message") + "".join(n.data for n in failure.childNodes)
