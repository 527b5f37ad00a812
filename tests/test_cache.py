"""The response store: keys, atomic answers, errors that never overwrite answers, damage recovery."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_medcode.asking.cache import (
    ANSWER_LIMIT,
    CacheBusy,
    CacheError,
    CacheFull,
    ResponseStore,
    Stored,
    env_seconds,
    owner_id,
    request_key,
)


def test_key_depends_on_every_generation_input_and_is_order_free() -> None:
    base = {"model": "gpt-4", "api_base": None, "messages": [["user", "x"]], "temperature": 0.2, "max_tokens": 50}
    assert request_key(base) == request_key(dict(reversed(list(base.items()))))
    for field, other in [("model", "gpt-3.5"), ("api_base", "http://h/v1"), ("messages", [["user", "y"]]),
                         ("temperature", 0.4), ("max_tokens", 30)]:
        assert request_key({**base, field: other}) != request_key(base)


def test_key_is_the_sha256_of_compact_sorted_utf8_json() -> None:
    """The key's exact recipe, computed independently: every cache written so far is keyed this way, so a
    change of separators, key order, escaping or hash would silently turn every earlier answer into a miss."""
    identity = {"model": "gpt-4", "temperature": 0.2, "messages": [["user", "Fièvre <typhoïde>"]], "api_base": None}
    blob = '{"api_base":null,"messages":[["user","Fièvre <typhoïde>"]],"model":"gpt-4","temperature":0.2}'
    assert request_key(identity) == hashlib.sha256(blob.encode("utf-8")).hexdigest()
    assert len(request_key(identity)) == 64
    # Values JSON cannot hold are keyed by their str(): a Path and its text are the same key.
    assert request_key({"path": Path("/a/b")}) == hashlib.sha256(b'{"path":"/a/b"}').hexdigest()


def test_answers_survive_reopening_and_errors_do_not_replace_them(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    store.put("k1", "m", Stored("Code: E11.9", None, {"prompt_tokens": 5}, 0.1, 1))
    store.put("k1", "m", Stored(None, "500 later", {}, 0.2, 3))
    store.put("k2", "m", Stored(None, "timeout", {}, 1.0, 3))
    store.put("k2", "m", Stored("Code: I10", None, {}, 0.1, 1))
    store.close()
    again = ResponseStore(path).get_many(["k1", "k2", "k3"])
    assert again["k1"].text == "Code: E11.9" and again["k1"].usage == {"prompt_tokens": 5}
    assert again["k2"].text == "Code: I10" and again["k2"].error is None
    assert "k3" not in again


def test_many_keys_in_one_read(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "r.sqlite3")
    for i in range(2500):
        store.put(f"k{i}", "m", Stored(str(i), None, {}, 0.0, 1))
    assert len(store.get_many(f"k{i}" for i in range(3000))) == 2500


def test_a_file_that_is_not_sqlite_is_refused_not_moved(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    path.write_bytes(b"\x1b]0;title\x07 this is not a database" * 100)
    with pytest.raises(CacheError, match=r"is not an SQLite file \(it starts with b'\\x1b\]0;title\\x07 this '\); "
                                         "nothing was changed"):
        ResponseStore(path)
    assert path.read_bytes().startswith(b"\x1b]0;title") and sorted(tmp_path.iterdir()) == [path]
    from pytest_medcode.cli import main

    assert main(["cache", "stats", "--path", str(path)]) == 2  # one line, the file still untouched
    assert sorted(tmp_path.iterdir()) == [path]


def test_a_cache_whose_first_page_is_damaged_is_still_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    keys = fill(store, 300)
    store.close()
    leaf_pages(path, "responses")  # checkpointed: every row is in the main file
    overwrite_page(path, 1)  # the header and the schema: nothing says it is SQLite any more
    with pytest.warns(UserWarning, match=r"salvaged 300 row\(s\), lost at least 0 "):
        store = ResponseStore(path)
    assert len(store.get_many(keys)) == 300


def test_stats_and_prune(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "r.sqlite3")
    store.put("a", "m1", Stored("x", None, {}, 0.0, 1))
    store.put("b", "m1", Stored(None, "boom", {}, 0.0, 3))
    store.put("c", "m2", Stored("y", None, {}, 0.0, 1))
    models = {m["model"]: m for m in store.stats()["models"]}
    assert models["m1"]["answers"] == 1 and models["m1"]["errors"] == 1
    assert store.prune(errors_only=True) == 1
    assert store.prune(model="m2") == 1
    assert set(store.get_many(["a", "b", "c"])) == {"a"}
    assert sqlite3.connect(tmp_path / "r.sqlite3").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_medcode.cli import main

    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    store.put("a", "openai/m", Stored("x", None, {}, 0.0, 1))
    store.put("b", "openai/m", Stored(None, "boom", {}, 0.0, 3))
    store.close()
    assert main(["cache", "stats", "--path", str(path)]) == 0
    assert "openai/m" in capsys.readouterr().out
    assert main(["cache", "prune", "--path", str(path)]) == 2  # nothing said: nothing removed
    assert main(["cache", "prune", "--errors", "--path", str(path)]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert main(["cache", "clear", "--path", str(path)]) == 0
    assert ResponseStore(path).get_many(["a", "b"]) == {}
    assert main(["cache", "stats", "--path", str(tmp_path / "none.sqlite3")]) == 2


# -- a hostile environment: real files, real locks, real processes -----------------------------------

def fill(store: ResponseStore, n: int, text: str = "Code: X", width: int = 150) -> list[str]:
    keys = [f"{i:064x}" for i in range(n)]
    for key in keys:
        store.put(key, "m", Stored(text + "y" * width, None, {}, 0.1, 1))
    return keys


def leaf_pages(path: Path, name: str) -> list[tuple[int, int]]:
    """(page number, rows on it) of the leaf pages of table or index ``name``, after a checkpoint."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db.execute("SELECT pageno, ncell FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                          (name,)).fetchall()


def overwrite_page(path: Path, page: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek((page - 1) * 4096)
        fh.write(b"\xa5" * 4096)


def test_damage_inside_a_file_that_opens_is_salvaged_with_exact_numbers(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    keys = fill(store, 2000)
    store.close()
    pages = leaf_pages(path, "responses")
    page, rows_on_it = pages[len(pages) // 2]
    assert rows_on_it == 15  # 4 KB pages of ~250-byte rows
    overwrite_page(path, page)
    with pytest.warns(UserWarning, match=r"salvaged 1985 row\(s\), lost 15; the damaged file is kept as"):
        store = ResponseStore(path)
    assert store.recovered is not None and store.recovered[:2] == (1985, 15)
    assert len(store.get_many(keys)) == 1985
    assert len(list(tmp_path.glob("r.sqlite3.damaged-*[0-9]"))) == 1  # kept, with its -wal and -shm beside it
    store.put("new", "m", Stored("x", None, {}, 0.0, 1))  # the fresh file takes answers
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_damage_found_while_the_store_is_open_is_salvaged_then(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    keys = fill(store, 600)
    index_pages = leaf_pages(path, "sqlite_autoindex_responses_1")
    table_pages = leaf_pages(path, "responses")
    page, rows_on_it = table_pages[1]
    overwrite_page(path, page)  # a page of answers goes bad under an open store
    with pytest.warns(UserWarning, match=rf"salvaged {600 - rows_on_it} row\(s\), lost {rows_on_it};"):
        found = store.get_many(keys)
    assert len(found) == 600 - rows_on_it
    assert index_pages  # the key index was intact: the count of lost rows is exact


def test_an_index_page_lost_as_well_still_keeps_every_readable_answer(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    keys = fill(store, 1000)
    store.close()
    table_page, rows_on_it = leaf_pages(path, "responses")[3]
    index_page, _ = leaf_pages(path, "sqlite_autoindex_responses_1")[2]
    overwrite_page(path, table_page)
    overwrite_page(path, index_page)
    with pytest.warns(UserWarning, match="salvaged 9[0-9][0-9] row"):
        store = ResponseStore(path)
    assert len(store.get_many(keys)) == 1000 - rows_on_it  # every row on an intact table page


def tree_pages(path: Path, name: str) -> dict[str, list[int]]:
    """The pages of table or index ``name`` by role: root, interior (below the root), leaf."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        found = db.execute("SELECT pageno, pagetype, path FROM dbstat WHERE name = ? ORDER BY pageno", (name,))
        roles: dict[str, list[int]] = {"root": [], "interior": [], "leaf": []}
        for page, kind, where in found:
            roles["root" if where == "/" else "leaf" if kind == "leaf" else "interior"].append(page)
        return roles


def big_cache(path: Path, rows: int, width: int) -> list[str]:
    store = ResponseStore(path)
    keys = [f"{i:064x}" for i in range(rows)]
    store.put_many([(k, "m", Stored("Code: X" + "y" * width, None, {}, 0.1, 1)) for k in keys])
    store.close()
    return keys


@pytest.mark.parametrize(
    ("damage", "kept", "lost"),
    [("table-leaf", 1200 - 2, "2"), ("table-interior", 1200, "0"), ("table-root", 1200, "0"),
     ("key-index", 1200, "0"), ("table-leaf-and-key-index", 1200 - 2, "at least [0-9]+")],
)
def test_each_kind_of_damage_is_salvaged_in_bounded_time(tmp_path: Path, damage: str, kept: int, lost: str) -> None:
    """Two rows a page, so the table has interior pages below its root; the salvage reads the file's pages
    itself (no tree needed), so a damaged root or interior page loses nothing and a damaged index costs no time."""
    path = tmp_path / "r.sqlite3"
    keys = big_cache(path, 1200, 1700)
    table, index = tree_pages(path, "responses"), tree_pages(path, "sqlite_autoindex_responses_1")
    assert table["root"] and table["interior"] and len(table["leaf"]) == 600 and index["leaf"]
    pages = {"table-leaf": [table["leaf"][300]], "table-interior": table["interior"][:1], "table-root": table["root"],
             "key-index": index["root"] + index["leaf"][::2],
             "table-leaf-and-key-index": [table["leaf"][300]] + index["root"] + index["leaf"]}[damage]
    for page in pages:
        overwrite_page(path, page)
    started = time.monotonic()
    with pytest.warns(UserWarning, match=rf"salvaged {kept} row\(s\), lost {lost}[;\s]"):
        store = ResponseStore(path)
    assert time.monotonic() - started < 30  # loose: a few seconds on a busy 2-core machine (perf/salvage.py)
    assert len(store.get_many(keys)) == kept
    assert all(s.text == "Code: X" + "y" * 1700 for s in store.get_many(keys[:50]).values())  # overflow-free, whole
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_long_answers_spread_over_overflow_pages_are_salvaged_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    answers = {f"{i:064x}": f"Code: E11.{i}\n" + chr(0x4E00 + i) * 10_000 for i in range(40)}
    store.put_many([(k, "m", Stored(text, None, {"prompt_tokens": i}, 0.1, 1)) for i, (k, text) in
                    enumerate(answers.items())])
    store.close()
    overwrite_page(path, tree_pages(path, "responses")["root"][0])
    with pytest.warns(UserWarning, match=r"salvaged 40 row\(s\), lost 0;"):
        store = ResponseStore(path)
    got = store.get_many(answers)
    assert sorted(k for k in got if got[k].text == answers[k]) == sorted(answers)  # 30 KB each: 8 overflow pages
    assert got[next(iter(answers))].usage == {"prompt_tokens": 0}


def test_answers_only_in_the_write_ahead_log_are_salvaged(tmp_path: Path) -> None:
    """A crash leaves the newest answers in ``-wal``: the salvage reads its committed frames too."""
    path, copy = tmp_path / "r.sqlite3", tmp_path / "copy" / "r.sqlite3"
    store = ResponseStore(path)
    first = fill(store, 500)
    store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    later = [f"{i:064x}" for i in range(500, 700)]
    store.put_many([(k, "m", Stored("Code: Y", None, {}, 0.1, 1)) for k in later])
    copy.parent.mkdir()
    for suffix in ("", "-wal"):  # what a kill -9 leaves: the file and its log, no checkpoint
        copy.with_name(copy.name + suffix).write_bytes(path.with_name(path.name + suffix).read_bytes())
    store.close()
    page, rows_on_it = leaf_pages(path, "responses")[3]  # an early page: the log never rewrote it
    overwrite_page(copy, page)
    with pytest.warns(UserWarning, match=rf"salvaged {700 - rows_on_it} row\(s\), lost {rows_on_it};"):
        store = ResponseStore(copy)
    assert set(store.get_many(later)) == set(later)
    assert len(store.get_many(first)) == 500 - rows_on_it


@pytest.mark.parametrize("value", ["abc", "-5", "0", "nan", "inf", "1e999"])
@pytest.mark.parametrize("name", ["MEDCODE_CACHE_WAIT_S", "MEDCODE_CLAIM_TTL_S"])
def test_a_bad_number_of_seconds_in_the_environment_is_an_error(monkeypatch: pytest.MonkeyPatch, name: str,
                                                                value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(CacheError, match=rf"^{name}='{value}' is not a number of seconds above 0 \(unset it"):
        env_seconds(name, 60.0)
    monkeypatch.setenv(name, " 2.5 ")
    assert env_seconds(name, 60.0) == 2.5
    monkeypatch.setenv(name, "")
    assert env_seconds(name, 60.0) == 60.0


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """A second process holding the write lock (BEGIN IMMEDIATE) on ``path`` for ``seconds``."""
    script = (f"import sqlite3, time; db = sqlite3.connect({str(path)!r}, isolation_level=None); "
              f"db.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_store_is_busy_not_damaged_and_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    store.put("before", "m", Stored("kept", None, {}, 0.0, 1))
    store.close()
    holder = hold_write_lock(path, 30)
    notes: list[str] = []
    try:
        started = time.monotonic()
        store = ResponseStore(path, wait_s=1.5, notify=notes.append)  # opening needs no write
        assert store.get_many(["before"])["before"].text == "kept"  # reads go on beside a writer
        with pytest.raises(CacheBusy, match=rf"is locked, held by pid {holder.pid} .*nothing was moved or lost"):
            store.put("after", "m", Stored("x", None, {}, 0.0, 1))
        assert 1.4 < time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    assert not list(tmp_path.glob("*.damaged-*"))
    store.put("after", "m", Stored("x", None, {}, 0.0, 1))  # free again: the same file, nothing lost
    assert set(store.get_many(["before", "after"])) == {"before", "after"}


def test_a_full_file_raises_cache_full_and_keeps_every_committed_answer(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    pages = store._conn().execute("PRAGMA page_count").fetchone()[0]
    store._conn().execute(f"PRAGMA max_page_count = {pages + 3}")  # SQLITE_FULL after three more pages
    written: list[str] = []

    def fill() -> None:
        for i in range(1000):
            store.put(f"k{i}", "m", Stored("Code: E11.9 " + "z" * 500, None, {}, 0.0, 1))
            written.append(f"k{i}")

    with pytest.raises(CacheFull, match="disk full"):
        fill()
    assert 0 < len(written) < 1000
    assert set(store.get_many(written)) == set(written)


def test_answers_that_could_not_be_written_are_spilled_and_imported_on_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    store.put("stored", "m", Stored("Code: I10", None, {}, 0.0, 1))
    spilled = store.spill({"a": ("m", Stored("Code: E11.9", None, {"prompt_tokens": 3}, 0.2, 1, 5.0)),
                           "b": ("m", Stored(None, "HTTP 500", {}, 1.0, 3, 5.0))})
    assert spilled is not None and spilled.parent == tmp_path
    assert spilled.stat().st_mode & 0o777 == 0o600  # answers may be private; the fallback folder is shared
    store.close()
    again = ResponseStore(path)
    rows = again.get_many(["stored", "a", "b"])
    assert rows["a"].text == "Code: E11.9" and rows["a"].usage == {"prompt_tokens": 3} and rows["a"].created == 5.0
    assert rows["b"].error == "HTTP 500"
    assert not spilled.exists()


def test_answers_over_the_limit_are_stored_cut_with_their_true_length(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    store.put("big", "m", Stored("Code: E11.9 " + "z" * 2_000_000, None, {}, 0.0, 1))
    stored = store.get_many(["big"])["big"]
    assert len(stored.text) == ANSWER_LIMIT == 20_000
    assert stored.chars == 2_000_012
    store.close()
    assert sum(f.stat().st_size for f in tmp_path.glob("r.sqlite3*")) < 200_000  # not 2 MB


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claims_hold_off_other_processes_until_answered_expired_or_their_owner_died(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    one, two = ResponseStore(path), ResponseStore(path)
    me = owner_id("run-a")
    other = me.replace(f"|{os.getpid()}|", f"|{os.getppid()}|")  # a live process on this machine
    assert one.claim(["k1", "k2", "k3"], other, 60) == (["k1", "k2", "k3"], {})
    mine, held = two.claim(["k2", "k3", "k4"], me, 60)
    assert mine == ["k4"] and held == {"k2": other, "k3": other}
    one.release(other)
    assert two.claim(["k2", "k3"], me, 60) == (["k2", "k3"], {})
    # expired: its owner stopped renewing
    assert one.claim(["e1"], other, 0.05)[0] == ["e1"]
    time.sleep(0.1)
    assert two.claim(["e1"], me, 60) == (["e1"], {})
    # its owner is a dead process on this machine: void at once, whatever the expiry
    dead = me.replace(f"|{os.getpid()}|", f"|{dead_pid()}|")
    assert one.claim(["d1"], dead, 3600)[0] == ["d1"]
    assert two.claim(["d1"], me, 60) == (["d1"], {})
    # renewing keeps a claim alive past its first expiry
    assert one.claim(["r1"], other, 0.3)[0] == ["r1"]
    one.renew(other, 60)
    time.sleep(0.35)
    assert two.claim(["r1"], me, 60) == ([], {"r1": other})


def test_a_file_this_version_wrote_still_takes_rows_the_way_earlier_versions_write_them(tmp_path: Path) -> None:
    """Runs of an earlier plugin version may share the file: its eight-value INSERT must keep working."""
    path = tmp_path / "r.sqlite3"
    store = ResponseStore(path)
    store.put("big", "m", Stored("Code: I10 " + "z" * 30_000, None, {}, 0.0, 1))
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?)",
                   ("old", "m", "Code: E11.9", None, "{}", 0.1, 1, time.time()))
    rows = store.get_many(["big", "old"])
    assert rows["old"].text == "Code: E11.9" and rows["old"].chars is None
    assert rows["big"].chars == 30_010 and rows["big"].usage == {}


# -- the run refuses bad cache settings before anything starts -------------------------------------

@pytest.mark.parametrize(
    ("env", "cache", "message"),
    [({"MEDCODE_CACHE_WAIT_S": "abc"}, None, "MEDCODE_CACHE_WAIT_S='abc' is not a number of seconds above 0 *"),
     ({"MEDCODE_CLAIM_TTL_S": "-5"}, None, "MEDCODE_CLAIM_TTL_S='-5' is not a number of seconds above 0 *"),
     ({}, b"name,notes\nmine,keep me\n", "--medcode-cache response cache *notes.csv is not an SQLite file *")],
    ids=["wait-not-a-number", "ttl-negative", "not-sqlite"],
)
def test_bad_cache_settings_stop_the_run_with_one_line(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                       env: dict[str, str], cache: bytes | None,
                                                       message: str) -> None:
    from conftest import BENCHMARK

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = ["--medcode-no-cache"]
    if cache is not None:
        (pytester.path / "notes.csv").write_bytes(cache)
        args = ["--medcode-cache", "notes.csv"]
    pytester.makepyfile(test_code_query=BENCHMARK)
    result = pytester.runpytest("-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-sample", "2", *args)
    assert result.ret == 4
    assert [line for line in result.stderr.lines if line.startswith("ERROR:")] == result.stderr.lines[:1]
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    if cache is not None:
        assert (pytester.path / "notes.csv").read_bytes() == cache
        assert not list(pytester.path.glob("notes.csv.damaged-*"))
