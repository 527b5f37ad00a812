"""End to end: real pytest sessions through pytester, real code tables, real clients and server."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import BENCHMARK
from helpers import cases_of, summary_of
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.responders import mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REQUIRED_COLUMNS = {
    "model", "system", "code", "description", "raw_answer", "predicted_code", "n_codes", "exact_match",
    "valid", "billable", "fabricated", "length_match", "digit_match", "outcome", "latency_s",
}


def run_dir(pytester: pytest.Pytester) -> Path:
    latest = pytester.path / "reports" / "latest"
    assert latest.exists(), "no run folder was written"
    return latest.resolve()


def test_default_run_is_offline_and_writes_the_run_folder(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest("--medcode-sample", "20", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=60)
    result.stdout.fnmatch_lines(["*pytest-medcode*", "*lookup*icd10cm*20*100.0%*", "*run folder:*"])
    table = pq.read_table(run_dir(pytester) / "cases.parquet")
    assert set(table.column_names) >= REQUIRED_COLUMNS
    assert table.num_rows == 60
    summary = summary_of(pytester)
    assert summary["schema_version"] == 1
    assert summary["config"]["systems"] == ["icd9cm", "icd9cm-proc", "icd10cm"]
    assert {r["system"] for r in summary["results"]} == {"icd9cm", "icd9cm-proc", "icd10cm"}


def test_case_ids_are_stable_and_selectable_with_k(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    code = load_system("icd10cm").billable_codes()[0][0]
    result = pytester.runpytest(
        "--medcode-system", "icd10cm", "--medcode-codes", str(_codes_file(pytester, [code, "E11.9"])),
        "--collect-only", "-q",
    )
    result.stdout.fnmatch_lines(
        [f"*test_code_query[[]lookup-icd10cm-{code}[]]", "*test_code_query[[]lookup-icd10cm-E11.9[]]"]
    )
    result = pytester.runpytest(
        "--medcode-system", "icd10cm", "--medcode-codes", str(_codes_file(pytester, [code, "E11.9"])), "-k", "E11",
    )
    result.assert_outcomes(passed=1, deselected=1)


def test_every_benchmark_case_carries_the_medcode_marker(pytester: pytest.Pytester) -> None:
    """``-m medcode`` selects the benchmark (code queries and documents), ``-m "not medcode"`` the rest, and
    the marker is registered, so ``--strict-markers`` accepts it; a deselected case is never asked."""
    pytester.makepyfile(
        test_code_query=BENCHMARK,
        test_notes="def test_document(medcode_document, medcode):\n    medcode.check_document(medcode_document)\n",
        test_other="def test_unrelated():\n    assert True\n",
    )
    base = ["-p", "no:cacheprovider", "--strict-markers", "--medcode-system", "icd10cm", "--medcode-sample", "3",
            "--medcode-document-sample", "2"]
    result = pytester.runpytest(*base, "-m", "medcode")
    ran = result.parseoutcomes()  # the lookup coder may code a synthetic note wrongly: a failed case still ran
    assert (ran.get("passed", 0) + ran.get("failed", 0), ran.get("deselected")) == (5, 1), result.outlines[-3:]
    assert "test_unrelated" not in result.stdout.str()
    assert {r["system"] for r in summary_of(pytester)["results"]} == {"icd10cm"}
    result = pytester.runpytest(*base, "-m", "not medcode")
    result.assert_outcomes(passed=1, deselected=5)
    result = pytester.runpytest(*base, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.medcode: a pytest-medcode benchmark case*"])


def _codes_file(pytester: pytest.Pytester, codes: list[str]) -> Path:
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(codes) + "\n")
    return path


def test_local_server_through_the_real_openai_client(pytester: pytest.Pytester) -> None:
    """An OpenAI-compatible model that knows most codes and invents one, asked over HTTP."""
    pairs = load_system("icd10cm").billable_codes()[:10]
    mapping = {d: c for c, d in pairs[:9]}
    mapping[pairs[9][1]] = "E11.99"  # a fabricated code
    pytester.makepyfile(test_code_query=BENCHMARK)
    with ScriptedServer(mapping_responder(mapping)) as server:
        result = pytester.runpytest(
            "--model", "openai/any", "--medcode-api-base", server.base_url, "--medcode-system", "icd10cm",
            "--medcode-codes", str(_codes_file(pytester, [c for c, _ in pairs])),
        )
        requests = server.stats.total_requests
    result.assert_outcomes(passed=9, failed=1)
    assert requests == 10
    result.stdout.fnmatch_lines(["*openai/any gave E11.99 for icd10cm*fabricated*", "*openai/any*icd10cm*10*90.0%*"])
    cases = cases_of(pytester)
    wrong = [r for r in cases if not r["exact_match"]]
    assert [(r["predicted_code"], r["fabricated"], r["raw_answer"]) for r in wrong] == [
        ("E11.99", True, "Code: E11.99")
    ]
    assert all(r["prompt_tokens"] for r in cases)


def test_xdist_gives_the_same_numbers_as_a_serial_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    args = ("--medcode-sample", "40", "--medcode-system", "icd9cm,icd10cm", "-p", "no:cacheprovider")
    pytester.runpytest(*args).assert_outcomes(passed=80)
    serial = summary_of(pytester)["results"]
    serial_ids = pq.read_table(run_dir(pytester) / "cases.parquet").column("case_id").to_pylist()
    result = pytester.runpytest(*args, "-n", "2")
    result.assert_outcomes(passed=80)
    parallel = summary_of(pytester)["results"]
    assert parallel == serial
    # Workers finish out of order; the rows are still in collection order.
    assert pq.read_table(run_dir(pytester) / "cases.parquet").column("case_id").to_pylist() == serial_ids


def test_the_medcode_fixture_asks_for_no_other_fixture(pytester: pytest.Pytester) -> None:
    """``request`` (or ``pytestconfig``, which asks for it) in the fixture's closure makes pytest build a
    fixture definition on every test: seconds at the scale of a whole code system."""
    pytester.makepyfile(test_code_query=BENCHMARK)
    items, _ = pytester.inline_genitems("--medcode-sample", "2", "--medcode-system", "icd10cm")
    assert [sorted(item.fixturenames) for item in items] == [["medcode", "medcode_case"]] * 2


def test_junit_properties_only_when_a_junit_file_is_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    # In-process: no similarity pass, whose lazily imported torch modules the run's sys.modules restore
    # would drop (a later import registers torch's operators twice and fails).
    args = ("--medcode-sample", "3", "--medcode-system", "icd10cm", "-p", "no:cacheprovider", "--medcode-no-similarity")

    def property_names(*extra: str) -> set[str]:
        reports = pytester.inline_run(*args, *extra).getreports("pytest_runtest_logreport")
        return {name for r in reports for name, _ in r.user_properties}

    assert property_names() == {"medcode_record"}
    assert property_names("--junitxml", "junit.xml") == {
        "medcode_record", "expected_code", "predicted_code", "valid", "fabricated", "outdated", "not_yet_valid",
        "outcome"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--medcode-system", "icd11"], "*unknown system icd11*"),
        (["--medcode-system", "cpt"], "*CPT is not bundled*--medcode-codeset cpt=PATH*"),
        (["--medcode-sample", "lots"], "*--medcode-sample 'lots': expected a whole number*"),
        (["--medcode-temperature", "9"], "*--medcode-temperature '9': must be between 0.0 and 2.0*"),
        (["--medcode-prompt", "nonexistent.txt"], "*not 'paper', 'presentation' or a readable file*"),
        (["--medcode-codeset", "cpt"], "*expected SYSTEM=PATH*"),
        (["--medcode-codes", "missing.csv"], "*missing.csv: no such file*"),
        (["--model", "gpt-4"], "*--model gpt-4: set OPENAI_API_KEY*"),
    ],
)
def test_bad_input_is_one_line_and_exit_4(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_malformed_cpt_file_and_unreadable_template(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    bad = pytester.path / "cpt.csv"
    bad.write_text("code,description\n9921,short\n")
    result = pytester.runpytest("--medcode-system", "cpt", "--medcode-codeset", f"cpt={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *cpt.csv: 1 bad CPT row(s)*row 2 '9921'*"])
    template = pytester.path / "t.txt"
    template.write_bytes(b"\xff\xfe bad bytes {description}")
    result = pytester.runpytest("--medcode-prompt", str(template))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: prompt template *t.txt: cannot read it*"])


def test_cpt_with_a_user_file_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    cpt = pytester.path / "cpt.tsv"
    cpt.write_text("code\tdescription\n99213\tOffice outpatient visit 20 minutes\n0001F\tHeart failure assessed\n")
    result = pytester.runpytest("--medcode-system", "cpt", "--medcode-codeset", f"cpt={cpt}")
    result.assert_outcomes(passed=2)
    assert summary_of(pytester)["code_systems"]["cpt"].startswith("user file cpt.tsv")


def test_failure_message_shows_description_expected_predicted_and_raw(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    pairs = load_system("icd10cm").billable_codes()[:1]
    with ScriptedServer(mapping_responder({}, default="I think it is Z99.89, maybe.")) as server:
        result = pytester.runpytest(
            "--model", "openai/m", "--medcode-api-base", server.base_url, "--medcode-system", "icd10cm",
            "--medcode-codes", str(_codes_file(pytester, [pairs[0][0]])),
        )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*description: {pairs[0][1]}*", f"*expected:    {pairs[0][0]}*", "*predicted:   Z99.89*",
        "*raw answer:  'I think it is Z99.89, maybe.'*",
    ])


def test_provider_models_go_through_the_real_litellm_client(pytester: pytest.Pytester) -> None:
    """A litellm provider name (here vLLM's OpenAI-compatible server) pointed at a local endpoint."""
    pairs = load_system("icd10cm").billable_codes()[:3]
    pytester.makepyfile(test_code_query=BENCHMARK)
    with ScriptedServer(mapping_responder({d: c for c, d in pairs})) as server:
        result = pytester.runpytest(
            "--model", "hosted_vllm/any", "--medcode-api-base", server.base_url, "--medcode-system", "icd10cm",
            "--medcode-codes", str(_codes_file(pytester, [c for c, _ in pairs])),
        )
        assert server.stats.total_requests == 3
    result.assert_outcomes(passed=3)
