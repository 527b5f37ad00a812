"""The response store: keys, atomic answers, errors that never overwrite answers, damage recovery."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from pytest_medcode.cache import ResponseStore, Stored, request_key


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


def test_a_damaged_store_is_moved_aside_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.warns(UserWarning, match="damaged"):
        store = ResponseStore(path)
    store.put("k", "m", Stored("x", None, {}, 0.0, 1))
    assert store.get_many(["k"])["k"].text == "x"
    assert list(tmp_path.glob("r.sqlite3.damaged-*"))


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
