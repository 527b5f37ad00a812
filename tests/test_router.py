"""``--medcode-router``: one model served by several endpoints through litellm's Router, against real servers.

Three scripted servers are the replicas; one is stopped mid-run. What a user relies on: every case is answered,
none twice, each record names the replica that answered it, summary.json counts them, the cache key is the
model's (a run without the router replays it), and bad input is one line before anything is asked.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import BENCHMARK
from helpers import cases_of, summary_of
from pytest_medcode.asking.coders.router import read_router_file, routed_names, unused_models
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.faults import fixed_latency
from pytest_medcode.testing.responders import mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = "openai/llama"
SECRET = "sk-router-file-secret-123456"


def router_file(path: Path, bases: list[str], ids: list[str | None], model: str = MODEL) -> Path:
    lines = ["model_list:"]
    for base, ident in zip(bases, ids, strict=True):
        lines += [f"  - model_name: {model}",
                  f"    litellm_params: {{model: {model}, api_base: '{base}', api_key: {SECRET}}}"]
        if ident:
            lines.append(f"    model_info: {{id: {ident}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def setup_run(pytester: pytest.Pytester, n: int) -> tuple[list[str], dict[str, str]]:
    pytester.makepyfile(test_code_query=BENCHMARK)
    codes = load_system("icd10cm").billable_codes()[300 : 300 + n]
    (pytester.path / "codes.csv").write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
    args = ["--medcode-system", "icd10cm", "--medcode-codes", "codes.csv", "-p", "no:cacheprovider",
            "--medcode-no-similarity", "--medcode-cache", str(pytester.path / "cache.sqlite3")]
    return args, {d: c for c, d in codes}


def stop_after(server: ScriptedServer, answers: int) -> threading.Thread:
    """Stop ``server`` (connections refused from then on) once it has answered ``answers`` requests."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while server.stats.successes < answers and time.monotonic() < deadline:
            time.sleep(0.002)
        server.stop()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_replica_stopped_mid_run_costs_no_answer_and_each_answer_names_its_replica(
        pytester: pytest.Pytester) -> None:
    n = 60
    args, mapping = setup_run(pytester, n)
    right = mapping_responder(mapping)
    servers = [ScriptedServer(right, latency=fixed_latency(0.02)).start(),
               ScriptedServer(right, latency=fixed_latency(0.02)).start(),
               ScriptedServer(mapping_responder({}, default="Code: R69"), latency=fixed_latency(0.02)).start()]
    try:
        bases = [s.base_url for s in servers]
        path = router_file(pytester.path / "router.yaml", bases, ["gpu-a", "gpu-b", None])
        routed = [*args, "--model", MODEL, "--medcode-router", str(path), "--medcode-api-base", bases[1],
                  "--medcode-concurrency", "6"]
        watcher = stop_after(servers[0], 8)
        result = pytester.runpytest(*routed)
        watcher.join(5)
        assert not watcher.is_alive()
        records = cases_of(pytester)
        assert len(records) == n and all(r["outcome"] != "error" for r in records)  # every case answered
        by_replica = Counter(r["deployment"] for r in records)
        third = str(servers[2].base_url)
        assert set(by_replica) <= {"gpu-a", "gpu-b", third} and by_replica["gpu-a"] >= 7
        assert by_replica["gpu-a"] < n // 3 + 5  # it stopped early: the others took its share
        result.assert_outcomes(passed=n - by_replica[third], failed=by_replica[third])  # the odd replica shows

        stats = [s.stats for s in servers]
        answered = sum((Counter(s.successes_per_key) for s in stats), Counter())
        # 60 case keys answered once each, and the check request every replica answered once before the run
        assert sum(answered.values()) == n + 3 and len(answered) == n + 1
        assert sorted(answered.values())[-1] == 3

        summary = summary_of(pytester)
        rows = {row["deployment"]: row for row in summary["deployments"]}
        assert {d: row["cases"] for d, row in rows.items()} == dict(by_replica)
        assert rows["gpu-b"]["exact_match"] == 1.0 and rows[third]["exact_match"] == 0.0
        assert summary["config"]["router"] == {"file": str(path), "deployments": {MODEL: ["gpu-a", "gpu-b", third]}}
        result.stdout.fnmatch_lines([f"deployments of {MODEL}:", "  gpu-b: * cases, * answered, 0 failed*"])
        for name in ("summary.json", "report.md", "report.html"):
            assert SECRET not in (pytester.path / "reports" / "latest" / name).read_text()
        assert SECRET.encode() not in (pytester.path / "cache.sqlite3").read_bytes()
        assert "## Deployments" in (pytester.path / "reports" / "latest" / "report.md").read_text()

        # The key is the model's, not a replica's: the same run without the router asks nothing, and each
        # replayed answer still names the replica that gave it.
        before = sum(s.stats.total_requests for s in servers[1:])
        plain = pytester.runpytest(*args, "--model", MODEL, "--medcode-api-base", bases[1])
        plain.assert_outcomes(passed=n - by_replica[third], failed=by_replica[third])
        assert sum(s.stats.total_requests for s in servers[1:]) == before
        assert Counter(r["deployment"] for r in cases_of(pytester)) == by_replica
    finally:
        for server in servers:
            server.stop()


def test_a_dead_deployment_is_named_in_one_line_before_any_case(pytester: pytest.Pytester) -> None:
    args, mapping = setup_run(pytester, 4)
    with ScriptedServer(mapping_responder(mapping)) as alive:
        dead = ScriptedServer().start()
        dead_base = dead.base_url
        dead.stop()
        path = router_file(pytester.path / "router.yaml", [alive.base_url, dead_base], [None, "gpu-dead"])
        result = pytester.runpytest(*args, "--model", MODEL, "--medcode-router", str(path))
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        lines = [line for line in result.stderr.lines if "gpu-dead" in line]
        assert len(lines) == 1 and "1 of 2 deployments failed" in lines[0] and SECRET not in lines[0]
        assert alive.stats.successes == 2  # the first case (kept) and the check request; no other case asked


def test_when_every_replica_is_gone_the_circuit_breaker_stops_asking_the_model(pytester: pytest.Pytester) -> None:
    """No deployment left is a setup failure of the model, counted by its breaker: the run ends in seconds with
    the reason once, not ten minutes of waiting out a 'rate limit'."""
    n = 30
    args, mapping = setup_run(pytester, n)
    servers = [ScriptedServer(mapping_responder(mapping), latency=fixed_latency(0.02)).start() for _ in range(2)]
    try:
        path = router_file(pytester.path / "router.yaml", [s.base_url for s in servers], ["a", "b"])
        watchers = [stop_after(server, 3) for server in servers]
        started = time.monotonic()
        result = pytester.runpytest(*args, "--model", MODEL, "--medcode-router", str(path),
                                    "--medcode-concurrency", "2")
        assert time.monotonic() - started < 60
        for watcher in watchers:
            watcher.join(5)
        answered = sum(s.stats.successes for s in servers) - 2  # less the check requests
        result.assert_outcomes(passed=answered, failed=n - answered)
        result.stdout.fnmatch_lines(["failed calls of openai/llama:",
                                     "  * × not asked: stopped asking openai/llama after 5 identical failures in a "
                                     "row: no deployment of the model answers*"])
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("problem", ["yaml", "unused", "no-api-base", "batch"])
def test_bad_router_input_is_one_line_exit_4_and_nothing_is_written(pytester: pytest.Pytester, problem: str) -> None:
    args, _ = setup_run(pytester, 2)
    path = pytester.path / "router.yaml"
    extra: list[str] = []
    if problem == "yaml":
        path.write_text("model_list:\n  - model_name: [unclosed\n")
    elif problem == "unused":
        router_file(path, ["http://127.0.0.1:9/v1"], [None], model="other-model")
    elif problem == "no-api-base":
        path.write_text(f"model_list:\n  - model_name: {MODEL}\n    litellm_params: {{model: {MODEL}}}\n")
    else:
        router_file(path, ["http://127.0.0.1:9/v1"], [None])
        extra = ["--medcode-batch"]
    result = pytester.runpytest(*args, "--model", MODEL, "--medcode-router", str(path), *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: --medcode-router "), errors
    assert "Traceback" not in result.stderr.str() and SECRET not in result.stderr.str()
    assert not (pytester.path / "reports").exists() and not (pytester.path / "cache.sqlite3").exists()
    expected = {"yaml": "not valid YAML (line 3)", "unused": "other-model, which no --model", "no-api-base":
                "no api_base", "batch": "--medcode-batch"}[problem]
    assert expected in errors[0]


def test_the_file_read_directly(tmp_path: Path) -> None:
    """Labels are the model_info id, else the api_base without credentials; the file's keys are its secrets."""
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"model_list": [
        {"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": "http://u:pw-secret-99@h1:8000/v1?k=1",
                                               "api_key": SECRET}},
        {"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": "http://h2:8000/v1"},
         "model_info": {"id": "awq"}},
    ]}))
    config = read_router_file(str(path))
    assert config is not None and [d.label for d in config.deployments["m"]] == ["http://h1:8000/v1", "awq"]
    assert SECRET in config.secrets() and "pw-secret-99" in config.secrets()
    assert "secret" not in json.dumps(config.to_dict())
    assert routed_names("verify:rag:m") == ["verify:rag:m", "rag:m", "m"]
    assert unused_models(config, ("rag:m",)) == [] and unused_models(config, ("x",)) == ["m"]
    assert read_router_file("") is None
    path.write_text(json.dumps({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m",
                                                                                    "api_base": "h:80"}}]}))
    with pytest.raises(ValueError, match="not an http"):
        read_router_file(str(path))
