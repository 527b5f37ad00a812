"""What a person reads in the terminal: every summary line within the width pytest reports (at most 100),
tables aligned whatever the model names' lengths, ``-q`` one compact table, and the default benchmark that
`make benchmark` runs (an offline LLM beside the tool-augmented coders)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from conftest import BENCHMARK
from pytest_medcode.plugin.options import parse_settings
from pytest_medcode.reports.terminal import render_table
from pytest_medcode.reports.text import DEFAULT_WIDTH, aligned, fitted
from pytest_medcode.testing.responders import Request
from pytest_medcode.testing.server import ScriptedServer

REPO = Path(__file__).resolve().parents[1]
LONG = "openai/a-rather-long-model-name-for-the-width-check-2026-preview"  # 63 characters
SHORT = "openai/m"


def section(text: str) -> list[str]:
    """The pytest-medcode part of a run's output: from its header to the run folder line (the header
    itself is pytest's separator, drawn across the whole terminal like pytest's own)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ pytest-medcode =+", line))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("run folder: "))
    return lines[start + 1:end + 1]


def blocks(lines: list[str]) -> list[list[str]]:
    """Each table block of ``lines``: the header, its rule (dashes and double spaces) and the rows under it."""
    out = []
    for i, line in enumerate(lines):
        if i and line and set(line) <= {"-", " "} and "--" in line:
            rows = []
            for row in lines[i + 1:]:
                if not row.strip() or row.startswith(("run folder: ", "model calls: ", "failed calls of ")):
                    break
                rows.append(row)
            out.append([lines[i - 1], line, *rows])
    return out


def assert_aligned(block: list[str]) -> None:
    """Every line of a table block puts its column gaps where the rule has them: two spaces between columns,
    each cell padded to the column's width."""
    header, rule, *rows = block
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    for line in (header, *rows):
        assert len(line) <= len(rule), (line, rule)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert line[end:start] == "  " or not line[end:].strip(), (line, rule)


# -- the printer ------------------------------------------------------------------------------------------

def test_a_table_wider_than_the_width_is_stacked_with_its_labels_repeated() -> None:
    headers = ["model", "system", *(f"metric {i}" for i in range(12))]
    rows = [[name, system, *(f"{i}{j}.5% (1.0–99.0)" for j in range(12))]
            for i, (name, system) in enumerate([(LONG, "icd10cm"), (SHORT, "icd9cm-proc")])]
    assert max(map(len, aligned(headers, rows, 2))) > 200  # the problem: one very wide block
    for width in (100, 72, 50):
        lines = fitted(headers, rows, 2, width)
        assert max(map(len, lines)) <= width
        found = blocks(lines)
        assert len(found) > 1  # stacked
        for block in found:
            assert_aligned(block)
            assert block[0].startswith("model")  # the labels open every block
        shown = " ".join(lines)
        assert all(f"metric {i}" in shown for i in range(12))  # no column lost
        assert all(f"1{j}.5% (1.0–99.0)" in shown for j in range(12))
    narrow = fitted(headers, rows, 2, 50)
    assert any("…" in line for line in narrow)  # the long name is cut in the middle, both ends kept
    assert any(line.startswith("openai/") and "…" in line and "preview" in line.split()[0] for line in narrow)


def test_a_table_that_fits_is_drawn_as_before() -> None:
    headers, rows = ["model", "n"], [["lookup", "3"], [SHORT, "12"]]
    assert fitted(headers, rows, 1, 100) == aligned(headers, rows, 1)


# -- real runs --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory):
    """One run folder: a long and a short model name (the scripted server), lookup, two systems, two
    description variants, METEOR and BERTScore on. Reused by the narrower and the quiet runs (the cache)."""
    return tmp_path_factory.mktemp("wide")


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, folder: Path, server: ScriptedServer,
        columns: int, *extra: str) -> pytest.RunResult:
    """A real pytest session in a terminal ``columns`` wide (pytest reads $COLUMNS)."""
    (folder / "test_code_query.py").write_text(BENCHMARK)
    args = ["--model", LONG, "--model", SHORT, "--model", "lookup", "--medcode-api-base", server.base_url,
            "--medcode-system", "icd10cm,icd9cm", "--medcode-sample", "3", "--medcode-variant", "exact,typo",
            "--medcode-cache", str(folder / "cache.sqlite3"), "--medcode-report-dir", str(folder / "reports"),
            "-p", "no:cacheprovider", "--rootdir", str(folder), str(folder / "test_code_query.py"), *extra]
    monkeypatch.setenv("COLUMNS", str(columns))
    return pytester.runpytest(*args)


def answer(request: Request) -> str:
    """A poor coder: the prompt's own example code for every description (the study's echo)."""
    return "Code: M24.131" if "ICD10CM" in request.last_user_message else "Code: 045.10"


def test_every_summary_line_fits_the_terminal_and_tables_stay_aligned(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, wide_run: Path) -> None:
    with ScriptedServer(answer) as server:
        wide = run(pytester, monkeypatch, wide_run, server, 200)
        narrow = run(pytester, monkeypatch, wide_run, server, 72, "-v", "--medcode-no-similarity")
    for result, width in ((wide, DEFAULT_WIDTH), (narrow, 72)):
        assert "Traceback" not in result.stdout.str() + result.stderr.str()
        lines = section(result.stdout.str())
        # The run folder's path is kept whole, to copy; every other line fits.
        too_wide = [line for line in lines if len(line) > width and not line.startswith("run folder: ")]
        assert not too_wide, too_wide
        tables = blocks(lines)
        assert len(tables) >= 5
        for block in tables:
            assert_aligned(block)
    wide_lines = section(wide.stdout.str())
    # The first table tells the study's story: exact match, fabricated and example echo with intervals.
    story = next(b for b in blocks(wide_lines) if "example echo (95% CI)" in b[0])
    assert story[0].startswith("model") and wide_lines.index(story[0]) < wide_lines.index("Exact match, % (95% CI)")
    echo = next(row for row in story if row.startswith(SHORT) and " icd10cm " in row and " exact " in row)
    assert re.search(r"100\.0% \(\d", echo.split(" exact ", 1)[1]), story  # every answer is the example
    # METEOR / BERTScore: model and metric are two padded columns, the metric starts in one place.
    start = wide_lines.index(next(line for line in wide_lines if line.startswith("METEOR / BERTScore, mean")))
    similarity = next(b for b in blocks(wide_lines[start:]))
    columns = {row.index("METEOR") if "METEOR" in row else row.index("BERTScore") for row in similarity[2:]}
    assert len(columns) == 1, similarity
    assert any(row.startswith("openai/a-") for row in similarity[2:])
    # -v shows everything: the study's tables and the pivots are all there in the narrow terminal.
    narrow_text = "\n".join(section(narrow.stdout.str()))
    for title in ("Exact match, % (95% CI)", "Error analysis: ICD-10-CM", "Error analysis: ICD-9-CM",
                  "exact match by variant", "Most returned codes"):
        assert title in narrow_text


def test_quiet_prints_one_compact_table_and_the_run_folder(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, wide_run: Path) -> None:
    with ScriptedServer(answer) as server:
        result = run(pytester, monkeypatch, wide_run, server, 200, "-q", "--medcode-no-similarity")
    lines = section(result.stdout.str())
    tables = blocks(lines)
    headers = " ".join(" ".join(b[0].split()[3:]) for b in tables)  # after model, system, variant
    assert headers.split() == ["n", "exact", "match", "(95%", "CI)", "fabricated", "(95%", "CI)", "example",
                               "echo", "(95%", "CI)"]  # one table: its columns, stacked once each (no failed call)
    for block in tables:
        assert_aligned(block)
        assert len(block) == 2 + 3 * 2 * 2  # three models × two systems × two variants
    assert lines[-1].startswith("run folder: ") and Path(lines[-1][len("run folder: "):]).is_dir()
    text = "\n".join(lines)
    assert "Error analysis" not in text and "model calls:" not in text and "METEOR" not in text
    assert max(map(len, lines)) <= DEFAULT_WIDTH


# -- the default benchmark ------------------------------------------------------------------------------

def test_make_benchmark_runs_an_offline_llm_beside_the_tool_augmented_coders(pytester: pytest.Pytester) -> None:
    """`make benchmark` reads benchmarks/first-run.args: a raw LLM (local:smollm2) first, then rag: over the
    same model and lookup; a small sample of two systems; no key, no network. The configuration, not the
    speed (perf/README.md has the timings)."""
    args_file = REPO / "benchmarks" / "first-run.args"
    makefile = (REPO / "Makefile").read_text()
    target = makefile.split("\nbenchmark:", 1)[1].split("\n\n", 1)[0]
    assert "@benchmarks/first-run.args" in target
    config = pytester.parseconfig(f"@{args_file}")
    settings = parse_settings(config)
    assert settings.models == ("local:smollm2", "rag:local:smollm2", "lookup")
    assert settings.api_base is None  # nothing leaves the machine
    assert set(settings.systems) == {"icd10cm", "icd9cm"} and settings.sample is not None
    assert len(settings.systems) * settings.sample <= 40  # small enough for a first run on a laptop
    # A user's own --model replaces the default models: plain pytest keeps its defaults.
    assert parse_settings(pytester.parseconfig("--model", "gpt-4")).models == ("gpt-4",)
    assert parse_settings(pytester.parseconfig()).models == ("lookup",)


def test_the_compact_table_shows_failed_calls_only_when_there_were_some() -> None:
    def group(errors: int) -> dict:
        rate = {"value": 0.5, "low": 0.2, "high": 0.8, "n": 10}
        return {"model": SHORT, "system": "icd10cm", "answered": 10, "errors": errors, "exact_match": rate,
                "fabricated": rate, "example_echo": rate, "valid": rate, "codes_per_answer": rate,
                "length_match": rate, "digit_match": rate}

    assert "errors" not in render_table([group(0)], compact=True)[0]
    with_errors = render_table([group(0), group(3)], compact=True)
    assert with_errors[0].split()[-1] == "errors" and with_errors[-1].endswith("  3")
    assert "example echo (95% CI)" in render_table([group(0)])[0]  # the full overview keeps every column
