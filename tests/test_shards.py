"""A run split over a CI matrix with pytest-split (``--splits N --group K``) and merged with ``medcode merge``.

Real sessions in-process (pytester) against the scripted server; the merged folder is compared with the
unsharded run of the same selection, row by row and number by number.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from helpers import TEST_FILE
from pytest_medcode.cli import main
from pytest_medcode.codesystems import load_system
from pytest_medcode.paths import cache_root
from pytest_medcode.runs.folder import load_run, write_cases
from pytest_medcode.runs.merge import fingerprint
from pytest_medcode.testing.responders import mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytest.importorskip("pytest_split")

#: What differs between two runs of the same answers by nature: when and how long each ran, its own id
#: and folder, the wall time of its query phase and similarity pass, and a merge's record of its shards.
PER_RUN_SUMMARY = ("run_id", "created", "duration_s", "merged_from")
PER_RUN_NESTED = (("queries", "phase_s"), ("similarity", "seconds"))
#: ... and of a case: how long its call took.
PER_RUN_COLUMNS = ("latency_s",)

MODEL = "openai/m"


@pytest.fixture(scope="module")
def mapping() -> dict[str, str]:
    return {d: c for system in ("icd10cm", "icd9cm") for c, d in load_system(system).billable_codes()}


@pytest.fixture
def server(mapping: dict[str, str]) -> ScriptedServer:
    with ScriptedServer(mapping_responder(mapping, wrong_fraction=0.3)) as srv:  # wrong on some codes
        yield srv


def base_args(server: ScriptedServer, *extra: str) -> list[str]:
    return ["-p", "no:cacheprovider", "-q", "--model", MODEL, "--medcode-api-base", server.base_url,
            "--medcode-system", "icd10cm,icd9cm", "--medcode-sample", "12", "--medcode-no-cache",
            "--medcode-no-similarity",
            "--medcode-no-preflight", "--medcode-price", f"{MODEL}=1/2", *extra]


def run(pytester: pytest.Pytester, folder: str, *args: str) -> Path:
    """One session writing its run folder under ``folder``; returns the folder."""
    pytester.makepyfile(test_code_query=TEST_FILE)
    result = pytester.runpytest(*args, "--medcode-report-dir", folder)
    assert result.ret in (0, 1), result.stdout.str()  # 1: a wrong code fails its case
    return (pytester.path / folder / "latest").resolve()


def shards(pytester: pytest.Pytester, args: list[str], splits: int, *extra: str) -> list[Path]:
    return [run(pytester, f"shard{k}", *args, "--splits", str(splits), "--group", str(k), *extra)
            for k in range(1, splits + 1)]


def merge(*argv: str) -> int:
    return main(["merge", *argv])


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in summary.items() if k not in PER_RUN_SUMMARY}
    for key, inner in PER_RUN_NESTED:
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k != inner}
    return out


def assert_same_run(unsharded: Path, merged: Path) -> None:
    a, b = pq.read_table(unsharded / "cases.parquet"), pq.read_table(merged / "cases.parquet")
    assert a.schema == b.schema
    assert a.drop_columns(list(PER_RUN_COLUMNS)).equals(b.drop_columns(list(PER_RUN_COLUMNS)))
    one, other = (json.loads((f / "summary.json").read_text()) for f in (unsharded, merged))
    assert one["shard"] is None and other["shard"] is None
    assert comparable(one) == comparable(other)


@pytest.mark.parametrize("split", [
    pytest.param((), id="chunks-without-durations"),
    pytest.param(("--splitting-algorithm", "least_duration", "--durations-path", "durations.json"),
                 id="least-duration-with-durations"),
])
def test_merged_shards_are_the_unsharded_run(pytester: pytest.Pytester, server: ScriptedServer,
                                             capsys: pytest.CaptureFixture[str], split: tuple[str, ...]) -> None:
    args = base_args(server, "--medcode-repeats", "2")
    unsharded = run(pytester, "whole", *args)
    records = load_run(unsharded).records
    # Uneven durations, so least_duration's groups are not every third case.
    nodeids = [f"test_code_query.py::test_code_query[{r['case_id']}]" for r in records]
    (pytester.path / "durations.json").write_text(json.dumps({n: (i % 7) / 10 for i, n in enumerate(nodeids)}))
    parts = shards(pytester, args, 3, *split)
    recorded = [json.loads((p / "summary.json").read_text())["shard"] for p in parts]
    assert [s["group"] for s in recorded] == [1, 2, 3]
    # The whole selection, before the split: every shard names the unsharded run's cases, in its order.
    assert all(s["selection"] == {"cases": len(records), "fingerprint": fingerprint(r["case_id"] for r in records)}
               for s in recorded)
    assert sum(len(load_run(p).records) for p in parts) == len(records)
    assert 0 < len(load_run(parts[0]).records) < len(records)  # the query phase asked only its group's cases
    asked_per_shard = [json.loads((p / "summary.json").read_text())["queries"]["asked"] for p in parts]
    assert sum(asked_per_shard) == json.loads((unsharded / "summary.json").read_text())["queries"]["asked"]

    out = pytester.path / "merged"
    assert merge(*map(str, reversed(parts)), "--out", str(out)) == 0  # any order of the shards
    assert_same_run(unsharded, out)
    capsys.readouterr()

    # The gate runs on the merged folder as on any run.
    assert main(["compare", str(unsharded), str(out), "--fail-under", "exact_match=0.01"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["compare", str(unsharded), str(out), "--fail-under", "exact_match=0.99"]) == 1


def test_the_partition_is_the_same_in_every_process(pytester: pytest.Pytester) -> None:
    """Two runners (two processes, two hash seeds) give group 2 of 3 the same cases."""
    pytester.makepyfile(test_code_query=TEST_FILE)
    args = ["--collect-only", "-q", "-p", "no:cacheprovider", "--medcode-system", "icd10cm", "--medcode-sample", "30",
            "--splits", "3", "--group", "2", "test_code_query.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=pytester.path, capture_output=True, text=True,
                          env={**os.environ, "MEDCODE_CACHE_DIR": str(cache_root()), "PYTHONHASHSEED": "12345"},
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    here = pytester.runpytest(*args)
    assert here.ret == 0

    def ids(out: str) -> list[str]:
        return [line for line in out.splitlines() if "::" in line]

    assert len(ids(proc.stdout)) == 10 and ids(proc.stdout) == ids(here.stdout.str())


def test_a_shard_with_xdist_records_its_group(pytester: pytest.Pytester, server: ScriptedServer) -> None:
    """Under xdist the controller collects nothing: the workers' record of the split reaches summary.json
    (one shard with -n 1, the other without: a runner's choice)."""
    args = base_args(server)
    whole = run(pytester, "whole", *args)
    parts = [run(pytester, "one", *args, "--splits", "2", "--group", "1", "-n", "1"),
             run(pytester, "two", *args, "--splits", "2", "--group", "2")]
    out = pytester.path / "merged"
    assert merge(*map(str, parts), "--out", str(out)) == 0
    assert_same_run(whole, out)


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], out: Path) -> str:
    assert merge(*argv, "--out", str(out)) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("medcode merge: ") and "\n" not in err and "Traceback" not in captured.err
    assert not out.exists()  # nothing written
    return err


def edited(folder: Path, to: Path, **changes: Any) -> Path:
    """A copy of a shard with its summary.json changed (another release, version, prompt)."""
    shutil.copytree(folder, to)
    summary = json.loads((to / "summary.json").read_text())
    for key, value in changes.items():
        summary[key] = value(summary[key]) if callable(value) else value
    (to / "summary.json").write_text(json.dumps(summary))
    return to


def test_merge_refuses_what_is_not_one_run(pytester: pytest.Pytester, server: ScriptedServer,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = base_args(server)
    one, two, three = map(str, shards(pytester, args, 3))
    whole = str(run(pytester, "whole", *args))
    other_tokens = str(run(pytester, "tokens", *args, "--medcode-max-tokens", "60", "--splits", "3", "--group", "3"))
    other_sample = str(run(pytester, "sample", *args, "--medcode-sample", "11",
                           "--splits", "3", "--group", "3"))
    chunked_by_time = str(run(pytester, "least", *args, "--splits", "3", "--group", "3",
                              "--splitting-algorithm", "least_duration"))
    tmp = pytester.path / "edits"
    release = edited(Path(three), tmp / "release", code_systems=lambda d: {**d, "icd9cm": "FY2099"})
    version = edited(Path(three), tmp / "version", plugin_version="0.0.1")
    prompt = edited(Path(three), tmp / "prompt", prompt_template="Code this: {description}")
    cut = edited(Path(three), tmp / "cut")
    write_cases(load_run(cut).records[:-2], cut / "cases.parquet")  # a shard that stopped early
    not_a_run = pytester.mkdir("empty")
    out = pytester.path / "merged"

    cases: list[tuple[list[str], str]] = [
        ([], "no shard folders given"),
        ([one, two], "of the selection's"),  # group 3 missing
        ([one, two, three, one], "given twice"),
        ([one, two, three, chunked_by_time], "overlaps"),
        ([one, two, whole], "not a shard"),
        ([one, two, str(not_a_run)], "no cases.parquet"),
        ([one, two, other_tokens], "option max_tokens"),
        ([one, two, other_sample], "another selection"),
        ([one, two, str(release)], "code system releases"),
        ([one, two, str(version)], "pytest-medcode version"),
        ([one, two, str(prompt)], "prompt"),
        ([one, two, str(cut)], "stopped early"),
    ]
    for argv, words in cases:
        err = one_line_error(capsys, argv, out)
        assert words in err, (argv, err)
    missing = one_line_error(capsys, [one, two], out)
    assert "group(s) 3 of 3" in missing and missing.split(": ")[1].split()[0].isdigit()  # which, and how many
    assert Path(other_tokens).name in one_line_error(capsys, [one, two, other_tokens], out)  # names the shard
