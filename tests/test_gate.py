"""The release gate: the pure verdict function on real records, and gate mode in real pytest sessions.

Real records come from real runs of the plugin (the offline ``lookup`` coder, and the scripted
OpenAI-compatible server driven through litellm for a model that is wrong on purpose); the only
hand-made change is :func:`spoil`, which turns a case into a wrong answer the way a model would.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_medcode.codesystems import load_system
from pytest_medcode.paths import cache_root
from pytest_medcode.reports.verdict import check_cells, render_verdict
from pytest_medcode.results.gate import Check, GateSpec, Verdict, evaluate
from pytest_medcode.results.rules import MaxDrop, Threshold, parse_max_drops, parse_thresholds
from pytest_medcode.results.stats import bootstrap_mean, paired_bootstrap_delta
from pytest_medcode.runs.folder import Run, load_run
from pytest_medcode.scoring.codes import code_metrics
from pytest_medcode.testing.responders import degrade, is_corrupted, mapping_responder, wrong_code
from pytest_medcode.testing.server import ScriptedServer
from pytest_medcode.vocabulary import metric

TEST_FILE = "def test_code_query(medcode_case, medcode):\n    medcode.check(medcode_case)\n"
#: ICD-9-CM codes whose description an earlier code shares: ``lookup`` answers the earlier one.
LOOKUP_WRONG = ["755.39", "E958.8", "E958.9", "V36.01", "V61.22"]
LOOKUP_RIGHT = ["001.0", "001.1", "002.0", "003.0", "003.1", "004.0", "005.0", "008.00", "010.00", "011.00",
                "250.00", "401.9", "428.0", "486", "496"]  # fmt: skip
CACHE = cache_root()  # read before pytester points HOME at a temporary folder
#: Options every run here shares: no pytest cache, and no METEOR/BERTScore pass (the gate needs neither).
FAST = ("-p", "no:cacheprovider", "--medcode-no-similarity")


@pytest.fixture(autouse=True)
def _shared_code_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run, in-process or not, reads the code tables already built on this machine."""
    monkeypatch.setenv("MEDCODE_CACHE_DIR", str(CACHE))


# -- helpers -----------------------------------------------------------------------------------


def spoil(record: dict[str, Any]) -> dict[str, Any]:
    """The record as if the model had answered a wrong code of the same shape."""
    bad = wrong_code(record["code"])
    metrics = code_metrics(load_system(record["system"]), record["code"], bad)
    return {**record, **metrics, "predicted_code": bad, "codes": [bad], "raw_answer": f"Code: {bad}",
            "outcome": "incorrect"}  # fmt: skip


def fail_call(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "outcome": "error", "error": "APIError: 500", "raw_answer": None, "exact_match": None,
            "valid": None, "billable": None, "fabricated": None, "predicted_code": None}  # fmt: skip


def only(verdict: Verdict, kind: str, metric: str, scope_part: str = "") -> Check:
    found = [c for c in verdict.checks if c.kind == kind and c.metric == metric and scope_part in c.scope]
    assert len(found) == 1, [c.scope for c in verdict.checks]
    return found[0]


def run_plugin(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A real pytest session of the plugin in its own process."""
    env = {**os.environ, "MEDCODE_CACHE_DIR": str(CACHE)}
    cmd = [sys.executable, "-m", "pytest", "-q", *FAST, "--medcode-report-dir", "reports", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lookup_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """1,000 ICD-10-CM cases answered by the offline lookup coder (all exact). perf/mutation.py records this
    run once and names its folder in ``MEDCODE_TEST_LOOKUP_RUN``, so no mutant's test run makes it again."""
    recorded = os.environ.get("MEDCODE_TEST_LOOKUP_RUN")
    if recorded:
        return load_run(Path(recorded))
    folder = tmp_path_factory.mktemp("lookup-run")
    (folder / "test_codes.py").write_text(TEST_FILE)
    proc = run_plugin(folder, "--medcode-system", "icd10cm", "--medcode-sample", "1000", "test_codes.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return load_run(folder / "reports" / "latest")


@pytest.fixture(scope="module")
def icd10_answers() -> dict[str, str]:
    """Description → code for a scripted model that knows ICD-10-CM as the lookup coder does."""
    answers: dict[str, str] = {}
    for code, description in load_system("icd10cm").billable_codes():
        answers.setdefault(description, code)
    return answers


@pytest.fixture(scope="module")
def server():
    with ScriptedServer() as srv:
        yield srv


def last_lines(text: str, n: int) -> list[str]:
    return [line for line in text.splitlines() if line.strip()][-n:]


# -- the pure function on real records --------------------------------------------------------


def test_a_run_compared_with_itself_passes(lookup_run: Run) -> None:
    verdict = evaluate(lookup_run.records, lookup_run.records, max_drops=parse_max_drops("exact_match=2pp"))
    assert verdict.passed, verdict.reason
    check = only(verdict, "regression", "exact_match")
    assert (check.n, check.p_value, check.delta, check.details["lost"]) == (1000, 1.0, 0.0, 0)
    assert json.loads(json.dumps(verdict.to_dict()))["passed"] is True


def test_ten_percent_worse_on_1000_cases_fails_with_mcnemar(lookup_run: Run) -> None:
    new = [spoil(r) if i % 10 == 3 else r for i, r in enumerate(lookup_run.records)]
    verdict = evaluate(new, lookup_run.records, max_drops=parse_max_drops("exact_match=2pp"))
    assert not verdict.passed
    check = only(verdict, "regression", "exact_match")
    assert check.details["lost"] == 100 and check.details["gained"] == 0
    assert check.p_value is not None and check.p_value < 0.05
    assert check.delta == pytest.approx(-0.10)
    assert "McNemar exact p" in check.reason and "beyond the allowed 2.0 pp" in check.reason
    assert verdict.reason.startswith("exact_match lookup / icd10cm: exact match dropped 10.0 pp")


def test_one_extra_error_in_20_cases_passes_with_a_power_warning(lookup_run: Run) -> None:
    base = lookup_run.records[:20]
    new = [spoil(base[0]), *base[1:]]
    verdict = evaluate(new, base, max_drops=parse_max_drops("exact_match=2pp"))
    assert verdict.passed, verdict.reason
    check = only(verdict, "regression", "exact_match")
    assert check.details["underpowered"] and check.p_value == 1.0
    assert any("low power" in w and "cannot tell" in w for w in verdict.all_warnings)


def test_a_drop_beyond_the_margin_must_also_be_significant(lookup_run: Run) -> None:
    base = lookup_run.records[:100]
    # 4 lost, 1 gained: a 3-point drop, past a 2-point margin, but p = 0.375.
    base = [spoil(base[0]), *base[1:]]
    new = [lookup_run.records[0], *[spoil(r) for r in base[1:5]], *base[5:]]
    verdict = evaluate(new, base, max_drops=parse_max_drops("exact_match=2pp"))
    check = only(verdict, "regression", "exact_match")
    assert check.passed and check.details["exceeds_margin"] and not check.details["significant"]
    assert "not significant" in check.reason


def test_a_significant_drop_within_the_margin_passes(lookup_run: Run) -> None:
    new = [spoil(r) if i < 30 else r for i, r in enumerate(lookup_run.records)]  # 3 points, p ~ 2e-9
    verdict = evaluate(new, lookup_run.records, max_drops=parse_max_drops("exact_match=5pp"))
    check = only(verdict, "regression", "exact_match")
    assert verdict.passed and check.details["significant"] and "within the allowed 5.0 pp" in check.reason


def test_thresholds_per_group_with_system_overrides(lookup_run: Run) -> None:
    icd9 = [{**r, "system": "icd9cm"} for r in lookup_run.records[:40]]
    records = [spoil(r) if i % 2 else r for i, r in enumerate(lookup_run.records[40:140])] + icd9
    ths = parse_thresholds("exact_match=0.45,icd9cm:exact_match=0.99,valid=0.1", "under")
    verdict = evaluate(records, thresholds=ths)
    icd10 = only(verdict, "threshold", "exact_match", "icd10cm")
    icd9_check = only(verdict, "threshold", "exact_match", "icd9cm")
    assert icd10.passed and icd10.observed == 0.5 and icd10.limit == 0.45
    assert icd9_check.passed and icd9_check.limit == 0.99 and icd9_check.details["limit_scope"] == "icd9cm"
    verdict = evaluate(records, thresholds=parse_thresholds("exact_match=0.55", "under"))
    assert not verdict.passed and "is below the limit 55.0%" in verdict.reason


def test_fabricated_is_limited_from_above(lookup_run: Run) -> None:
    records = [{**r, "fabricated": i < 15} for i, r in enumerate(lookup_run.records[:100])]
    over = parse_thresholds("fabricated=0.1", "over")
    check = only(evaluate(records, thresholds=over), "threshold", "fabricated")
    assert not check.passed and check.observed == 0.15 and "above the limit 10.0%" in check.reason
    assert evaluate(records, thresholds=parse_thresholds("fabricated=20%", "over")).passed
    # A rise in fabrication is its "drop": McNemar on "not fabricated".
    base = [{**r, "fabricated": False} for r in records]
    verdict = evaluate(records, base, max_drops=parse_max_drops("fabricated=2pp"))
    check = only(verdict, "regression", "fabricated")
    assert not check.passed and "rose 15.0 pp" in check.reason and check.delta == pytest.approx(0.15)


def test_failed_calls_above_the_error_rate_fail(lookup_run: Run) -> None:
    records = [fail_call(r) if i < 6 else r for i, r in enumerate(lookup_run.records[:100])]
    assert not evaluate(records).passed
    assert "6 of 100 calls failed (6.0%), above the allowed 5.0%" in evaluate(records).reason
    assert evaluate(records, max_error_rate=0.1).passed
    # Failed calls never count as regressions: they are not paired.
    check = only(evaluate(records, lookup_run.records[:100], max_error_rate=0.1), "regression", "exact_match")
    assert check.n == 94 and check.passed


def test_similarity_regressions_use_a_paired_bootstrap(lookup_run: Run) -> None:
    base = [{**r, "meteor": 0.6 + 0.3 * ((i * 7) % 10) / 10, "bertscore": 0.9} for i, r in
            enumerate(lookup_run.records[:400])]  # fmt: skip
    worse = [{**r, "meteor": r["meteor"] - 0.05} for r in base]
    drops = parse_max_drops("meteor=0.02,bertscore=0.01")
    verdict = evaluate(worse, base, max_drops=drops)
    meteor = only(verdict, "regression", "meteor")
    assert not meteor.passed and meteor.delta == pytest.approx(-0.05) and meteor.ci is not None
    assert meteor.ci[1] < 0 and meteor.details["test"] == "paired_bootstrap"
    assert only(verdict, "regression", "bertscore").passed
    # Absent columns (the metrics extra is not installed) fail the check with the reason.
    verdict = evaluate(lookup_run.records[:50], lookup_run.records[:50], max_drops=drops)
    assert not verdict.passed and "no cases with meteor in both runs" in verdict.reason
    missing = evaluate(lookup_run.records[:50], thresholds=parse_thresholds("bertscore=0.8", "under"))
    assert not missing.passed and "no bertscore values in the records" in missing.reason


def test_digit_match_regression_and_pooled_scope(lookup_run: Run) -> None:
    icd9 = [{**r, "system": "icd9cm"} for r in lookup_run.records[500:700]]
    base = lookup_run.records[:200] + icd9
    new = [spoil(r) if i % 5 == 0 else r for i, r in enumerate(base)]
    verdict = evaluate(new, base, max_drops=parse_max_drops("exact_match=2pp,digit_match=0.01"))
    pooled = only(verdict, "regression", "exact_match", "all systems")
    assert pooled.n == 400 and not pooled.passed
    digits = only(verdict, "regression", "digit_match", "all systems")
    assert digits.delta is not None and digits.delta < -0.01 and not digits.passed


def test_a_run_with_description_variants_is_judged_per_variant(lookup_run: Run) -> None:
    exact = [{**r, "variant": "exact"} for r in lookup_run.records[:100]]
    typo = [{**(spoil(r) if i % 2 else r), "variant": "typo"} for i, r in enumerate(exact)]
    verdict = evaluate(exact + typo, exact + [{**r, "variant": "typo"} for r in exact],
                       thresholds=parse_thresholds("exact_match=0.8", "under"))  # fmt: skip
    assert {c.scope for c in verdict.checks if c.kind == "threshold"} == {
        "lookup / icd10cm [exact]", "lookup / icd10cm [typo]"}  # fmt: skip
    assert only(verdict, "threshold", "exact_match", "[exact]").passed
    assert not only(verdict, "threshold", "exact_match", "[typo]").passed
    assert not only(verdict, "regression", "exact_match", "[typo]").passed
    assert only(verdict, "regression", "exact_match", "[exact]").passed
    assert only(verdict, "regression", "exact_match", "all cases").n == 200


def test_cases_pair_across_a_model_swap_and_unpaired_cases_are_reported(lookup_run: Run) -> None:
    base = lookup_run.records[:300]
    new = [{**r, "model": "gpt-4o"} for r in lookup_run.records[100:400]]
    verdict = evaluate(new, base)
    assert verdict.passed
    assert only(verdict, "regression", "exact_match").n == 200
    notes = " | ".join(verdict.warnings)
    assert "baseline model lookup paired with gpt-4o" in notes
    assert "100 case(s) of this run have no baseline partner" in notes
    assert "100 baseline case(s) are not in this run" in notes


def test_no_common_cases_or_no_cases_fail(lookup_run: Run) -> None:
    base = [{**r, "model": "a"} for r in lookup_run.records[:10]] + [{**r, "model": "b"} for r in
                                                                        lookup_run.records[:10]]  # fmt: skip
    verdict = evaluate(lookup_run.records[10:20], base)
    assert not verdict.passed and "no case of this run is in the baseline" in verdict.reason
    empty = evaluate([], None)
    assert not empty.passed and "no benchmark cases ran" in empty.reason
    dupes = evaluate(lookup_run.records[:5], lookup_run.records[:5] * 2)
    assert not dupes.passed and "two cases with model=lookup" in dupes.reason


def test_repeat_columns_join_the_pairing_key(lookup_run: Run) -> None:
    base = [{**r, "repeat": k} for k in (0, 1) for r in lookup_run.records[:50]]
    new = [spoil(r) if r["repeat"] == 1 else r for r in base]
    check = only(evaluate(new, base), "regression", "exact_match")
    assert check.n == 100 and check.details["lost"] == 50


def test_the_verdict_is_deterministic_and_renders_last(lookup_run: Run) -> None:
    new = [spoil(r) if i % 7 == 0 else r for i, r in enumerate(lookup_run.records)]
    spec = GateSpec(fail_under=parse_thresholds("exact_match=0.5", "under"),
                    max_drops=parse_max_drops("exact_match=1pp,digit_match=1pp"), active=True)  # fmt: skip
    one, two = spec.evaluate(new, lookup_run.records), spec.evaluate(new, lookup_run.records)
    assert one.to_dict() == two.to_dict()
    lines = render_verdict(one)
    assert lines[-1].startswith("medcode gate FAILED: exact_match lookup / icd10cm: exact match dropped")
    assert all(not math.isnan(c.observed or 0.0) for c in one.checks)


# -- parsing the options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "direction", "expected"),
    [
        ("exact_match=0.45", "under", [Threshold("exact_match", 0.45, "under")]),
        (["valid=90%", "icd10cm:exact_match=0.3"], "under",
         [Threshold("valid", 0.9, "under"), Threshold("exact_match", 0.3, "under", "icd10cm")]),
        ("fabricated=0.1", "over", [Threshold("fabricated", 0.1, "over")]),
        ("exact_match=0.4,exact_match=0.5", "under", [Threshold("exact_match", 0.5, "under")]),
        (" Exact-Match = 0.4 ", "under", [Threshold("exact_match", 0.4, "under")]),
    ],
)  # fmt: skip
def test_parse_thresholds(items: Any, direction: str, expected: list[Threshold]) -> None:
    assert list(parse_thresholds(items, direction, ["icd10cm", "icd9cm"])) == expected


@pytest.mark.parametrize(
    ("items", "direction", "message"),
    [
        ("exact_mtch=0.4", "under", "unknown metric 'exact_mtch'"),
        ("fabricated=0.1", "under", "lower-is-better; limit it with --medcode-fail-over fabricated=0.1"),
        ("exact_match=0.9", "over", "higher-is-better; limit it with --medcode-fail-under"),
        ("exact_match", "under", "expected METRIC=LIMIT"),
        ("exact_match=1.5", "under", "must be between 0 and 1"),
        ("exact_match=2pp", "under", "write a fraction, e.g. 0.45, or a percentage"),
        ("exact_match=abc", "under", "is not a number"),
        ("icd11:exact_match=0.4", "under", "unknown system 'icd11'"),
        (":exact_match=0.4", "under", "empty system"),
    ],
)
def test_parse_thresholds_rejects(items: str, direction: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_thresholds(items, direction, ["icd10cm"])


def test_parse_max_drops() -> None:
    expected = (MaxDrop("exact_match", 0.02), MaxDrop("meteor", 0.02))
    assert parse_max_drops("exact_match=2pp,meteor=0.02") == expected
    assert parse_max_drops(["digit_match=0.5pp"])[0].margin == pytest.approx(0.005)
    assert MaxDrop("exact_match", 0.02).text == "exact_match=2pp"
    for bad, message in (("exact_match=2%", "percentage points"), ("exact_match=1", "below 1"),
                         ("icd10cm:exact_match=2pp", "every system"), ("x=2pp", "unknown metric")):
        with pytest.raises(ValueError, match=message):
            parse_max_drops(bad)


# -- gate mode in real pytest sessions ---------------------------------------------------------


@pytest.fixture
def icd9_codes(pytester: pytest.Pytester) -> Path:
    """20 ICD-9-CM cases, 5 of which the lookup coder gets wrong (exact match 75%)."""
    pytester.makepyfile(test_codes=TEST_FILE)
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(LOOKUP_RIGHT + LOOKUP_WRONG) + "\n")
    return path


def gate_run(pytester: pytest.Pytester, codes: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*FAST, "--medcode-report-dir", "reports",
                              "--medcode-system", "icd9cm", "--medcode-codes", str(codes), *args)  # fmt: skip


def summary_of(pytester: pytest.Pytester) -> dict[str, Any]:
    return json.loads((pytester.path / "reports" / "latest" / "summary.json").read_text())


def test_without_gate_options_each_mismatch_is_a_failing_test(pytester, icd9_codes) -> None:
    result = gate_run(pytester, icd9_codes)
    result.assert_outcomes(passed=15, failed=5)
    assert result.ret == 1
    assert summary_of(pytester)["gate"] is None


def test_threshold_met_exits_0_and_mismatches_are_their_own_outcome(pytester, icd9_codes) -> None:
    result = gate_run(pytester, icd9_codes, "--medcode-fail-under", "exact_match=0.7", "-v")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_code_query?lookup-icd9cm-755.39? MISMATCH*"])
    assert result.parseoutcomes() == {"passed": 15, "mismatched": 5}
    lines = last_lines(result.stdout.str(), 2)
    assert lines[0] == ("medcode gate PASSED: all 2 checks passed, 1 warning")
    assert "15 passed, 5 mismatched" in lines[1]
    gate_data = summary_of(pytester)["gate"]
    assert gate_data["passed"] is True and gate_data["checks"][1]["observed"] == 0.75


def test_threshold_missed_exits_1_with_the_reason_last(pytester, icd9_codes) -> None:
    result = gate_run(pytester, icd9_codes, "--medcode-fail-under", "exact_match=0.5,icd9cm:exact_match=0.8")
    assert result.ret == 1
    assert result.parseoutcomes() == {"passed": 15, "mismatched": 5}
    verdict_line = last_lines(result.stdout.str(), 2)[0]
    assert verdict_line == ("medcode gate FAILED: exact_match lookup / icd9cm: exact match 75.0% "
                            "(95% CI 53.1%–88.8%, n=20) is below the limit 80.0%")  # fmt: skip
    summary = summary_of(pytester)
    assert summary["gate"]["passed"] is False
    assert summary["config"]["gate"]["fail_under"] == ["exact_match=0.5", "icd9cm:exact_match=0.8"]


def test_gate_mode_under_xdist(pytester, icd9_codes) -> None:
    result = gate_run(pytester, icd9_codes, "-n", "2", "--medcode-fail-under", "exact_match=0.8")
    assert result.ret == 1
    assert result.parseoutcomes() == {"passed": 15, "mismatched": 5}
    assert last_lines(result.stdout.str(), 2)[0].startswith("medcode gate FAILED")
    assert len(summary_of(pytester)["gate"]["checks"]) == 2


def test_a_run_gated_against_itself_passes(pytester, icd9_codes) -> None:
    assert gate_run(pytester, icd9_codes).ret == 1
    baseline = (pytester.path / "reports" / "latest").resolve()
    result = gate_run(pytester, icd9_codes, "--medcode-baseline", str(baseline))
    assert result.ret == 0
    result.stdout.fnmatch_lines(["PASS regression exact_match ?lookup / icd9cm?: *0 worse / 0 better of 20*"])
    assert summary_of(pytester)["gate"]["checks"][1]["p_value"] == 1.0


def test_junit_carries_the_codes_as_properties(pytester, icd9_codes) -> None:
    import xml.etree.ElementTree as ET

    result = gate_run(pytester, icd9_codes, "--medcode-max-error-rate", "0", "--junitxml", "junit.xml")
    assert result.ret == 0
    suite = ET.parse(pytester.path / "junit.xml").getroot()
    assert suite.find("testsuite").get("failures") == "0"
    cases = {tc.get("name"): {p.get("name"): p.get("value") for p in tc.iter("property")}
             for tc in suite.iter("testcase")}  # fmt: skip
    wrong = cases["test_code_query[lookup-icd9cm-755.39]"]
    assert {k: wrong[k] for k in ("expected_code", "predicted_code", "valid", "fabricated", "outcome")} == {
        "expected_code": "755.39", "predicted_code": "755.29", "valid": "true", "fabricated": "false",
        "outcome": "incorrect"}  # fmt: skip
    assert cases["test_code_query[lookup-icd9cm-486]"]["outcome"] == "correct"


def test_summary_carries_the_verdict_and_no_secrets(pytester, icd9_codes, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret-123456")
    url = "https://user:pa55word@llm.example/v1?api_key=sk-query-secret"
    result = gate_run(pytester, icd9_codes, "--medcode-fail-under=exact_match=0.7", "--medcode-api-base", url)
    assert result.ret == 0
    run = (pytester.path / "reports" / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["api_base"] == "https://llm.example/v1"
    assert summary["config"]["gate"] == {
        "active": True, "fail_under": ["exact_match=0.7"], "fail_over": [], "baseline": None, "max_drop": [],
        "alpha": 0.05, "max_error_rate": 0.05,
    }  # fmt: skip
    assert summary["gate"]["passed"] is True and summary["gate"]["reason"].startswith("all 2 checks passed")
    for name in ("summary.json", "report.md", "report.html"):
        text = (run / name).read_text()
        for secret in ("sk-env-secret", "pa55word", "sk-query-secret", "user:"):
            assert secret not in text, (name, secret)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--medcode-fail-under", "exact_mtch=0.4"], "--medcode-fail-under 'exact_mtch=0.4': unknown metric"),
        (["--medcode-fail-under", "fabricated=0.1"], "limit it with --medcode-fail-over fabricated=0.1"),
        (["--medcode-max-drop", "exact_match=2pp"], "--medcode-max-drop needs --medcode-baseline RUN"),
        (["--medcode-baseline", "nowhere"], "--medcode-baseline nowhere: no such run folder or file"),
        (["--medcode-alpha", "0"], "--medcode-alpha 0: must be above 0"),
        (["--medcode-alpha", "x"], "--medcode-alpha 'x': expected a"),
        (["--medcode-max-error-rate", "2"], "--medcode-max-error-rate '2': must be between 0.0 and 1.0"),
    ],
)
def test_bad_gate_options_are_one_line_usage_errors(pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(test_codes=TEST_FILE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--medcode-sample", "1", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], result.stderr.lines


def test_a_baseline_of_another_schema_version_is_a_usage_error(pytester, icd9_codes) -> None:
    gate_run(pytester, icd9_codes)
    run = (pytester.path / "reports" / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "schema_version": 99}))
    result = gate_run(pytester, icd9_codes, "--medcode-baseline", str(run))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --medcode-baseline */summary.json: summary schema version 99, this pytest-medcode reads "
        "version 1; re-run the baseline with this version"
    ])  # fmt: skip


# -- the scripted model through litellm: the done-when runs ----------------------------


def test_a_model_wrong_on_10_percent_of_1000_cases_fails_the_gate(
    pytester: pytest.Pytester, server: ScriptedServer, icd10_answers: dict[str, str], lookup_run: Run
) -> None:
    server.responder = degrade(mapping_responder(icd10_answers), 0.10, seed=7)
    pytester.makepyfile(test_codes=TEST_FILE)
    result = pytester.runpytest_subprocess(
        *FAST, "--medcode-report-dir", "reports", "--model", "openai/degraded",
        "--medcode-api-base", server.base_url, "--medcode-system", "icd10cm", "--medcode-sample", "1000",
        "--medcode-baseline", str(lookup_run.folder), "--medcode-max-drop", "exact_match=2pp",
    )  # fmt: skip
    expected_wrong = sum(is_corrupted(r["description"], 0.10, seed=7) for r in lookup_run.records)
    assert result.ret == 1, result.stdout.str()[-3000:]
    assert result.parseoutcomes() == {"passed": 1000 - expected_wrong, "mismatched": expected_wrong}
    verdict_line = last_lines(result.stdout.str(), 2)[0]
    assert verdict_line.startswith(f"medcode gate FAILED: exact_match openai/degraded / icd10cm: exact match "
                                   f"dropped {expected_wrong / 10:.1f} pp")  # fmt: skip
    assert "McNemar exact p = " in verdict_line and "< 0.05 and beyond the allowed 2.0 pp" in verdict_line
    check = next(c for c in summary_of(pytester)["gate"]["checks"] if c["kind"] == "regression")
    assert check["p_value"] < 0.05 and check["details"]["lost"] == expected_wrong and not check["passed"]
    result.stdout.fnmatch_lines(["warning: baseline model lookup paired with openai/degraded*"])


def test_one_extra_error_in_a_20_case_run_passes_with_a_power_warning(
    pytester: pytest.Pytester, server: ScriptedServer, icd10_answers: dict[str, str], lookup_run: Run
) -> None:
    pytester.makepyfile(test_codes=TEST_FILE)
    gate_args = (*FAST, "--medcode-report-dir", "reports", "--medcode-system", "icd10cm",
                        "--medcode-sample", "20")  # fmt: skip
    assert pytester.runpytest(*gate_args).ret == 0
    baseline = (pytester.path / "reports" / "latest").resolve()
    victim = load_run(baseline).records[3]
    knows = mapping_responder(icd10_answers)
    hostile = {victim["description"]: "<script>alert(1)</script>"}
    server.responder = lambda request: hostile.get(request.description) or knows(request)
    result = pytester.runpytest_subprocess(
        *gate_args, "--model", "openai/tiny", "--medcode-api-base", server.base_url,
        "--medcode-baseline", str(baseline),
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert result.parseoutcomes() == {"passed": 19, "mismatched": 1}
    result.stdout.fnmatch_lines([
        "warning: exact_match openai/tiny / icd10cm: low power: 1 discordant pair among 20 cases*cannot tell*"
    ])
    assert last_lines(result.stdout.str(), 2)[0] == "medcode gate PASSED: all 2 checks passed, 2 warnings"


# -- the rules at their boundaries, on hand-built records --------------------------------------
# Counts are picked so every observed value is exact in binary floating point (3/4, 1/4, 1/20, 6/100
# as a count of cases): an observed value that *equals* its limit must pass, one case more must fail.


def case(i: int, **metrics: Any) -> dict[str, Any]:
    """A scored ICD-10-CM case of model ``m``; ``metrics`` are the per-case values under test."""
    return {"model": "m", "system": "icd10cm", "code": f"C{i:03d}", "outcome": "correct", **metrics}


def test_exact_match_exactly_at_the_fail_under_limit_passes() -> None:
    """3 of 4 exact = 0.75 = the limit: "at least 0.75" holds (a strict '>' would fail it)."""
    records = [case(i, exact_match=i < 3) for i in range(4)]
    verdict = evaluate(records, thresholds=parse_thresholds("exact_match=0.75", "under"))
    check = only(verdict, "threshold", "exact_match")
    assert check.observed == 0.75 and check.passed, check.reason
    assert "is at least 75.0%" in check.reason
    # Written as a percentage the limit is the same number.
    assert evaluate(records, thresholds=parse_thresholds("exact_match=75%", "under")).passed
    # One case fewer (2/4) is below it.
    fewer = [case(i, exact_match=i < 2) for i in range(4)]
    assert not evaluate(fewer, thresholds=parse_thresholds("exact_match=0.75", "under")).passed


def test_fabricated_exactly_at_the_fail_over_limit_passes() -> None:
    """1 of 4 fabricated = 0.25 = the limit: "at most 0.25" holds; 2 of 4 does not."""
    records = [case(i, fabricated=i < 1) for i in range(4)]
    check = only(evaluate(records, thresholds=parse_thresholds("fabricated=0.25", "over")), "threshold", "fabricated")
    assert check.observed == 0.25 and check.passed, check.reason
    more = [case(i, fabricated=i < 2) for i in range(4)]
    check = only(evaluate(more, thresholds=parse_thresholds("fabricated=0.25", "over")), "threshold", "fabricated")
    assert check.observed == 0.5 and not check.passed and "is above the limit 25.0%" in check.reason


def test_digit_match_mean_exactly_at_the_limit_passes() -> None:
    """Per-case digit agreement 0.5, 1, 1, 0.5: mean 3/4 = the limit 0.75."""
    records = [case(i, digit_match=v) for i, v in enumerate((0.5, 1.0, 1.0, 0.5))]
    verdict = evaluate(records, thresholds=parse_thresholds("digit_match=0.75", "under"))
    check = only(verdict, "threshold", "digit_match")
    assert check.observed == 0.75 and check.passed, check.reason
    assert not evaluate(records, thresholds=parse_thresholds("digit_match=0.76", "under")).passed


def test_error_rate_exactly_at_the_allowed_rate_passes() -> None:
    """1 failed call in 20 = 5 % = the default allowed rate; 2 in 20 (10 %) fails."""
    one = [case(i, exact_match=True) for i in range(19)] + [{**case(19), "outcome": "error"}]
    check = only(evaluate(one), "errors", "error_rate")
    assert check.observed == 0.05 and check.passed and "1 of 20 calls failed (5.0%), within" in check.reason
    two = [case(i, exact_match=True) for i in range(18)] + [{**case(i), "outcome": "error"} for i in (18, 19)]
    assert not only(evaluate(two), "errors", "error_rate").passed


def test_exact_match_drop_exactly_at_the_margin_passes_even_when_significant() -> None:
    """100 paired cases, 6 lost and 0 gained: a 6-point drop, McNemar exact p = 2 * 0.5**6 = 0.03125
    (significant), but a 6pp margin tolerates it; a 7th lost case (p = 2 * 0.5**7) is a regression."""
    base = [case(i, exact_match=True) for i in range(100)]
    at_margin = [case(i, exact_match=i >= 6) for i in range(100)]
    check = only(evaluate(at_margin, base, max_drops=parse_max_drops("exact_match=6pp")), "regression", "exact_match")
    assert check.p_value == pytest.approx(0.03125) and check.details["significant"]
    assert not check.details["exceeds_margin"] and check.passed, check.reason
    past = [case(i, exact_match=i >= 7) for i in range(100)]
    check = only(evaluate(past, base, max_drops=parse_max_drops("exact_match=6pp")), "regression", "exact_match")
    assert check.p_value == pytest.approx(0.015625) and check.details["exceeds_margin"] and not check.passed


def test_continuous_drop_past_the_margin_with_an_interval_that_includes_zero_passes() -> None:
    """10 paired cases; one falls from 1 to 0, nine are unchanged: mean difference -0.1, past a 0.05 margin.
    A resample misses that case with probability 0.9**10 = 0.35 (> 2.5 %), so the interval's upper end is
    exactly 0: not significant, so not a regression."""
    base = [case(i, digit_match=1.0) for i in range(10)]
    new = [case(i, digit_match=0.0 if i == 0 else 1.0) for i in range(10)]
    check = only(evaluate(new, base, max_drops=parse_max_drops("digit_match=0.05")), "regression", "digit_match")
    assert check.delta == pytest.approx(-0.1) and check.ci is not None
    assert check.ci[1] == 0.0 and check.ci[0] < -0.05
    assert check.details["exceeds_margin"] and not check.details["significant"]
    assert check.passed and "the CI includes 0: not significant" in check.reason


def test_continuous_drop_exactly_at_the_margin_passes_and_just_past_it_fails() -> None:
    """Every case drops by the same amount, so the bootstrap interval is that one value (it excludes 0).
    1 - 0.75 = 0.25 exactly = the margin: tolerated; 0.25 + 1/1024 (also exact in binary): a regression."""
    base = [case(i, digit_match=1.0) for i in range(8)]
    drops = parse_max_drops("digit_match=0.25")
    at = only(evaluate([case(i, digit_match=0.75) for i in range(8)], base, max_drops=drops),
              "regression", "digit_match")  # fmt: skip
    assert at.delta == -0.25 and at.ci == (-0.25, -0.25)
    assert not at.details["exceeds_margin"] and at.passed, at.reason
    past = only(evaluate([case(i, digit_match=1.0 - 0.25 - 1 / 1024) for i in range(8)], base, max_drops=drops),
                "regression", "digit_match")  # fmt: skip
    assert past.details["exceeds_margin"] and past.details["significant"] and not past.passed
    assert "the drop is beyond the allowed 25.0 pp and the CI excludes 0" in past.reason


def test_report_rows_and_the_saved_options_of_the_gate() -> None:
    """What report.md/report.html and summary.json show of a verdict, on hand-made checks."""
    records = [case(i, exact_match=i < 3) for i in range(4)] + [{**case(4), "outcome": "error"}]
    verdict = evaluate(records, [case(i, exact_match=True) for i in range(5)],
                       thresholds=parse_thresholds("exact_match=0.8", "under"),
                       max_drops=parse_max_drops("exact_match=50pp"), max_error_rate=0.25)  # fmt: skip
    rows = [check_cells(c.to_dict()) for c in verdict.checks]
    by_kind = {r["check"]: r for r in rows}
    # 1 failed call of 5 = 20.0 %, within 25 %; 3 of 4 answered exact = 75.0 %, below 80 %.
    assert by_kind["errors"] == {"result": "pass", "check": "errors", "metric": "error_rate", "scope": "m / icd10cm",
                                 "observed": "20.0%", "baseline": "-", "p": "-",
                                 "reason": "1 of 5 calls failed (20.0%), within the allowed 25.0%"}  # fmt: skip
    assert by_kind["threshold"]["result"] == "FAIL" and by_kind["threshold"]["observed"] == "75.0%"
    # Paired on the 4 answered cases: 1 lost, 0 gained, p = 1.0 (McNemar, one discordant pair).
    regression = by_kind["regression"]
    assert (regression["result"], regression["observed"], regression["baseline"], regression["p"]) == (
        "pass", "75.0%", "100.0%", "1")
    meteor = check_cells({"kind": "regression", "metric": "meteor", "scope": "s", "passed": False,
                               "observed": 0.61234, "baseline": 0.7, "p_value": 0.000123456, "reason": "r"})
    assert (meteor["observed"], meteor["baseline"], meteor["p"], meteor["result"]) == ("0.612", "0.700", "0.000123",
                                                                                      "FAIL")  # fmt: skip
    spec = GateSpec(fail_under=parse_thresholds("icd10cm:exact_match=0.3", "under"),
                         fail_over=parse_thresholds("fabricated=15%", "over"), baseline=Path("ci/base"),
                         max_drops=parse_max_drops("exact_match=2pp,meteor=0.02"), alpha=0.01, max_error_rate=0.1,
                         active=True)  # fmt: skip
    assert spec.to_dict() == {
        "active": True, "fail_under": ["icd10cm:exact_match=0.3"], "fail_over": ["fabricated=0.15"],
        "baseline": "ci/base", "max_drop": ["exact_match=2pp", "meteor=0.02"], "alpha": 0.01, "max_error_rate": 0.1,
    }  # fmt: skip
    assert GateSpec().to_dict()["baseline"] is None


# -- each rule's full account, hand-computed -----------------------------------------------------
# What summary.json, report.md and the terminal say is part of the product: these pin every field and the
# reason's wording for each branch, with p-values and intervals worked out by hand in the comments.

NOTE = "this pass means 'cannot tell', not 'no drop'"


def regression_of(new: list[dict[str, Any]], base: list[dict[str, Any]], drops: str, **kw: Any) -> Check:
    metric = drops.split("=")[0]
    return only(evaluate(new, base, max_drops=parse_max_drops(drops), **kw), "regression", metric)


def test_binary_regression_caught_reads_and_records_everything() -> None:
    """100 pairs, 7 lost: 7.0 pp past a 6 pp margin, McNemar p = 2 * 0.5**7 = 0.015625 -> '0.016'."""
    base = [case(i, exact_match=True) for i in range(100)]
    new = [case(i, exact_match=i >= 7) for i in range(100)]
    check = regression_of(new, base, "exact_match=6pp")
    assert check.to_dict() == {
        "kind": "regression", "metric": "exact_match", "scope": "m / icd10cm", "passed": False,
        "reason": "exact match dropped 7.0 pp (93.0% vs 100.0% in the baseline; 7 worse / 0 better of 100 paired "
                  "cases); McNemar exact p = 0.016 < 0.05 and beyond the allowed 6.0 pp",
        "observed": 0.93, "limit": 0.06, "n": 100, "p_value": pytest.approx(0.015625), "baseline": 1.0,
        "delta": pytest.approx(-0.07), "ci": None, "warnings": [],
        "details": {"test": "mcnemar_exact", "lost": 7, "gained": 0, "alpha": 0.05, "significant": True,
                    "exceeds_margin": True, "underpowered": False, "min_detectable_drop": 0.07},
    }  # fmt: skip


def test_binary_regression_beyond_the_margin_on_one_pair_is_a_low_power_pass() -> None:
    """10 pairs, 1 lost: 10 pp past 2 pp, but one discordant pair has p = 1 and no split of 1 pair can be
    significant; a 2 pp margin on 10 cases means k = 1 case."""
    base = [case(i, exact_match=True) for i in range(10)]
    check = regression_of([case(i, exact_match=i > 0) for i in range(10)], base, "exact_match=2pp")
    assert check.passed and check.p_value == 1.0
    assert check.reason == ("exact match dropped 10.0 pp (90.0% vs 100.0% in the baseline; 1 worse / 0 better of 10 "
                            "paired cases); beyond the allowed 2.0 pp but not significant (McNemar exact p = 1.000 "
                            "≥ 0.05)")  # fmt: skip
    assert check.warnings == ("low power: 1 discordant pair among 10 cases; a worsening of 1 case (just past the "
                              f"allowed 2.0 pp) could not reach p < 0.05 — no drop could reach significance; {NOTE}",)


def test_binary_regression_low_power_warning_in_the_plural_and_with_a_detectable_drop() -> None:
    """50 pairs, 2 lost: p = 2 * 0.25 = 0.5; k = floor(0.02 * 50) + 1 = 2 cases; 2 pairs can never reach p < 0.05.
    Then 100 pairs, 3 lost and 3 gained: no net change, p = 1; 6 discordant pairs can show 6 lost / 0 gained
    (p = 2/64 = 0.031), a 6.0 pp drop; a 2 pp margin's k = 3 cases cannot (4/1, p = 0.375)."""
    base = [case(i, exact_match=True) for i in range(50)]
    check = regression_of([case(i, exact_match=i >= 2) for i in range(50)], base, "exact_match=2pp")
    assert check.warnings == ("low power: 2 discordant pairs among 50 cases; a worsening of 2 cases (just past the "
                              f"allowed 2.0 pp) could not reach p < 0.05 — no drop could reach significance; {NOTE}",)
    assert "McNemar exact p = 0.500 ≥ 0.05" in check.reason
    base = [case(i, exact_match=i >= 3) for i in range(100)]
    new = [case(i, exact_match=not 3 <= i < 6) for i in range(100)]
    check = regression_of(new, base, "exact_match=2pp")
    assert check.passed and (check.details["lost"], check.details["gained"]) == (3, 3)
    assert check.reason == ("exact match 97.0% vs 97.0% in the baseline (3 worse / 3 better of 100 paired cases); "
                            "McNemar exact p = 1.000; allowed 2.0 pp")  # fmt: skip
    assert check.warnings == ("low power: 6 discordant pairs among 100 cases; a worsening of 3 cases (just past the "
                              "allowed 2.0 pp) could not reach p < 0.05 — the smallest drop this churn could show is "
                              f"6.0 pp; {NOTE}",)  # fmt: skip


def test_binary_regression_significant_but_within_the_margin_and_a_fabrication_rise() -> None:
    """1,000 pairs, 10 lost: p = 2 * 0.5**10 = 0.00195 -> '0.002', a 1.0 pp drop within 2 pp. Then fabricated:
    4 of 100 new fabrications is a 4.0 pp rise, p = 2 * 0.5**4 = 0.125."""
    base = [case(i, exact_match=True) for i in range(1000)]
    check = regression_of([case(i, exact_match=i >= 10) for i in range(1000)], base, "exact_match=2pp")
    assert check.passed and check.warnings == ()
    assert check.reason == ("exact match dropped 1.0 pp (99.0% vs 100.0% in the baseline; 10 worse / 0 better of "
                            "1000 paired cases); significant (McNemar exact p = 0.002) but within the allowed 2.0 pp")
    base = [case(i, fabricated=False) for i in range(100)]
    check = regression_of([case(i, fabricated=i < 4) for i in range(100)], base, "fabricated=2pp")
    assert check.reason.startswith("fabricated rose 4.0 pp (4.0% vs 0.0% in the baseline; 4 worse / 0 better of 100")
    assert (check.observed, check.baseline, check.delta) == (pytest.approx(0.04), 0.0, pytest.approx(0.04))
    # Cases with the metric missing on either side are left out of the pairs; none left is a failed check.
    holes = [case(i, fabricated=None) if i < 30 else case(i, fabricated=False) for i in range(100)]
    assert regression_of(holes, base, "fabricated=2pp").n == 70
    none = regression_of([case(i, fabricated=None) for i in range(5)], base[:5], "fabricated=2pp")
    assert none.to_dict() == {
        "kind": "regression", "metric": "fabricated", "scope": "m / icd10cm", "passed": False,
        "reason": "no cases in common with the baseline to compare", "observed": None, "limit": 0.02, "n": 0,
        "p_value": None, "baseline": None, "delta": None, "ci": None, "warnings": [], "details": {}}  # fmt: skip


def test_continuous_regression_accounts_for_every_branch() -> None:
    """Constant differences give a one-point interval (every resample has the same mean)."""
    base = [case(i, digit_match=1.0) for i in range(8)]
    caught = regression_of([case(i, digit_match=0.5) for i in range(8)], base, "digit_match=0.25")
    assert caught.to_dict() == {
        "kind": "regression", "metric": "digit_match", "scope": "m / icd10cm", "passed": False,
        "reason": "digit match 50.0% vs 100.0% in the baseline (Δ -50.0 pp, 95% paired bootstrap CI -50.0 pp to "
                  "-50.0 pp, 8 paired cases); the drop is beyond the allowed 25.0 pp and the CI excludes 0",
        "observed": 0.5, "limit": 0.25, "n": 8, "p_value": None, "baseline": 1.0, "delta": -0.5,
        "ci": [-0.5, -0.5], "warnings": [],
        "details": {"test": "paired_bootstrap", "alpha": 0.05, "significant": True, "exceeds_margin": True, "seed": 0},
    }  # fmt: skip
    within = regression_of([case(i, digit_match=0.875) for i in range(8)], base, "digit_match=0.25")
    assert within.passed and within.reason.endswith("8 paired cases); allowed 25.0 pp")
    # One case of ten falls from 1 to 0: Δ -0.1, upper end 0 (see above); the interval is wider than the margin.
    base = [case(i, digit_match=1.0) for i in range(10)]
    noisy = regression_of([case(i, digit_match=0.0 if i == 0 else 1.0) for i in range(10)], base, "digit_match=0.05")
    assert noisy.ci is not None and noisy.ci[1] == 0.0
    assert noisy.reason.endswith("; beyond the allowed 5.0 pp but the CI includes 0: not significant")
    half = (noisy.ci[1] - noisy.ci[0]) / 2
    assert noisy.warnings == (f"low power: the CI half-width {100 * half:.1f} pp is not below the allowed drop 5.0 pp,"
                              " so a drop just past it could not be told from noise",)  # fmt: skip
    # METEOR is on its own scale (3 decimals), and its interval follows --medcode-alpha and the seed.
    base = [case(i, meteor=v) for i, v in enumerate((0.9, 0.8, 0.7, 0.6, 0.5, 0.4))]
    new = [case(i, meteor=v) for i, v in enumerate((0.7, 0.8, 0.4, 0.6, 0.1, 0.4))]  # Δ -(0.2+0.3+0.4)/6 = -0.15
    check = regression_of(new, base, "meteor=0.02", alpha=0.2, seed=7)
    expected = paired_bootstrap_delta([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.7, 0.8, 0.4, 0.6, 0.1, 0.4],
                                      confidence=0.8, seed=7)  # fmt: skip
    assert check.delta == pytest.approx(-0.15) and check.ci == (expected.low, expected.high)
    assert "(Δ -0.150, 80% paired bootstrap CI " in check.reason and "allowed 0.020" in check.reason
    assert (check.details["alpha"], check.details["seed"]) == (0.2, 7)
    missing = regression_of([case(i) for i in range(3)], base[:3], "meteor=0.02")
    assert missing.reason == ("no cases with meteor in both runs (the metric was not computed; install the 'metrics' "
                              "extra)") and (missing.n, missing.limit, missing.passed) == (0, 0.02, False)
    missing = regression_of([case(i) for i in range(3)], [case(i) for i in range(3)], "digit_match=0.02")
    assert missing.reason == "no cases in common with the baseline to compare"


def test_threshold_check_records_its_wilson_interval_and_warns_when_the_limit_is_inside() -> None:
    """3 of 4 exact. Wilson 95 %: z = 1.959964, z²/n = 0.960365, centre = (0.75 + 0.480183) / 1.960365 = 0.627528,
    half = z / 1.960365 * sqrt(0.75 * 0.25 / 4 + z² / 64) = 0.999796 * 0.326952 = 0.326885
    -> 0.300642 to 0.954413 (30.1 %-95.4 %); 75 % lies inside."""
    records = [case(i, exact_match=i < 3) for i in range(4)]
    verdict = evaluate(records, thresholds=parse_thresholds("exact_match=0.75", "under"))
    check = only(verdict, "threshold", "exact_match")
    assert check.ci is not None and check.ci == pytest.approx((0.300642, 0.954413), abs=1e-6)
    assert check.reason == "exact match 75.0% (95% CI 30.1%–95.4%, n=4) is at least 75.0%"
    assert check.warnings == ("the limit 75.0% lies inside the 95% CI (30.1%–95.4%): a re-run could flip this check",)
    assert (check.n, check.limit, check.details) == (4, 0.75, {"direction": "under", "limit_scope": "all systems"})
    # At an end of the interval the limit is not inside it: 4 of 4 has a Wilson upper bound of exactly 1.
    full = [case(i, exact_match=True) for i in range(4)]
    check = only(evaluate(full, thresholds=parse_thresholds("exact_match=1", "under")), "threshold", "exact_match")
    assert check.passed and check.warnings == () and check.ci is not None and check.ci[1] == 1.0
    # 0 of 4 fabricated has a lower bound of exactly 0: a limit of 0 is not inside either.
    clean = [case(i, fabricated=False) for i in range(4)]
    check = only(evaluate(clean, thresholds=parse_thresholds("fabricated=0", "over")), "threshold", "fabricated")
    assert check.passed and check.warnings == () and check.reason.endswith("is at most 0.0%")
    assert check.details == {"direction": "over", "limit_scope": "all systems"}


def test_threshold_on_a_mean_uses_the_seeded_bootstrap() -> None:
    """Digit agreement 0.5, 1, 1, 0.5: the bootstrap interval lies within [0.5, 1] (a Wilson interval of
    '3 of 4' would reach down to 0.30). With twelve spread values the interval depends on the seed: it is the
    one stats.bootstrap_mean gives for the run's seed."""
    records = [case(i, digit_match=v) for i, v in enumerate((0.5, 1.0, 1.0, 0.5))]
    ths = parse_thresholds("digit_match=0.6", "under")
    check = only(evaluate(records, thresholds=ths, seed=3), "threshold", "digit_match")
    assert check.ci is not None and 0.5 <= check.ci[0] < check.ci[1] <= 1.0
    spread = [i / 11 for i in range(12)]
    records = [case(i, digit_match=v) for i, v in enumerate(spread)]
    check = only(evaluate(records, thresholds=ths, seed=3), "threshold", "digit_match")
    expected = bootstrap_mean(spread, seed=3)
    assert check.ci == (expected.low, expected.high) != (bootstrap_mean(spread, seed=4).low,
                                                         bootstrap_mean(spread, seed=4).high)  # fmt: skip
    assert only(evaluate(records, thresholds=ths), "threshold", "digit_match").ci == only(
        evaluate(records, thresholds=ths, seed=0), "threshold", "digit_match").ci  # the default seed is 0


def test_threshold_without_values_fails_and_says_why() -> None:
    errors = [{**case(i), "outcome": "error"} for i in range(3)]
    check = only(evaluate(errors, thresholds=parse_thresholds("exact_match=0.5", "under"), max_error_rate=1.0),
                 "threshold", "exact_match")  # fmt: skip
    assert check.to_dict() == {
        "kind": "threshold", "metric": "exact_match", "scope": "m / icd10cm", "passed": False,
        "reason": "no answered cases to measure", "observed": None, "limit": 0.5, "n": 0, "p_value": None,
        "baseline": None, "delta": None, "ci": None, "warnings": [], "details": {}}  # fmt: skip
    check = only(evaluate(errors, thresholds=parse_thresholds("meteor=0.5", "under"), max_error_rate=1.0),
                 "threshold", "meteor")  # fmt: skip
    assert check.reason == "no answered cases to measure"
    answered = [case(i, exact_match=True) for i in range(3)]
    check = only(evaluate(answered, thresholds=parse_thresholds("meteor=0.5", "under")), "threshold", "meteor")
    assert check.reason == ("no meteor values in the records (the metric was not computed; install the 'metrics' "
                            "extra)")  # fmt: skip
    check = only(evaluate(answered, thresholds=parse_thresholds("digit_match=0.5", "under")), "threshold",
                 "digit_match")  # fmt: skip
    assert check.reason == ("no digit_match values: not defined for this system (scope the limit, e.g. "
                            "SYSTEM:digit_match)")  # a core metric: not the install hint
    check = only(evaluate([{**r, "closeness": None} for r in answered],
                          thresholds=parse_thresholds("closeness=0.5", "under")), "threshold", "closeness")
    assert not check.passed and "closeness values: not defined for this system" in check.reason


def test_evaluate_checks_its_options_and_applies_every_threshold() -> None:
    records = [case(i, exact_match=True, valid=True) for i in range(4)]
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got"):
            evaluate(records, alpha=alpha)
    for rate in (-0.01, 1.01):
        with pytest.raises(ValueError, match=r"max_error_rate must be in \[0, 1\], got"):
            evaluate(records, max_error_rate=rate)
    assert evaluate(records, max_error_rate=0.0).passed and evaluate(records, max_error_rate=1.0).passed
    assert evaluate(records, alpha=0.999).passed
    # A system-specific limit for another system must not stop the next metric's check.
    ths = parse_thresholds("icd9cm:exact_match=0.5,valid=0.9", "under", ["icd9cm", "icd10cm"])
    verdict = evaluate(records, thresholds=ths)
    assert [c.metric for c in verdict.checks if c.kind == "threshold"] == ["valid"]
    assert verdict.warnings == ("threshold icd9cm:exact_match=0.5 matched no cases in this run",)
    empty = evaluate([])
    assert empty.to_dict() == {
        "passed": False, "reason": "cases run: no benchmark cases ran, so nothing could be checked", "warnings": [],
        "checks": [{"kind": "cases", "metric": "cases", "scope": "run", "passed": False,
                    "reason": "no benchmark cases ran, so nothing could be checked", "observed": None, "limit": None,
                    "n": 0, "p_value": None, "baseline": None, "delta": None, "ci": None, "warnings": [],
                    "details": {}}]}  # fmt: skip


def test_render_verdict_lines() -> None:
    """Error-rate checks that pass fold into one line (0 % and 1 in 20 = 5 %, at the limit); then the threshold
    checks, the warnings, and the verdict last. Wilson for 19 of 19: low = 0.8318 (z²/n = 0.20218, centre
    0.91591, half 0.08409), above the 80 % limit, so no warning there."""
    records = [case(i, exact_match=i < 3) for i in range(4)]
    records += [{**case(i, exact_match=True), "system": "icd9cm"} for i in range(19)]
    records += [{**case(19), "system": "icd9cm", "outcome": "error"}]
    verdict = evaluate(records, thresholds=parse_thresholds("exact_match=0.8", "under"))
    failing = "exact match 75.0% (95% CI 30.1%–95.4%, n=4) is below the limit 80.0%"
    assert render_verdict(verdict) == [
        f"FAIL threshold exact_match [m / icd10cm]: {failing}",
        "PASS threshold exact_match [m / icd9cm]: exact match 100.0% (95% CI 83.2%–100.0%, n=19) is at least 80.0%",
        "PASS errors: failed calls within the allowed 5.0% in 2 groups (worst 5.0%)",
        "warning: exact_match m / icd10cm: the limit 80.0% lies inside the 95% CI (30.1%–95.4%): a re-run could flip "
        "this check",
        f"medcode gate FAILED: exact_match m / icd10cm: {failing}",
    ]  # fmt: skip
    one_group = evaluate(records[4:], thresholds=parse_thresholds("exact_match=0.8", "under"))
    assert render_verdict(one_group)[-2:] == [
        "PASS errors: failed calls within the allowed 5.0% in 1 group (worst 5.0%)",
        "medcode gate PASSED: all 2 checks passed",
    ]


@pytest.mark.parametrize(
    ("parse", "item", "message"),
    [
        ("under", "exact_match=0.4=0.5", "'exact_match=0.4=0.5': '0.4=0.5' is not a number"),
        ("under", "exact_match=", "'exact_match=': expected METRIC=LIMIT or SYSTEM:METRIC=LIMIT, e.g. "),
        ("under", "icd11:exact_match=0.4", "'icd11:exact_match=0.4': unknown system 'icd11'; choose from icd10cm, "
                                           "icd9cm"),
        ("under", "exact_mtch=0.4", "'exact_mtch=0.4': unknown metric 'exact_mtch'; choose from exact_match, valid, "),
        ("under", "exact_match=1.5", "'exact_match=1.5': must be between 0 and 1 (or 0% and 100%), got '1.5'"),
        ("drop", "exact_match=2pp=3", "'exact_match=2pp=3': '2pp=3' is not a number"),
        ("drop", "exact_match= ", "'exact_match=': expected METRIC=MARGIN, e.g. exact_match=2pp or exact_match=0.02"),
        ("drop", "exact_mtch=2pp", "'exact_mtch=2pp': unknown metric 'exact_mtch'; choose from exact_match, "),
        ("drop", "exact_match=abc", "'exact_match=abc': 'abc' is not a number"),
    ],
)  # fmt: skip
def test_bad_limits_and_margins_say_which_item_and_why(parse: str, item: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        if parse == "drop":
            parse_max_drops(item)
        else:
            parse_thresholds(item, parse, ["icd9cm", "icd10cm"])
    assert str(info.value).startswith(message)


def test_margins_are_shown_in_percentage_points_as_given() -> None:
    assert MaxDrop("exact_match", 0.005).text == "exact_match=0.5pp"
    assert MaxDrop("digit_match", 0.0125).text == "digit_match=1.25pp"
    assert MaxDrop("meteor", 0.0125).text == "meteor=0.0125"  # similarity scores are not percentages


def test_gate_spec_evaluates_with_its_own_options() -> None:
    """The spec passes every option on: alpha, error rate, margins, thresholds, and the seed (default 0)."""
    base = [case(i, exact_match=True, digit_match=1.0) for i in range(100)]
    new = [case(i, exact_match=i >= 7, digit_match=0.5 if i < 30 else 1.0) for i in range(99)]
    new.append({**case(99), "outcome": "error"})
    spec = GateSpec(fail_under=parse_thresholds("digit_match=0.9", "under"),
                         max_drops=parse_max_drops("exact_match=6pp,digit_match=0.1"), alpha=0.01,
                         max_error_rate=0.0, active=True)  # fmt: skip
    direct = evaluate(new, base, thresholds=spec.thresholds, max_drops=spec.max_drops, alpha=0.01, max_error_rate=0.0,
                      seed=0)  # fmt: skip
    assert spec.evaluate(new, base).to_dict() == direct.to_dict()
    assert spec.evaluate(new, base, seed=5).to_dict() == evaluate(
        new, base, thresholds=spec.thresholds, max_drops=spec.max_drops, alpha=0.01, max_error_rate=0.0, seed=5
    ).to_dict()
    # At alpha = 0.01, 7 lost of 99 (p = 2 * 0.5**7 = 0.0156) is not significant; 1 failed call of 100 > 0 %.
    assert only(direct, "regression", "exact_match").passed
    assert not only(direct, "errors", "error_rate").passed
    assert only(direct, "threshold", "digit_match").observed == pytest.approx(84 / 99)  # (69 + 30 * 0.5) / 99


def test_pairing_problems_and_pooled_scopes_are_reported() -> None:
    base = [case(i, exact_match=True) for i in range(10)]
    dupes = evaluate(base, base + base[:1], thresholds=parse_thresholds("icd9cm:valid=0.5", "under"))
    (pairing,) = [c for c in dupes.checks if c.kind == "regression"]
    assert (pairing.metric, pairing.scope, pairing.passed, dupes.passed) == ("pairing", "run", False, False)
    assert pairing.reason.startswith("the baseline run has two cases with model=m, system=icd10cm, code=C000")
    assert dupes.warnings == ("threshold icd9cm:valid=0.5 matched no cases in this run",)
    elsewhere = evaluate(base, [{**r, "model": "a"} for r in base] + [{**r, "model": "b"} for r in base])
    (check,) = [c for c in elsewhere.checks if c.kind == "regression"]
    assert check.to_dict() | {"details": None} == {
        "kind": "regression", "metric": "pairing", "scope": "run", "passed": False,
        "reason": "no case of this run is in the baseline (paired by model, system, code): wrong baseline, or other "
                  "models, systems or codes",
        "observed": None, "limit": None, "n": 0, "p_value": None, "baseline": None, "delta": None, "ci": None,
        "warnings": [], "details": None}  # fmt: skip
    # Two systems pool into "all systems"; a system the baseline lacks is said, not checked.
    icd9 = [{**case(i, exact_match=True), "system": "icd9cm"} for i in range(10)]
    extra = [{**case(i, exact_match=True), "system": "icd9cm-proc"} for i in range(3)]
    verdict = evaluate(base + icd9 + extra, base + icd9)
    scopes = [c.scope for c in verdict.checks if c.kind == "regression"]
    assert scopes == ["m / icd10cm", "m / icd9cm", "m / all systems"]
    assert only(verdict, "regression", "exact_match", "all systems").n == 20
    assert verdict.warnings[-1] == "m / icd9cm-proc: not in the baseline, so not checked for regressions"
    # Variants pool into "all cases"; temperatures show in the scope.
    swept = [{**case(i, exact_match=True), "variant": v, "temperature": t} for i in range(4)
             for v, t in (("exact", 0.2), ("typo", 0.6))]  # fmt: skip
    verdict = evaluate(swept, swept)
    assert {c.scope for c in verdict.checks if c.kind == "regression"} == {
        "m / icd10cm [exact] T=0.2", "m / icd10cm [typo] T=0.6", "m / all cases"}


def test_failed_calls_on_either_side_are_left_out_of_the_pairs() -> None:
    base = [{**case(0), "outcome": "error"}] + [case(i, exact_match=True) for i in range(1, 10)]
    new = [case(i, exact_match=True) for i in range(9)] + [{**case(9), "outcome": "error"}]
    check = only(evaluate(new, base, max_error_rate=0.5), "regression", "exact_match")
    assert check.n == 8


def test_a_baseline_without_similarity_scores_is_said() -> None:
    base = [case(i, exact_match=True, digit_match=1.0) for i in range(5)]
    verdict = evaluate(base, base, max_drops=parse_max_drops("meteor=0.02,digit_match=0.01"))
    assert verdict.warnings == ("the baseline has no meteor values",)
    assert evaluate([{**r, "meteor": 0.5} for r in base], [{**r, "meteor": 0.5} for r in base],
                    max_drops=parse_max_drops("meteor=0.02")).warnings == ()  # fmt: skip


def test_the_error_check_records_its_counts() -> None:
    rows = [case(i, exact_match=True) for i in range(3)] + [{**case(3), "outcome": "error"}]
    check = only(evaluate(rows, max_error_rate=0.25), "errors", "error_rate")
    assert check.to_dict() == {
        "kind": "errors", "metric": "error_rate", "scope": "m / icd10cm", "passed": True,
        "reason": "1 of 4 calls failed (25.0%), within the allowed 25.0%", "observed": 0.25, "limit": 0.25, "n": 4,
        "p_value": None, "baseline": None, "delta": None, "ci": None, "warnings": [], "details": {"errors": 1}}


def test_similarity_thresholds_read_on_their_own_scale_and_odd_values_are_left_out() -> None:
    """METEOR 0.5 and 0.7 (mean 0.6) against 0.65: shown with 3 decimals, not as percentages; a NaN score is
    no score; a tiny p-value is written in scientific notation (2 * 0.5**30 = 1.9e-09)."""
    records = [case(0, meteor=0.5), case(1, meteor=0.7), case(2, meteor=float("nan"))]
    check = only(evaluate(records, thresholds=parse_thresholds("meteor=0.65", "under")), "threshold", "meteor")
    assert check.n == 2 and check.observed == pytest.approx(0.6)
    assert check.reason == "meteor 0.600 (95% CI 0.500–0.700, n=2) is below the limit 0.650"
    assert check.warnings == ("the limit 0.650 lies inside the 95% CI (0.500–0.700): a re-run could flip this check",)
    base = [case(i, exact_match=True) for i in range(1000)]
    drop = regression_of([case(i, exact_match=i >= 30) for i in range(1000)], base, "exact_match=5pp")
    assert drop.reason.endswith("; significant (McNemar exact p = 1.9e-09) but within the allowed 5.0 pp")
    better = regression_of(base, [case(i, exact_match=i >= 30) for i in range(1000)], "exact_match=2pp")
    assert better.reason == ("exact match 100.0% vs 97.0% in the baseline (0 worse / 30 better of 1000 paired cases); "
                             "McNemar exact p = 1.9e-09; allowed 2.0 pp")  # fmt: skip


def test_value_formats() -> None:
    assert [metric("exact_match").format(v) for v in (None, float("nan"), 0.1234)] == ["-", "-", "12.3%"]
    assert metric("bertscore").format(0.91234) == "0.912"
    errors = {"kind": "errors", "metric": "error_rate", "scope": "s", "passed": True, "reason": "r"}
    assert check_cells({**errors, "observed": None})["observed"] == "0.0%"
    assert check_cells({**errors, "observed": 0.0})["observed"] == "0.0%"
    with pytest.raises(ValueError) as info:
        parse_max_drops("exact_match=2%")
    assert str(info.value) == "'exact_match=2%': write percentage points, e.g. 2pp, or a fraction, e.g. 0.02"
    with pytest.raises(ValueError, match=r"^direction must be 'under' or 'over', got 'sideways'$"):
        parse_thresholds("exact_match=0.5", "sideways")


def test_a_continuous_improvement_is_significant_only_when_its_interval_clears_zero() -> None:
    """Every case up by 0.5: a one-point interval at +0.5, significant. One case of ten up from 0 to 1: the
    interval's lower end is exactly 0 (a resample misses that case with probability 0.9**10 = 0.35): not."""
    base = [case(i, digit_match=0.5) for i in range(8)]
    up = regression_of([case(i, digit_match=1.0) for i in range(8)], base, "digit_match=0.05")
    assert up.passed and up.ci == (0.5, 0.5) and up.details["significant"] is True
    base = [case(i, digit_match=0.0) for i in range(10)]
    one = regression_of([case(i, digit_match=1.0 if i == 0 else 0.0) for i in range(10)], base, "digit_match=0.05")
    assert one.ci is not None and one.ci[0] == 0.0 and one.details["significant"] is False
