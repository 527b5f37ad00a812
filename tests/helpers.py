"""Helpers the plugin's tests share: reading back the run folder a session wrote, and making a real one.

Imported as ``from helpers import ...`` (pytest puts tests/ on ``sys.path``, as for ``from conftest import``).
Reads go through :func:`pytest_medcode.runs.folder.load_run`, the one reader of a run folder, so a test sees
the records ``medcode report`` and the gate see.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_medcode.paths import cache_root
from pytest_medcode.runs.folder import load_run

TEST_FILE = "def test_code_query(medcode_case, medcode):\n    medcode.check(medcode_case)\n"


def latest_run(pytester: pytest.Pytester) -> Path:
    """The run folder the last session in ``pytester``'s folder wrote (``reports/latest``)."""
    return pytester.path / "reports" / "latest"


def summary_of(pytester: pytest.Pytester) -> dict[str, Any]:
    """That run's summary.json."""
    return json.loads((latest_run(pytester) / "summary.json").read_text())


def cases_of(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    """That run's case records, as load_run reads them."""
    return load_run(latest_run(pytester)).records


def record_lookup_run(folder: Path, *args: str) -> Path:
    """A real session of the plugin in its own process, in ``folder``, answered by the offline lookup coder
    (``args``: the systems and the sample); returns its run folder. The code tables come from the tests'
    shared cache."""
    (folder / "test_codes.py").write_text(TEST_FILE)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--medcode-no-similarity",
         "--medcode-report-dir", "reports", *args, "test_codes.py"],
        cwd=folder, env={**os.environ, "MEDCODE_CACHE_DIR": str(cache_root())}, capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (folder / "reports" / "latest").resolve()


def wait_for_batch(db: Path, proc: subprocess.Popen, timeout: float = 60) -> str:
    """The id of the first batch a run in ``proc`` records in its response cache ``db`` (a kill -9 test kills it
    then); fails when the run ends first or none is recorded in ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "ended"
        assert time.monotonic() < deadline, "no batch was recorded"
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                found = conn.execute("SELECT batch_id FROM batches WHERE batch_id IS NOT NULL").fetchone()
        except sqlite3.OperationalError:
            found = None
        if found:
            return str(found[0])
        time.sleep(0.05)


def code_list_args(pytester: pytest.Pytester, codes: list[tuple[str, str]], model: str, api_base: str,
                   *extra: str) -> list[str]:
    """A session of the benchmark test over exactly ``codes`` (written as a code list), asking ``model`` at
    ``api_base``, without similarity scores."""
    from conftest import BENCHMARK

    pytester.makepyfile(test_code_query=BENCHMARK)
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
    return ["--medcode-system", "icd10cm", "--medcode-codes", str(path), "--medcode-sample", "all",
            "--medcode-no-similarity", "-p", "no:cacheprovider", "--model", model, "--medcode-api-base", api_base,
            *extra]


def run_batch(runner: Any, calls: dict[str, Any], notices: list[str] | None = None) -> tuple[list[str], dict[str, Any]]:
    """A batch runner's path over ``calls`` (key → Call): the keys left to stream and the outcomes delivered,
    each key once and under its own model."""
    from pytest_medcode.asking.progress import Progress

    got: dict[str, Any] = {}
    if notices is not None:
        runner.notice = notices.append

    def deliver(items: list[tuple[str, str, Any]]) -> None:
        for key, model, outcome in items:
            assert key not in got and model == calls[key].model
            got[key] = outcome

    left = runner.run(list(calls), set(calls), calls.__getitem__, deliver, Progress(total=len(calls)), lambda: None)
    return left, got


def poll_outage(times: int, status: int) -> Any:
    """A batch plan's ``outage``: the first ``times`` polls of a batch (``GET /batches/ID``) answered ``status``."""
    left = [times]

    def outage(method: str, path: str) -> int | None:
        if method == "GET" and path.startswith("/batches/") and left[0] > 0:
            left[0] -= 1
            return status
        return None

    return outage


def batch_question(i: int) -> Any:
    """The ``i``-th question of the batch runner's tests: a system message, then the description asked."""
    from pytest_medcode.asking.coders import Question

    return Question("icd10cm", f"Description {i}", (("system", "Answer with the code."),
                                                    ("user", f"What is the code for <Description {i}>?")), 0.2, 50)


def lost_submission_is_found_again(server: Any, api: Any, new_runner: Any, calls: dict[str, Any]) -> dict[str, Any]:
    """A batch made whose answer never reached the client: its requests end the run unanswered, neither sent
    again nor streamed, and the next run re-attaches to it without submitting again. The first run's ledger row.
    ``api``: the server's batch API the runners reach; ``new_runner()``: a runner of a fresh run."""
    api.drop_answers = 1  # the batch is made; the connection closes before its answer
    notices: list[str] = []
    runner = new_runner()
    left, got = run_batch(runner, calls, notices)
    assert (left, got) == ([], {}) and sorted(runner.unanswered) == sorted(calls)
    assert all(not o.keep and o.error.startswith("not asked: its batch") for o in runner.unanswered.values())
    assert notices[0].startswith("medcode: submitting batch ") and "are not sent again, a rerun re-attaches" in \
        notices[0]
    (row,) = runner.ledger.rows()
    assert (row["batch_id"], row["done"], row["owner"]) == (None, 0, None)

    left, got = run_batch(new_runner(), calls, notices)
    assert left == [] and sorted(got) == sorted(calls)
    assert notices[-1].startswith("medcode: re-attached to 1 batch(es)")
    assert api.submissions == 1 and api.duplicate_submissions() == {}
    assert server.duplicate_successes() == {}
    return dict(row)
