"""No API key in anything a run writes: cache, Parquet, JSON, Markdown, HTML, JUnit XML, log files,
stdout or stderr — whether the key comes from ``OPENAI_API_KEY`` or rides in ``--medcode-api-base``
(``user:key@host`` or ``?key=``), through the OpenAI client and through litellm, with DEBUG logging on.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from conftest import BENCHMARK
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.responders import mapping_responder
from pytest_medcode.testing.server import ScriptedServer
from pytest_medcode.testing.stats import token_hash

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODELS = ("openai/m", "hosted_vllm/m")  # the OpenAI client and litellm


def written_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("where", ["environment", "url-userinfo", "url-query"])
def test_no_api_key_in_anything_a_run_writes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    env_key = f"sk-medcode-env-{secrets.token_hex(8)}"
    url_key = f"sk-medcode-url-{secrets.token_hex(8)}"
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    codes = load_system("icd10cm").billable_codes()[:6]
    pytester.makepyfile(test_code_query=BENCHMARK)
    (pytester.path / "codes.csv").write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), require_key=env_key) as server:
        api_base = {
            "environment": server.base_url,
            "url-userinfo": f"http://medcode:{url_key}@127.0.0.1:{server.port}/v1",
            "url-query": f"{server.base_url}?api_key={url_key}",
        }[where]
        models = [arg for m in MODELS for arg in ("--model", m)]
        checked = pytester.runpytest_subprocess(*models, "--medcode-api-base", api_base, "--medcode-system",
                                                "icd10cm", "--medcode-codes", "codes.csv", "--medcode-no-similarity",
                                                "--medcode-cache", "cache/check.sqlite3", "-p", "no:cacheprovider",
                                                timeout=180)
        preflight = [("preflight stdout", checked.stdout.str().encode()),
                     ("preflight stderr", checked.stderr.str().encode())]
        result = pytester.runpytest_subprocess(
            *models, "--medcode-api-base", api_base, "--medcode-no-preflight",
            "--medcode-system", "icd10cm", "--medcode-codes", "codes.csv", "--medcode-no-similarity",
            "--medcode-cache", "cache/responses.sqlite3", "--medcode-report-dir", "out/reports",
            "--junitxml", "out/junit.xml", "-rA", "-v", "--log-file", "out/run.log", "-o", "log_file_level=DEBUG",
            "--log-level", "DEBUG", "-p", "no:cacheprovider", timeout=180,
        )
        stats = server.stats
    # The preflight check either passed or stopped the run in one line (a key in the URL may be refused, or
    # break the path); the run without it worked (refused calls are errors, not crashes).
    assert checked.ret in (0, 1, pytest.ExitCode.USAGE_ERROR), checked.stdout.str()[-2000:]
    # (No check for "Traceback": litellm's DEBUG log carries traceback strings of its own cost lookups.)
    assert result.ret in (0, 1), result.stdout.str()[-2000:]
    if where == "environment":
        result.assert_outcomes(passed=len(codes) * len(MODELS))
        assert stats.unauthorized == 0 and stats.saw_keys == {token_hash(env_key)}

    files = written_files(pytester.path / "out") + written_files(pytester.path / "cache")
    kinds = {p.suffix for p in files}
    assert {".parquet", ".json", ".xml", ".log", ".sqlite3"} <= kinds, kinds
    assert (pytester.path / "out" / "run.log").stat().st_size > 0
    outputs = [("stdout", result.stdout.str().encode()), ("stderr", result.stderr.str().encode()), *preflight]
    for name, data in [*outputs, *((str(p), p.read_bytes()) for p in written_files(pytester.path))]:
        for secret in (env_key, url_key):
            assert secret.encode() not in data, f"{secret} leaked into {name}"
    summary = json.loads((pytester.path / "out" / "reports" / "latest" / "summary.json").read_text())
    assert summary["config"]["api_base"] == f"http://127.0.0.1:{server.port}/v1"
