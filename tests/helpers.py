"""Helpers the plugin's tests share: reading back the run folder a session wrote, and making a real one.

Imported as ``from helpers import ...`` (pytest puts tests/ on ``sys.path``, as for ``from conftest import``).
Reads go through :func:`pytest_medcode.runs.folder.load_run`, the one reader of a run folder, so a test sees
the records ``medcode report`` and the gate see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
