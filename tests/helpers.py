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
