"""What pytest keeps of each benchmark case (pytest_medcode.plugin.report_memory): the terminal reporter lets go
of a case's passed setup and teardown reports, keeps its call report (what the summary counts and lists), and
keeps every report of the suite's other tests."""

from __future__ import annotations

import json

import pytest

from conftest import BENCHMARK

#: The project's own test beside the benchmark, and a plugin that writes down what the terminal reporter kept.
OTHER = "def test_plain():\n    assert True\n"
KEPT = '''
import json

def pytest_terminal_summary(terminalreporter):
    kept = [[category, report.when, "[" in report.nodeid] for category, reports in terminalreporter.stats.items()
            for report in reports if getattr(report, "when", None)]
    with open("kept.json", "w") as f:
        json.dump(kept, f)
'''


def test_a_benchmark_case_keeps_only_its_call_report_other_tests_keep_all(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK, test_other=OTHER)
    pytester.makeconftest(KEPT)
    result = pytester.runpytest("-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-system", "icd10cm",
                                "--medcode-sample", "20", "--medcode-report-dir", "reports")
    result.assert_outcomes(passed=21)
    kept = json.loads((pytester.path / "kept.json").read_text())
    cases = sorted((category, when) for category, when, is_case in kept if is_case)
    others = sorted((category, when) for category, when, is_case in kept if not is_case)
    assert cases == [("passed", "call")] * 20
    assert others == [("", "setup"), ("", "teardown"), ("passed", "call")]
