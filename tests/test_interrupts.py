"""SIGINT and SIGTERM at every stage of a run: one line, exit 2, nothing received lost.

Each test runs pytest as a real process against the scripted server and holds it in one stage until
the signal is sent: the server holds its answers after the first few (the query phase), or a test-only
hook in the run's conftest.py waits at a known point — the start of collection, the third test, the
METEOR scorer of the similarity pass, the Markdown report of the run folder — and says so with a file.
Nothing of the plugin is replaced. Then: the exit code, the one line about the interrupt (no traceback),
what the run folder holds, and that a re-run asks the model only what had not been answered.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import BENCHMARK
from pytest_medcode.codesystems import load_system
from pytest_medcode.runs.folder import point_latest
from pytest_medcode.testing.responders import Request, mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals")]

TIMEOUT_S = 120
N_CODES = 12
FREE = 4  # answers the held server gives before it holds the rest

#: Test-only hooks that wait, at a known point of a stage, for the signal (the READY file says they are there).
PREAMBLE = """import os, pathlib, time
READY = pathlib.Path(__file__).parent / "ready"
def wait():
    READY.touch()
    time.sleep(float(os.environ.get("HOLD_S", "120")))
"""
HOLDS = {
    "collection": "def pytest_collectstart(collector):\n    if collector.nodeid == '':\n        wait()\n",
    "tests": "def pytest_runtest_call(item):\n    if item.session.items.index(item) == 2:\n        wait()\n",
    "similarity": ("from pytest_medcode.scoring import similarity\n_score = similarity.MeteorScorer.score\n"
                   "def _held(self, pairs):\n    wait()\n    return _score(self, pairs)\n"
                   "similarity.MeteorScorer.score = _held\n"),
    "writing": ("from pytest_medcode.reports import markdown\n_render = markdown.render\n"
                "def _held(*args):\n    wait()\n    return _render(*args)\nmarkdown.render = _held\n"),
}


class Held:
    """A model that knows the codes, answering the first ``free`` requests and holding the rest (until released)."""

    def __init__(self, codes: list[tuple[str, str]], free: int | None = None) -> None:
        self._respond = mapping_responder({d: c for c, d in codes})
        self.free = free
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.seen = 0

    def __call__(self, request: Request) -> str:
        with self._lock:
            self.seen += 1
            hold = self.free is not None and self.seen > self.free
        if hold:
            self.released.wait(TIMEOUT_S)
        return self._respond(request)


class Run:
    """A pytester folder with the benchmark, a code list, a cache and a hold; runs pytest as a real process."""

    def __init__(self, root: Path, server: ScriptedServer, codes: list[tuple[str, str]], hold: str | None = None,
                 similarity: bool = False) -> None:
        self.root = root
        self.cache = root / "cache" / "responses.sqlite3"
        self.ready = root / "ready"
        (root / "test_code_query.py").write_text(BENCHMARK)
        (root / "codes.csv").write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
        (root / "conftest.py").write_text(PREAMBLE + HOLDS.get(hold or "", ""))
        self.args = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--medcode-system", "icd10cm",
                     "--medcode-codes", "codes.csv", "--medcode-sample", "all", "--medcode-cache", str(self.cache),
                     "--model", "openai/m", "--medcode-api-base", server.base_url, "--medcode-concurrency", "2",
                     "--medcode-price", "openai/m=1/1", *([] if similarity else ["--medcode-no-similarity"])]

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "pytest", *self.args, *extra], cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                env={**os.environ, **(env or {})}, start_new_session=True)

    def interrupt(self, proc: subprocess.Popen[str], ready, *signals: int, group: bool = False,
                  between_s: float = 0.3) -> subprocess.CompletedProcess[str]:
        """Wait for ``ready()``, send the signals, and collect the run's output."""
        deadline = time.monotonic() + TIMEOUT_S
        while not ready():
            assert proc.poll() is None, "the run ended before the signal: " + "".join(proc.communicate())[-3000:]
            assert time.monotonic() < deadline, "the run never reached the stage"
            time.sleep(0.02)
        for i, signum in enumerate(signals):
            if i:
                time.sleep(between_s)
            if group:  # Ctrl-C at a terminal: the whole process group (the xdist workers too)
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
        out, err = proc.communicate(timeout=TIMEOUT_S)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        proc = self.start(*extra)
        out, err = proc.communicate(timeout=TIMEOUT_S)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def answers(self) -> int:
        try:
            with sqlite3.connect(self.cache, timeout=10) as db:
                return db.execute("SELECT count(*) FROM responses WHERE text IS NOT NULL").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0

    def run_folders(self) -> list[Path]:
        reports = self.root / "reports"
        return sorted(p for p in reports.iterdir() if p.is_dir() and not p.is_symlink()) if reports.exists() else []

    def state_left(self) -> list[Path]:
        """This run's state (lock, progress) left beside the cache."""
        runs = self.cache.parent / "runs"
        return list(runs.iterdir()) if runs.exists() else []


def codes(offset: int) -> list[tuple[str, str]]:
    return load_system("icd10cm").billable_codes()[offset::97][:N_CODES]


def the_line(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 2 and one line about the interrupt, pytest's banner ``!!! Interrupted: ... !!!``; no traceback."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text[-4000:]
    for word in ("Traceback", "KeyboardInterrupt", "INTERNALERROR", "--full-trace"):
        assert word not in text, text[-4000:]
    about = [line for line in text.splitlines() if "Interrupted" in line or "SIG" in line]
    assert len(about) == 1, text[-4000:]
    line = about[0]
    assert line.startswith("!") and line.rstrip().endswith("!") and "Interrupted: SIG" in line, line
    for part in expected:
        assert part in line, line
    return line


def test_a_signal_during_collection_is_one_line_and_nothing_was_asked(tmp_path: Path) -> None:
    with ScriptedServer(Held(codes(1))) as server:
        run = Run(tmp_path, server, codes(1), hold="collection")
        done = run.interrupt(run.start(), run.ready.exists, signal.SIGTERM)
        the_line(done, "SIGTERM during collection: no model was asked")
        assert server.stats.total_requests == 0 and not run.run_folders()


@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)], ids=["once", "twice"])
def test_a_signal_in_the_query_phase_keeps_every_answer_and_a_rerun_asks_only_the_rest(
    tmp_path: Path, signals: tuple[int, ...]
) -> None:
    chosen = codes(2)
    held = Held(chosen, free=FREE)
    with ScriptedServer(held) as server:
        run = Run(tmp_path, server, chosen)
        try:
            done = run.interrupt(run.start(), lambda: run.answers() >= FREE, *signals)
        finally:
            held.released.set()
        name = signal.Signals(signals[0]).name
        if len(signals) == 1:
            the_line(done, f"{name} during the query phase: ", f"of {N_CODES} answered",
                     "kept in the response cache, a re-run asks only the rest", "no run folder")
        else:  # the second stops the run at once if the first one's stopping is still under way; if that was
            # already done (a fast machine), the second lands in pytest's own clean-up: still the one line, exit 2
            line = the_line(done, "no run folder")
            assert f"{name} again: stopped at once; no run folder; every answer received is kept" in line \
                or f"{name} during the query phase: " in line, line
        kept = run.answers()
        assert kept >= FREE and not run.run_folders() and not run.state_left()
        asked = server.stats.total_requests
        again = run.run()
        assert again.returncode == 0 and f"{N_CODES} passed" in again.stdout, again.stdout[-3000:]
        assert server.stats.total_requests - asked == N_CODES - kept  # only what was missing


def test_a_signal_during_the_tests_writes_the_run_folder_with_the_cases_that_finished(tmp_path: Path) -> None:
    chosen = codes(3)
    with ScriptedServer(Held(chosen)) as server:
        run = Run(tmp_path, server, chosen, hold="tests")
        done = run.interrupt(run.start(), run.ready.exists, signal.SIGTERM)
        the_line(done, "SIGTERM during the tests: the run folder keeps the 2 case(s) that finished",
                 "a re-run asks only what is missing")
        assert "2 passed" in done.stdout
        (folder,) = run.run_folders()
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["n_cases"] == 2 and summary["gate"] is None
        assert run.answers() == N_CODES == server.stats.total_requests  # the query phase had asked them all
        assert not run.state_left()


def test_a_signal_in_the_similarity_pass_writes_the_run_folder_with_the_code_scores(tmp_path: Path) -> None:
    chosen = codes(4)
    with ScriptedServer(Held(chosen)) as server:
        run = Run(tmp_path, server, chosen, hold="similarity", similarity=True)
        done = run.interrupt(run.start(), run.ready.exists, signal.SIGINT)
        line = the_line(done, "SIGINT during the similarity pass: the run folder ",
                        "has every case's code scores but no similarity (medcode rescore ")
        (folder,) = run.run_folders()
        assert str(folder) in line and f"{N_CODES} passed" in done.stdout
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["n_cases"] == N_CODES
        assert "stopped before this pass" in summary["similarity"]["meteor"]["reason"]
        assert os.readlink(folder.parent / "latest") == folder.name
        assert server.stats.total_requests == N_CODES


def test_a_signal_while_the_run_folder_is_written_lets_it_finish(tmp_path: Path) -> None:
    chosen = codes(5)
    with ScriptedServer(Held(chosen)) as server:
        run = Run(tmp_path, server, chosen, hold="writing")
        done = run.interrupt(run.start(env={"HOLD_S": "1.5"}), run.ready.exists, signal.SIGINT)
        line = the_line(done, "SIGINT while writing the run folder: the run folder ", "is written")
        (folder,) = run.run_folders()
        assert str(folder) in line
        assert {p.name for p in folder.iterdir()} >= {"cases.parquet", "summary.json", "report.md", "report.html"}


def test_a_second_signal_while_the_run_folder_is_written_stops_at_once_and_a_rerun_writes_it(
    tmp_path: Path,
) -> None:
    chosen = codes(6)
    with ScriptedServer(Held(chosen)) as server:
        run = Run(tmp_path, server, chosen, hold="writing")
        done = run.interrupt(run.start(), run.ready.exists, signal.SIGTERM, signal.SIGTERM)
        the_line(done, "SIGTERM again while writing the run folder: it is not kept",
                 "a re-run replays them and writes it")
        assert not run.run_folders() and not run.state_left()  # no half a folder, no lock
        (run.root / "conftest.py").write_text("")
        again = run.run()
        assert again.returncode == 0 and len(run.run_folders()) == 1, again.stdout[-3000:]
        assert server.stats.total_requests == N_CODES  # replayed from the cache


@pytest.mark.parametrize("group", [False, True], ids=["sigterm-to-the-controller", "ctrl-c-to-every-process"])
def test_xdist_a_signal_in_the_query_phase_stops_the_workers_and_a_rerun_asks_only_the_rest(
    tmp_path: Path, group: bool
) -> None:
    chosen = codes(7)
    held = Held(chosen, free=FREE)
    with ScriptedServer(held) as server:
        run = Run(tmp_path, server, chosen)
        signum = signal.SIGINT if group else signal.SIGTERM
        try:
            done = run.interrupt(run.start("-n", "2"), lambda: run.answers() >= FREE, signum, group=group)
        finally:
            held.released.set()
        the_line(done, f"{signal.Signals(signum).name} during the query phase: ",
                 "kept in the response cache, a re-run asks only the rest")
        kept = run.answers()
        assert kept >= FREE and not run.state_left()
        asked = server.stats.total_requests
        again = run.run()  # what is kept does not depend on -n: the re-run need not start workers again
        assert again.returncode == 0 and f"{N_CODES} passed" in again.stdout, again.stdout[-3000:]
        assert server.stats.total_requests - asked == N_CODES - kept


def test_a_session_without_benchmark_cases_keeps_pytests_own_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(PREAMBLE + "def test_waits():\n    wait()\n")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + TIMEOUT_S
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "".join(proc.communicate())[-3000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
    assert "KeyboardInterrupt" in out and "Interrupted: SIG" not in out, out[-3000:]


# -- the latest pointer -------------------------------------------------------------------------------


def test_a_real_latest_folder_is_left_alone_and_no_temporary_link_is_left_beside_it(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    (root / "latest").mkdir(parents=True)  # the user's own folder, where the link would go
    (root / "latest" / "notes.txt").write_text("mine")
    for run_id in ("20260101-000000-aaaaaa", "20260101-000001-bbbbbb"):
        (root / run_id).mkdir()
        point_latest(root / run_id)
        assert sorted(p.name for p in root.iterdir()) == sorted(
            ["LATEST", "latest", "20260101-000000-aaaaaa", *(["20260101-000001-bbbbbb"] if "bbb" in run_id else [])])
        assert (root / "LATEST").read_text() == run_id + "\n"
    assert (root / "latest").is_dir() and not (root / "latest").is_symlink()
    assert (root / "latest" / "notes.txt").read_text() == "mine"


def test_latest_is_a_link_to_the_newest_run(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    for run_id in ("20260101-000000-aaaaaa", "20260101-000001-bbbbbb"):
        (root / run_id).mkdir(parents=True)
        point_latest(root / run_id)
    assert os.readlink(root / "latest") == "20260101-000001-bbbbbb"
    assert not list(root.glob(".latest-*")) and not (root / "LATEST").exists()
