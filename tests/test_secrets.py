"""No API key in anything a run writes: cache, Parquet, JSON, Markdown, HTML, JUnit XML, log files,
stdout or stderr — whether the key comes from ``OPENAI_API_KEY`` or rides in ``--medcode-api-base``
(``user:key@host`` or ``?key=``), through the OpenAI client and through litellm, with DEBUG logging on.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import BENCHMARK
from pytest_medcode import redaction
from pytest_medcode.api import CallFailed, CoderUnavailable
from pytest_medcode.asking.coders.endpoint import PLACEHOLDER_KEY, endpoint
from pytest_medcode.asking.coders.errors import status_failure
from pytest_medcode.codesystems import load_system
from pytest_medcode.redaction import environment_secrets, mask_credentials, register_secrets
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
        # A key in the URL's query may be refused by the preflight check, which then stops the run in one line:
        # that check gets a run of its own, and the full run skips it. Elsewhere the full run makes the check.
        checked = preflight = None
        if where == "url-query":
            checked = pytester.runpytest_subprocess(
                *models, "--medcode-api-base", api_base, "--medcode-system", "icd10cm", "--medcode-codes",
                "codes.csv", "--medcode-no-similarity", "--medcode-cache", "cache/check.sqlite3", "-p",
                "no:cacheprovider", timeout=180)
            preflight = [("preflight stdout", checked.stdout.str().encode()),
                         ("preflight stderr", checked.stderr.str().encode())]
        result = pytester.runpytest_subprocess(
            *models, "--medcode-api-base", api_base, *(["--medcode-no-preflight"] if checked else []),
            "--medcode-system", "icd10cm", "--medcode-codes", "codes.csv", "--medcode-no-similarity",
            "--medcode-cache", "cache/responses.sqlite3", "--medcode-report-dir", "out/reports",
            "--junitxml", "out/junit.xml", "-rA", "-v", "--log-file", "out/run.log", "-o", "log_file_level=DEBUG",
            "--log-level", "DEBUG", "-p", "no:cacheprovider", timeout=180,
        )
        stats = server.stats
    # The preflight check either passed or stopped the run in one line (a key in the URL may be refused, or
    # break the path); the run without it worked (refused calls are errors, not crashes).
    if checked is not None:
        assert checked.ret in (0, 1, pytest.ExitCode.USAGE_ERROR), checked.stdout.str()[-2000:]
    # (No check for "Traceback": litellm's DEBUG log carries traceback strings of its own cost lookups.)
    assert result.ret in (0, 1), result.stdout.str()[-2000:]
    if where in ("environment", "url-userinfo"):  # the URL's user:password is not sent: the key is
        result.assert_outcomes(passed=len(codes) * len(MODELS))
        assert stats.unauthorized == 0 and stats.saw_keys == {token_hash(env_key)}

    files = written_files(pytester.path / "out") + written_files(pytester.path / "cache")
    kinds = {p.suffix for p in files}
    assert {".parquet", ".json", ".xml", ".log", ".sqlite3"} <= kinds, kinds
    assert (pytester.path / "out" / "run.log").stat().st_size > 0
    outputs = [("stdout", result.stdout.str().encode()), ("stderr", result.stderr.str().encode()), *(preflight or [])]
    for name, data in [*outputs, *((str(p), p.read_bytes()) for p in written_files(pytester.path))]:
        for secret in (env_key, url_key):
            assert secret.encode() not in data, f"{secret} leaked into {name}"
    summary = json.loads((pytester.path / "out" / "reports" / "latest" / "summary.json").read_text())
    assert summary["config"]["api_base"] == f"http://127.0.0.1:{server.port}/v1"


# -- credentials a provider echoes back ------------------------------------------------------------------------

ECHO_CODES = 3


def _echo_setup(pytester: pytest.Pytester) -> None:
    codes = load_system("icd10cm").billable_codes()[:ECHO_CODES]
    pytester.makepyfile(test_code_query=BENCHMARK)
    (pytester.path / "codes.csv").write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")


def _every_byte(pytester: pytest.Pytester, result: pytest.RunResult) -> list[tuple[str, bytes]]:
    """The terminal output and every file under the test folder: run folder, cache (WAL too), JUnit XML, log."""
    files = [(str(p.relative_to(pytester.path)), p.read_bytes()) for p in written_files(pytester.path)]
    return [("stdout", result.stdout.str().encode()), ("stderr", result.stderr.str().encode()), *files]


def _assert_secret_free(places: list[tuple[str, bytes]], secrets_: list[str]) -> None:
    for name, data in places:
        for secret in secrets_:
            assert secret.encode() not in data, f"{secret!r} leaked into {name}"


# The key from the environment in one process; the URL's password, which each xdist worker registers from the
# option it was given, under -n 2.
@pytest.mark.parametrize(("where", "workers"), [("environment", "0"), ("url-password", "2")])
def test_credentials_a_provider_echoes_are_masked_everywhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str, workers: str
) -> None:
    """A provider whose 500 and 401 bodies repeat the request's Authorization header and key: neither the key,
    nor the URL's password, nor its Basic (base64) form reaches the terminal, the cache, the run folder, the
    JUnit XML or the log — through the OpenAI client and litellm, with and without xdist, and in the preflight
    check's ERROR line. The key has no provider shape (no sk-): only the run's own registered secrets mask it."""
    key = f"AZLEAKKEY0123{secrets.token_hex(8)}"
    password = f"pw{secrets.token_hex(8)}"
    basic = base64.b64encode(f"medcode:{password}".encode()).decode()
    _echo_setup(pytester)
    if where == "environment":
        monkeypatch.setenv("OPENAI_API_KEY", key)
    else:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    models = [arg for m in MODELS for arg in ("--model", m)]
    common = ("--medcode-system", "icd10cm", "--medcode-codes", "codes.csv", "--medcode-no-similarity",
              "--medcode-attempts", "1", "-p", "no:cacheprovider", "-n", workers)
    with ScriptedServer(outage="echo-500") as server:
        api_base = (server.base_url if where == "environment"
                    else f"http://medcode:{password}@127.0.0.1:{server.port}/v1")
        result = pytester.runpytest_subprocess(
            *models, "--medcode-api-base", api_base, *common, "--medcode-cache", "cache/responses.sqlite3",
            "--medcode-report-dir", "out/reports", "--junitxml", "out/junit.xml", "-rA", "--log-file", "out/run.log",
            "-o", "log_file_level=DEBUG", timeout=180)
        server.outage = "echo-401"
        checked = pytester.runpytest_subprocess(
            *models, "--medcode-api-base", api_base, *common, "--medcode-cache", "cache/check.sqlite3",
            "--medcode-report-dir", "out/check", timeout=180)
        stats = server.stats
    sent = key if where == "environment" else password
    assert stats.saw_keys == {token_hash(sent)}  # the URL's password travels as the Bearer key, never as Basic
    assert result.ret == 1, result.stdout.str()[-2000:]
    result.assert_outcomes(failed=ECHO_CODES * len(MODELS))
    summary = json.loads((pytester.path / "out" / "reports" / "latest" / "summary.json").read_text())
    reasons = [reason for per_model in summary["queries"]["failures"].values() for reason, _ in per_model]
    assert len(reasons) == len(MODELS) and all("Authorization=Bearer ***" in r for r in reasons), reasons
    assert checked.ret == pytest.ExitCode.USAGE_ERROR, checked.stdout.str()[-2000:]
    error_line = next(line for line in checked.stderr.lines if line.startswith("ERROR: --model"))
    assert "HTTP 401" in error_line and "Bearer ***" in error_line, error_line

    places = [*_every_byte(pytester, result), ("preflight stdout", checked.stdout.str().encode()),
              ("preflight stderr", checked.stderr.str().encode())]
    assert {"cases.parquet", "summary.json", "report.md", "report.html", "junit.xml", "responses.sqlite3"} <= {
        Path(name).name for name, _ in places}
    _assert_secret_free(places, [key, password, basic])


def test_control_bytes_of_an_api_error_are_shown_escaped(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An error message with ESC and BEL bytes: the "failed calls of MODEL" summary and the preflight ERROR line
    show them as \\x1b and \\x07, so they neither recolour nor ring the terminal of whoever runs pytest."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-medcode-control-bytes")
    _echo_setup(pytester)
    common = ("--model", "openai/m", "--medcode-system", "icd10cm", "--medcode-codes", "codes.csv",
              "--medcode-no-similarity", "--medcode-attempts", "1", "--medcode-no-cache", "-p", "no:cacheprovider")
    with ScriptedServer(outage="echo-500") as server:
        result = pytester.runpytest_subprocess(*common, "--medcode-api-base", server.base_url, timeout=120)
        server.outage = "echo-401"
        checked = pytester.runpytest_subprocess(*common, "--medcode-api-base", server.base_url, timeout=120)
    out = result.stdout.lines
    heading = out.index("failed calls of openai/m:")
    assert "\\x1b[31mupstream failed\\x1b[0m\\x07 for request" in out[heading + 1], out[heading + 1]
    error_line = next(line for line in checked.stderr.lines if line.startswith("ERROR: --model"))
    assert "\\x1b[31mupstream failed\\x1b[0m\\x07" in error_line, error_line
    for name, text in (("summary", "\n".join(out[heading:heading + 3])), ("ERROR line", error_line)):
        assert "\x1b" not in text and "\x07" not in text, f"raw control bytes in the {name}"


# -- the masker itself -------------------------------------------------------------------------------------------


@pytest.fixture
def registered():
    """Secrets registered by a test are forgotten after it (the process-wide set is the run's)."""
    before = set(redaction._secrets)
    yield register_secrets
    redaction.forget_secrets()
    register_secrets(before)


@pytest.mark.parametrize(("text", "kept"), [
    ("Incorrect API key provided: QWERTYUIOP12345. You can find your API key at x",
     "Incorrect API key provided: ***. You can find your API key at x"),
    ("upstream failed for header Authorization=Bearer abcdefghijklmnop", "Authorization=Bearer ***"),
    ("Authorization: Basic " + base64.b64encode(b"alice:wonderland").decode(), "Authorization: Basic ***"),
    ("keys: sk-proj-abcdefghijkl sk-ant-api03-abcdefghijkl", "keys: sk-*** sk-***"),
    ("google said AIzaSyA1234567890abcdefghijklmnopqrstu", "google said AIza***"),
    ("GET http://h/v1/models?key=SECRETVALUE&alt=json", "GET http://h/v1/models?key=***&alt=json"),
    ('{"api_key": "zzzzzzzzzzzz", "x-goog-api-key": "yyyyyyyyyy"}', '{"api_key": "***", "x-goog-api-key": "***"}'),
    ("POST http://bob:hunter2hunter@example.org/v1", "POST http://***@example.org/v1"),
    ("access_token=abcdefghij password: s3cr3tpass", "access_token=*** password: ***"),
])
def test_key_shapes_the_run_was_never_told_about_are_masked(text: str, kept: str) -> None:
    assert kept in mask_credentials(text)


@pytest.mark.parametrize("prose", [
    "Basic authentication is not supported by this basic endpoint",
    "The bearer of bad news; Bearer tokens expire",
    "task-management-tools ask-something",
    "Missing api_key parameter; max_tokens=50; the API key is missing",
    "HTTP 404 NotFoundError: The model `gpt-4` does not exist",
])
def test_prose_is_left_alone(prose: str) -> None:
    assert mask_credentials(prose) == prose


def test_a_registered_secret_is_masked_in_every_form(registered) -> None:
    key = "AZLEAKKEY0123456789/+="
    registered([key])
    for form in (key, quote(key, safe=""), base64.b64encode(f"{key}:".encode()).decode()):
        assert mask_credentials(f"echo: <{form}>") == "echo: <***>"


def test_the_endpoint_password_is_masked_with_its_basic_form(registered) -> None:
    registered(redaction.endpoint_secrets("http://medcode:p%40ss-w0rd-long@host/v1"))
    pair = b"medcode:p@ss-w0rd-long"
    for form in ("p%40ss-w0rd-long", "p@ss-w0rd-long", base64.b64encode(pair).decode(),
                 base64.urlsafe_b64encode(pair).decode()):
        assert form not in mask_credentials(f"header={form} end"), form


def test_environment_secrets_are_provider_variables_and_key_like_names() -> None:
    env = {"OPENAI_API_KEY": "short-ok", "REPLICATE_API_TOKEN": "r8_abcdefgh", "MY_SERVICE_TOKEN": "t" * 20,
           "GITHUB_TOKEN": "gh", "SOME_KEY": "a sentence, not a key", "PATH": "/usr/bin:/bin" * 3,
           "MY_API_KEY": "custom-12345678"}
    assert sorted(environment_secrets(env)) == sorted(["short-ok", "r8_abcdefgh", "t" * 20, "custom-12345678"])


def test_errors_are_masked_when_made(registered) -> None:
    registered(["AZLEAKKEY0123456789"])
    failure = status_failure(500, "InternalServerError", "echo Authorization=Bearer AZLEAKKEY0123456789")
    assert "AZLEAKKEY" not in str(failure) and "Bearer ***" in str(failure)
    assert "AZLEAKKEY" not in str(CallFailed("python coder saw AZLEAKKEY0123456789"))
    assert "AZLEAKKEY" not in str(CoderUnavailable("--model x: key AZLEAKKEY0123456789 refused"))


def test_a_url_password_is_the_bearer_key_and_never_basic_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert endpoint("http://medcode:p%40ss@h:8/v1?x=1") == ("http://h:8/v1?x=1", "p@ss")
    assert endpoint("http://h:8/v1") == ("http://h:8/v1", PLACEHOLDER_KEY)
    assert endpoint(None) == (None, PLACEHOLDER_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    assert endpoint("http://medcode:pass@h:8/v1") == ("http://h:8/v1", "env-key")


def test_a_batch_run_sends_the_url_password_as_its_key_and_keeps_it_nowhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--medcode-batch with http://user:PASSWORD@host/v1 and no OPENAI_API_KEY: the Batch API is asked with the
    password as the Bearer key (the server requires it), and the batch ledger in the response cache records
    the endpoint without it."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MEDCODE_BATCH_POLL_S", "0.1")
    monkeypatch.setenv("MEDCODE_BATCH_POLL_MAX_S", "0.3")
    password = f"pw{secrets.token_hex(8)}"
    codes = load_system("icd10cm").billable_codes()[:4]
    pytester.makepyfile(test_code_query=BENCHMARK)
    (pytester.path / "codes.csv").write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
    with ScriptedServer(mapping_responder({d: c for c, d in codes}), require_key=password) as server:
        server.batch_api.plan.in_progress_s = 0.2
        result = pytester.runpytest_subprocess(
            "--model", "openai/m", "--medcode-api-base", f"http://medcode:{password}@127.0.0.1:{server.port}/v1",
            "--medcode-batch", "--medcode-no-preflight", "--medcode-system", "icd10cm", "--medcode-codes",
            "codes.csv", "--medcode-no-similarity", "--medcode-cache", "cache/responses.sqlite3",
            "-p", "no:cacheprovider", timeout=180)
        submitted = server.batch_api.submissions
    result.assert_outcomes(passed=len(codes))
    assert submitted == 1
    basic = base64.b64encode(f"medcode:{password}".encode()).decode()
    _assert_secret_free(_every_byte(pytester, result), [password, basic])
