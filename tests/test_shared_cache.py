"""The response cache under a hostile environment, with real processes, real SQLite files and the
scripted server counting every request: a cache locked by another process, a full disk, a file
damaged inside, two runs sharing one cache at once, a report folder that cannot be written, SIGTERM.

What must hold in each: no answer that arrived is lost, no question is paid for twice, and the run
ends with one line (exit 4, or 2 for an interruption), never a traceback.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import BENCHMARK
from pytest_medcode.codesystems import load_system
from pytest_medcode.testing.faults import fixed_latency
from pytest_medcode.testing.responders import mapping_responder
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TIMEOUT_S = 120
FAST = {"MEDCODE_CACHE_WAIT_S": "2", "MEDCODE_CLAIM_TTL_S": "3"}  # short waits, for tests only


def codes(n: int, offset: int = 0) -> list[tuple[str, str]]:
    return load_system("icd10cm").billable_codes()[offset::53][:n]


class Run:
    """A folder with the benchmark test, a code list and a cache; runs pytest in it as a real process."""

    def __init__(self, root: Path, chosen: list[tuple[str, str]], server: ScriptedServer,
                 cache: Path | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.cache = cache or root / "cache" / "responses.sqlite3"
        (root / "test_code_query.py").write_text(BENCHMARK)
        (root / "codes.csv").write_text("code\n" + "\n".join(c for c, _ in chosen) + "\n")
        self.args = ["-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-system", "icd10cm",
                     "--medcode-codes", "codes.csv", "--medcode-sample", "all", "--medcode-cache", str(self.cache),
                     "--model", "openai/m", "--medcode-api-base", server.base_url, "--medcode-concurrency", "4"]

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "pytest", *self.args, *extra], cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                env={**os.environ, **FAST, **(env or {})})

    def run(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = self.start(*extra, env=env)
        out, err = proc.communicate(timeout=TIMEOUT_S)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _count(cache: Path, query: str) -> int:
    try:
        with sqlite3.connect(cache, timeout=10) as db:
            return db.execute(query).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def answers_in(cache: Path) -> int:
    return _count(cache, "SELECT count(*) FROM responses WHERE text IS NOT NULL")


def claims_in(cache: Path) -> int:
    return _count(cache, "SELECT count(*) FROM claims")


def wait_until_asking(proc: subprocess.Popen, ready: Callable[[], bool], timeout_s: float = 60) -> None:
    """Poll until ``ready()`` while the run is alive; a run that dies or never gets there fails the test."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, "the run never started asking"
        time.sleep(0.05)


def assert_one_line(proc: subprocess.CompletedProcess[str], pattern: str) -> str:
    """Exit 4 and one line with ``pattern``, no traceback: ``ERROR: ...`` on stderr, or (under xdist, where a
    worker's problem ends the run from the controller) pytest's ``! ... Exit: ... !`` line."""
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "INTERNALERROR" not in text, text[-4000:]
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, text[-4000:]
    lines = proc.stderr.strip().splitlines()
    if not lines:
        lines = [line for line in proc.stdout.splitlines() if "Exit: " in line]
        assert len(lines) == 1 and lines[0].startswith("!") and pattern in lines[0], proc.stdout[-3000:]
        return lines[0]
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and pattern in lines[0], proc.stderr
    return lines[0]


def test_two_runs_sharing_a_cache_at_once_ask_each_question_once(tmp_path: Path) -> None:
    chosen = codes(300)
    with ScriptedServer(mapping_responder({d: c for c, d in chosen}), latency=fixed_latency(0.02)) as server:
        cache = tmp_path / "shared" / "responses.sqlite3"
        first, second = Run(tmp_path / "a", chosen, server, cache), Run(tmp_path / "b", chosen, server, cache)
        procs = [first.start(), second.start()]
        outs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
        for proc, (out, err) in zip(procs, outs):
            assert proc.returncode == 0, (out + err)[-3000:]
            assert "300 passed" in out
        assert server.stats.total_requests == 300  # not 600: each question asked by one run only
        assert server.stats.duplicate_successes() == {}
    assert claims_in(cache) == 0  # every claim released


def test_a_crashed_runs_claims_do_not_hold_up_the_next_run(tmp_path: Path) -> None:
    chosen = codes(40, offset=7)
    with ScriptedServer(mapping_responder({d: c for c, d in chosen}), latency=fixed_latency(0.2)) as server:
        run = Run(tmp_path, chosen, server)
        ttl = {"MEDCODE_CLAIM_TTL_S": "300"}  # claims that would hold the next run up for five minutes
        proc = run.start("--medcode-concurrency", "1", env=ttl)
        wait_until_asking(proc, lambda: run.cache.exists() and claims_in(run.cache) and answers_in(run.cache) >= 2)
        proc.kill()
        proc.communicate()
        assert claims_in(run.cache) > 0  # left behind by the killed run ...
        started = time.monotonic()
        again = run.run(env=ttl)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        assert "40 passed" in again.stdout
        # ... and void at once (its owner is dead): no wait for the expiry (well under the 300 s; the run itself
        # is ~10 s on an idle machine), at most one call repeated
        assert time.monotonic() - started < 150
        assert server.stats.total_requests <= 40 + 1


def hold_write_lock(cache: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that commits one answer, then holds the write lock (BEGIN IMMEDIATE) for ``seconds``."""
    script = f"""
import sqlite3, sys, time
from pytest_medcode.asking.cache import ResponseStore, Stored
store = ResponseStore(__import__("pathlib").Path({str(cache)!r}))
store.put("committed-elsewhere", "openai/m", Stored("Code: Z00.00", None, {{}}, 0.0, 1))
store.close()
db = sqlite3.connect({str(cache)!r}, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep({seconds})
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_cache_locked_by_another_process_is_waited_for_then_one_line_naming_it(
        tmp_path: Path, workers: tuple[str, ...]) -> None:
    chosen = codes(5, offset=3)
    with ScriptedServer(mapping_responder({d: c for c, d in chosen})) as server:
        run = Run(tmp_path, chosen, server)
        run.cache.parent.mkdir(parents=True)
        holder = hold_write_lock(run.cache, 60)
        try:
            proc = run.run(*workers)
            line = assert_one_line(proc, "is locked")
            assert f"pid {holder.pid}" in line and "nothing was moved or lost" in line
            if not workers:  # the wait is shown while it lasts (a worker has no terminal)
                assert f"medcode: waiting for the response cache {run.cache}: locked, held by pid {holder.pid}" \
                    in proc.stdout
            assert server.stats.total_requests == 0  # the claim comes before any call: nothing paid
        finally:
            holder.kill()
            holder.wait()
        assert not list(run.cache.parent.glob("*.damaged-*"))  # busy is not damaged: nothing moved
        with sqlite3.connect(run.cache) as db:
            assert db.execute("SELECT text FROM responses WHERE key = 'committed-elsewhere'").fetchone() == (
                "Code: Z00.00",)
        again = run.run()
        assert again.returncode == 0 and "5 passed" in again.stdout, again.stdout[-3000:]
        assert server.stats.total_requests == 5


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 2 MB file system (tmpfs; needs root), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_full_disk_stops_at_once_keeps_what_arrived_and_the_rerun_asks_only_the_rest(
        tmp_path: Path, small_disk: Path, workers: tuple[str, ...]) -> None:
    chosen = codes(200, offset=11)
    # 12 KB an answer (one word: the server cuts answers at max_tokens words): 200 do not fit in 2 MB, though
    # the run's rough size estimate (1 KB a case) passes the check before the first call.
    answer = {d: f"Code: {c} " + "x" * 12_000 for c, d in chosen}

    def respond(request):
        return answer[request.description]

    with ScriptedServer(respond) as server:
        run = Run(tmp_path / "run", chosen, server, small_disk / "responses.sqlite3")
        full = run.run(*workers)
        line = assert_one_line(full, "disk full")
        assert "stopped asking" in line and "a re-run asks only what is missing" in line
        asked_first = server.stats.total_requests
        assert 0 < asked_first < 200
        subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)  # space freed
        again = run.run(*workers)
        assert again.returncode == 0 and "200 passed" in again.stdout, (again.stdout + again.stderr)[-3000:]
        # Every answer that arrived before the stop was kept (in the cache or its .pending file): none asked twice.
        assert server.stats.duplicate_successes() == {}
        assert server.stats.total_requests == 200
    assert not list(small_disk.glob("*.pending-*"))


def corrupt_one_table_page(cache: Path) -> int:
    """Overwrite one leaf page of the answers table (header intact); the rows that page held."""
    with sqlite3.connect(cache) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("SELECT pageno, ncell FROM dbstat WHERE name = 'responses' AND pagetype = 'leaf' "
                           "ORDER BY pageno").fetchall()
    page, cells = pages[len(pages) // 2]
    with open(cache, "r+b") as fh:
        fh.seek((page - 1) * page_size)
        fh.write(b"\xa5" * page_size)
    return cells


def test_a_cache_damaged_inside_is_salvaged_and_only_the_lost_answers_asked_again(tmp_path: Path) -> None:
    chosen = codes(150, offset=5)
    answer = {d: f"Code: {c} " + "x" * 200 for c, d in chosen}
    with ScriptedServer(lambda request: answer[request.description]) as server:
        run = Run(tmp_path, chosen, server)
        assert run.run().returncode == 0
        lost = corrupt_one_table_page(run.cache)
        assert lost > 0
        again = run.run("-W", "always")
        text = again.stdout + again.stderr
        assert again.returncode == 0 and "150 passed" in again.stdout, text[-3000:]
        assert "Traceback" not in text and "INTERNALERROR" not in text
        assert f"salvaged {150 - lost} row(s), lost {lost}" in text
        assert server.stats.total_requests == 150 + lost  # only the lost answers paid again
        (aside,) = run.cache.parent.glob("responses.sqlite3.damaged-*[0-9]")
        assert aside.stat().st_size > 0
        with sqlite3.connect(run.cache) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_report_folder_under_a_file_is_one_line_before_any_call(tmp_path: Path) -> None:
    chosen = codes(3)
    with ScriptedServer(mapping_responder({d: c for c, d in chosen})) as server:
        run = Run(tmp_path, chosen, server)
        (tmp_path / "blocker").write_text("a file")
        proc = run.run("--medcode-report-dir", "blocker/reports")
        assert_one_line(proc, "blocker/reports: cannot create it")
        assert server.stats.total_requests == 0


def test_a_read_only_report_folder_is_one_line_before_any_call(tmp_path: Path) -> None:
    chosen = codes(3)
    readonly = tmp_path / "ro"
    readonly.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(readonly)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        with ScriptedServer(mapping_responder({d: c for c, d in chosen})) as server:
            proc = Run(tmp_path / "run", chosen, server).run("--medcode-report-dir", str(readonly / "reports"))
            assert_one_line(proc, "cannot write in")
            assert server.stats.total_requests == 0
    finally:
        subprocess.run(["umount", "-l", str(readonly)], capture_output=True)


REPORTS_BECOME_A_FILE = '''
import pathlib

def pytest_sessionstart(session):
    pathlib.Path("reports").write_text("the report folder's place is taken after the checks")
'''


def test_reports_that_cannot_be_written_at_the_end_still_print_the_tables_and_exit_4(tmp_path: Path) -> None:
    chosen = codes(4, offset=2)
    with ScriptedServer(mapping_responder({d: c for c, d in chosen})) as server:
        run = Run(tmp_path, chosen, server)
        (tmp_path / "conftest.py").write_text(REPORTS_BECOME_A_FILE)
        proc = run.run()
        text = proc.stdout + proc.stderr
        assert proc.returncode == pytest.ExitCode.USAGE_ERROR, text[-3000:]  # not 1: no code was wrong
        assert "Traceback" not in text and "INTERNALERROR" not in text, text[-3000:]
        assert "4 passed" in proc.stdout
        assert "exact match" in proc.stdout.lower()  # the results table still printed
        errors = [line for line in proc.stdout.splitlines() if line.startswith("error: could not write the run")]
        assert len(errors) == 1 and "kept in the response cache" in errors[0]
        assert answers_in(run.cache) == 4
        (tmp_path / "conftest.py").unlink()
        (tmp_path / "reports").unlink()
        again = run.run()
        assert again.returncode == 0 and (tmp_path / "reports" / "latest" / "cases.parquet").exists()
        assert server.stats.total_requests == 4  # the re-run wrote the reports from the cache


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_sigterm_stops_like_ctrl_c_keeps_the_answers_and_leaves_no_lock(tmp_path: Path) -> None:
    chosen = codes(60, offset=9)
    with ScriptedServer(mapping_responder({d: c for c, d in chosen}), latency=fixed_latency(0.1)) as server:
        run = Run(tmp_path, chosen, server)
        proc = run.start("--medcode-concurrency", "2")
        wait_until_asking(proc, lambda: run.cache.exists() and answers_in(run.cache) >= 5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, (out + err)[-3000:]
        assert "Interrupted: SIGTERM during the query phase" in out + err
        kept = answers_in(run.cache)
        assert kept >= 5
        assert claims_in(run.cache) == 0
        assert not list((run.cache.parent / "runs").glob("*/query.lock"))  # the run's state is cleaned up
        again = run.run()
        assert again.returncode == 0 and "60 passed" in again.stdout
        assert server.stats.total_requests <= 60 + 2  # at most the calls in flight at the signal again


def test_too_little_free_space_for_the_run_is_one_line_before_any_call(tmp_path: Path, small_disk: Path) -> None:
    chosen = codes(1000)
    with ScriptedServer(mapping_responder({d: c for c, d in chosen})) as server:
        run = Run(tmp_path / "run", chosen, server, small_disk / "responses.sqlite3")
        proc = run.run("--medcode-report-dir", str(small_disk / "reports"))
        # 1 MB margin per folder + 1000 cases x (1 KB + 4 bytes x 50 max tokens), cache and reports on one disk
        assert_one_line(proc, f"not enough free space in {small_disk}: 2.1 MB free, this run of 1000 case(s) "
                              "needs about 3.3 MB")
        assert server.stats.total_requests == 0
