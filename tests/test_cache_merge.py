"""``medcode cache merge``: shards' caches into one that replays them all, first answer kept, atomically."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pytest_medcode import cli
from pytest_medcode.asking.cache import ResponseStore, Stored
from pytest_medcode.asking.cache_merge import check_cache_file, merge_caches
from pytest_medcode.scoring import score_store
from pytest_medcode.scoring.score_store import ScoreStore


def answer(text: str | None, error: str | None = None) -> Stored:
    return Stored(text, error, {"prompt_tokens": 3}, 0.1, 1, created=1.0)


def make_cache(path: Path, rows: dict[str, Stored], scores: dict[tuple[str, str], float] | None = None) -> Path:
    store = ResponseStore(path)
    for key, stored in rows.items():
        store.put(key, "openai/m", stored)
    if scores:
        ScoreStore(store).put("meteor-id", "meteor", scores.items())
    store.close()
    return path


def rows_of(path: Path) -> dict[str, tuple[str | None, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return {k: (t, e) for k, t, e in conn.execute("SELECT key, text, error FROM responses")}
    finally:
        conn.close()


def merge(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["cache", "merge", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_first_answer_kept_failures_replaced_scores_carried_and_idempotent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_cache(tmp_path / "a.sqlite3", {"k1": answer("A1"), "k2": answer(None, "HTTP 400"), "k3": answer("A3")},
                   {("x", "y"): 0.5})
    b = make_cache(tmp_path / "b.sqlite3", {"k1": answer("B1"), "k2": answer("B2"), "k3": answer(None, "HTTP 400"),
                                            "k4": answer("B4")}, {("x", "y"): 0.9, ("p", "q"): 0.25})
    into = tmp_path / "merged" / "c.sqlite3"
    status, out, err = merge(capsys, str(a), str(b), "--into", str(into))
    assert (status, err) == (0, "")
    assert out.strip() == f"merged 2 file(s) into {into}: 4 answers, 0 stored failures, 2 similarity scores"
    expected = {"k1": ("A1", None), "k2": ("B2", None), "k3": ("A3", None), "k4": ("B4", None)}
    assert rows_of(into) == expected

    store = ResponseStore(into)  # the merged file is a cache every run opens and replays
    assert {k: s.text for k, s in store.get_many(["k1", "k2", "k3", "k4"]).items()} == {
        k: t for k, (t, _) in expected.items()}
    assert ScoreStore(store).get("meteor-id", [("x", "y"), ("p", "q")]) == {("x", "y"): 0.5, ("p", "q"): 0.25}
    store.close()

    again = merge(capsys, str(a), str(b), "--into", str(into))  # --into's own rows come first: nothing changes
    assert again[0] == 0 and rows_of(into) == expected
    assert not list(into.parent.glob(".*tmp*"))  # no temp file left beside it


def test_an_existing_into_comes_first_and_only_answers_count(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    into = make_cache(tmp_path / "c.sqlite3", {"k1": answer("C1"), "k9": answer(None, "HTTP 400")})
    a = make_cache(tmp_path / "a.sqlite3", {"k1": answer("A1"), "k2": answer(None, "no answer text")})
    status, out, _ = merge(capsys, str(a), "--into", str(into))
    assert status == 0
    assert rows_of(into) == {"k1": ("C1", None), "k9": (None, "HTTP 400"), "k2": (None, "no answer text")}
    assert "1 answers, 2 stored failures, 0 similarity scores" in out


@pytest.mark.parametrize("kind", ["text", "other-sqlite", "missing", "folder"])
def test_a_file_that_is_not_our_cache_is_refused_in_one_line_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    good = make_cache(tmp_path / "a.sqlite3", {"k1": answer("A1")})
    into = make_cache(tmp_path / "c.sqlite3", {"k0": answer("C0")})
    before = into.read_bytes()
    bad = tmp_path / "bad.sqlite3"
    if kind == "text":
        bad.write_text("code,description\nE11.9,diabetes\n")
    elif kind == "other-sqlite":
        conn = sqlite3.connect(bad)
        conn.execute("CREATE TABLE notes (key TEXT PRIMARY KEY, body TEXT)")
        conn.commit()
        conn.close()
    elif kind == "folder":
        bad.mkdir()
    status, out, err = merge(capsys, str(good), str(bad), "--into", str(into))
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("medcode cache merge: ") and str(bad) in err
    assert "Traceback" not in err
    assert into.read_bytes() == before  # not touched
    fresh = tmp_path / "fresh.sqlite3"
    assert merge(capsys, str(bad), "--into", str(fresh))[0] == 2
    assert not fresh.exists()


def test_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_cache(tmp_path / "a.sqlite3", {"k1": answer("A1")})
    status, _, err = merge(capsys, str(a))
    assert status == 2 and err.count("\n") == 1 and "--into" in err
    assert cli.main(["cache", "stats", str(a)]) == 2
    assert "merge" in capsys.readouterr().err


def test_check_and_merge_are_direct_functions(tmp_path: Path) -> None:
    """The same rules without the command: a merge of a file with itself is that file's rows, once."""
    a = make_cache(tmp_path / "a b?#.sqlite3", {"k1": answer("A1")}, {("r", "c"): 1.0})  # a name URIs must quote
    check_cache_file(a)
    done = merge_caches([a, a], tmp_path / "c.sqlite3", carry=(score_store.TABLE,))
    assert (done.files, done.answers, done.errors, done.carried) == (1, 1, 0, {score_store.TABLE: 1})
