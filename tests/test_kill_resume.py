"""``kill -9`` in the middle of an xdist run: of the whole run, and of the one worker that is asking.

The query phase stores each answer the moment it arrives, so what a killed run had received is
kept, and the next run asks only the rest. These tests kill real processes at a moment chosen
by watching the response cache fill, then check the server's request counts: no answered key is
asked again, nothing is lost, and the SQLite file passes ``PRAGMA integrity_check``. A call in
flight at the kill may have been answered by the server but never received; only those (at most
``--medcode-concurrency`` of them) may be asked again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import BENCHMARK
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.faults import fixed_latency
from pytest_medcode.testing.responders import Request, mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CONCURRENCY = 4


class Recorder:
    """A model that knows the codes, remembering which code each server-side key was answered with."""

    def __init__(self, codes: list[tuple[str, str]]) -> None:
        self._respond = mapping_responder({d: c for c, d in codes})
        self._lock = threading.Lock()
        self.code_of_key: dict[str, str] = {}

    def __call__(self, request: Request) -> str:
        text = self._respond(request)
        with self._lock:
            self.code_of_key[request.key] = text.removeprefix("Code: ")
        return text

    def answers_per_code(self, server: ScriptedServer) -> Counter[str]:
        with self._lock:
            return Counter({self.code_of_key[k]: n for k, n in server.stats.successes_per_key.items()})


def setup_run(pytester: pytest.Pytester, codes: list[tuple[str, str]], server: ScriptedServer) -> list[str]:
    pytester.makepyfile(test_code_query=BENCHMARK)
    path = pytester.path / "codes.csv"
    path.write_text("code\n" + "\n".join(c for c, _ in codes) + "\n")
    return ["--medcode-system", "icd10cm", "--medcode-codes", str(path), "--medcode-sample", "all",
            "--medcode-no-similarity", "-p", "no:cacheprovider", "--medcode-cache", str(db_path(pytester)),
            "--model", "openai/m", "--medcode-api-base", server.base_url,
            "--medcode-concurrency", str(CONCURRENCY)]


def db_path(pytester: pytest.Pytester) -> Path:
    return pytester.path / "cache" / "responses.sqlite3"


def stored_codes(db: Path) -> set[str]:
    """Codes whose answers are committed in the response cache (the answer text names the code)."""
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            rows = conn.execute("SELECT text FROM responses WHERE text IS NOT NULL").fetchall()
    except sqlite3.OperationalError:  # created but no table yet
        return set()
    return {text.removeprefix("Code: ") for (text,) in rows}


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def start(pytester: pytest.Pytester, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pytest", *args, "-n", "2"]
    return subprocess.Popen(cmd, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})


def wait_for_answers(db: Path, proc: subprocess.Popen, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(stored_codes(db)) < at_least:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the query phase never got going"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc, so no ps needed)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if int(ppid) == pid and state != "Z":
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def lock_holder(state_root: Path) -> int:
    """PID of the process holding the run's query lock (``runs/<run id>/query.lock``), from /proc/locks."""
    (lock,) = state_root.glob("*/query.lock")
    inode = os.stat(lock).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" not in fields and fields[1] == "FLOCK" and fields[5].rpartition(":")[2] == str(inode):
            return int(fields[4])
    raise AssertionError(f"nobody holds {lock}")


def assert_resumed_without_repeats(recorder: Recorder, server: ScriptedServer, codes: list[tuple[str, str]],
                                   stored_at_kill: set[str]) -> None:
    answers = recorder.answers_per_code(server)
    assert set(answers) == {c for c, _ in codes}  # every key answered ...
    asked_again = {code for code, n in answers.items() if n > 1}
    assert not asked_again & stored_at_kill  # ... none that had been stored asked again ...
    assert len(asked_again) <= CONCURRENCY  # ... only calls in flight at the kill may be
    # Requests beyond one per code: the calls in flight at the kill (answered, or cut off mid-answer).
    assert len(codes) <= server.stats.total_requests <= len(codes) + CONCURRENCY


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_killing_an_xdist_run_stops_its_workers_and_the_next_run_asks_only_the_rest(
    pytester: pytest.Pytester,
) -> None:
    codes = load_system("icd10cm").billable_codes()[5::211][:200]
    recorder = Recorder(codes)
    db = db_path(pytester)
    with ScriptedServer(recorder, latency=fixed_latency(0.05)) as server:
        args = setup_run(pytester, codes, server)
        proc = start(pytester, args)
        wait_for_answers(db, proc, 30)
        workers = children(proc.pid)
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        # Orphaned, the workers stop asking (and paying) at once instead of finishing the phase.
        deadline = time.monotonic() + 5
        while any(map(alive, workers)):
            assert time.monotonic() < deadline, "the killed run's workers kept running"
            time.sleep(0.1)
        stored_at_kill = stored_codes(db)
        assert 30 <= len(stored_at_kill) < len(codes)
        assert len(recorder.answers_per_code(server)) <= len(stored_at_kill) + CONCURRENCY
        assert integrity(db) == "ok"

        result = pytester.runpytest_subprocess(*args, "-n", "2", timeout=120)
        result.assert_outcomes(passed=len(codes))
        assert_resumed_without_repeats(recorder, server, codes, stored_at_kill)
    assert integrity(db) == "ok"


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="finds the lock holder in /proc/locks")
def test_killing_the_asking_worker_hands_the_phase_over_and_loses_nothing(pytester: pytest.Pytester) -> None:
    codes = load_system("icd10cm").billable_codes()[7::223][:200]
    recorder = Recorder(codes)
    db = db_path(pytester)
    with ScriptedServer(recorder, latency=fixed_latency(0.05)) as server:
        args = setup_run(pytester, codes, server)
        # The dead worker's claims are void once not renewed for the claim TTL (60 s by default); 10 s here,
        # renewed every 3.3 s by the live one, so the hand-over is not a minute's wait.
        proc = start(pytester, args, env={"MEDCODE_CLAIM_TTL_S": "10"})
        wait_for_answers(db, proc, 30)
        asker = lock_holder(db.parent / "runs")
        assert asker in children(proc.pid)  # an xdist worker, not the controller
        stored_at_kill = stored_codes(db)  # read just before: the next asker may store more right after
        os.kill(asker, signal.SIGKILL)
        # The other worker takes the lock and asks the rest; xdist replaces the dead one; the run completes.
        output, _ = proc.communicate(timeout=120)
        text = output.decode(errors="replace")
        assert proc.returncode == 0, text[-3000:]
        assert f"{len(codes)} passed" in text
        assert "Traceback" not in text
        assert_resumed_without_repeats(recorder, server, codes, stored_at_kill)
        assert integrity(db) == "ok"  # a fully answered re-run asks nothing: test_querying.py, under xdist
