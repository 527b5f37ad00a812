"""The similarity score store: a pair is scored once across runs, never reused by another scorer, and
trouble with the store (a lock, a full file, damage, two runs at once) costs a rescore, never the run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import BENCHMARK
from pytest_medcode.asking.cache import ResponseStore
from pytest_medcode.codesystems import load_system
from pytest_medcode.scoring import score_store
from pytest_medcode.scoring.score_store import TABLE, ScoreStore, pair_key
from pytest_medcode.scoring.session_metrics import score_similarity
from pytest_medcode.scoring.similarity import BertScorer, MeteorScorer
from pytest_medcode.testing.server import ScriptedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Wrong answers a model might give (reference → answer): siblings and a popular wrong code.
WRONG = {"E11.9": "E11.65", "I10": "I11.9", "J45.909": "J45.901", "N39.0": "N30.00", "K21.9": "K21.0"}
RIGHT = ["E78.5", "F41.1", "M54.50"]


def _responder(wrong: dict[str, str]):
    icd10 = load_system("icd10cm")
    answers = {icd10.lookup(c).description: f"Code: {wrong.get(c, c)}" for c in [*WRONG, *RIGHT]}
    return lambda request: answers.get(request.description, "Code: M24.131")


SPY = textwrap.dedent('''
    import json, sys

    def pytest_unconfigure(config):
        with open("imported.json", "w") as fh:
            json.dump({"torch": "torch" in sys.modules, "bert_score": "bert_score" in sys.modules}, fh)
''')


def _run(pytester: pytest.Pytester, server: ScriptedServer, wrong_codes: list[str], *extra: str,
         own_process: bool = False):
    """A run in-process (the worker's torch and BERTScore model are loaded once), or in a process of its own
    where what it imports is the point."""
    codes = pytester.path / "codes.csv"
    codes.write_text("code\n" + "\n".join([*wrong_codes, *RIGHT]) + "\n")
    run = pytester.runpytest_subprocess if own_process else pytester.runpytest
    return run(
        "--model", "openai/x", "--medcode-api-base", server.base_url, "--medcode-system", "icd10cm",
        "--medcode-codes", str(codes), "-p", "no:cacheprovider", "--medcode-cache", "responses.sqlite3", *extra)


def _latest(pytester: pytest.Pytester) -> tuple[dict, list[dict]]:
    run = (pytester.path / "reports" / "latest").resolve()
    return json.loads((run / "summary.json").read_text()), pq.read_table(run / "cases.parquet").to_pylist()


def _stored_rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute(f"SELECT metric, count(*) FROM {TABLE} GROUP BY metric").fetchall())


def test_a_rerun_of_a_scored_selection_computes_no_pair_and_loads_no_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_code_query=BENCHMARK)
    pytester.makeconftest(SPY)
    first = list(WRONG)[:3]
    with ScriptedServer(_responder(WRONG)) as server:
        _run(pytester, server, first).assert_outcomes(passed=3, failed=3)
        summary, cases = _latest(pytester)
        # the pairs to compute, counted from the cases themselves: distinct (reference, predicted) descriptions
        icd10 = load_system("icd10cm")
        pairs = {(icd10.lookup(r["code"]).description, r["predicted_description"])
                 for r in cases if r["predicted_description"] and not r["exact_match"]}
        assert len(pairs) == 3
        assert summary["similarity"]["scored"] == {"meteor": 3, "bertscore": 3}
        assert summary["similarity"]["stored"] == {"meteor": 0, "bertscore": 0}
        assert _stored_rows(pytester.path / "responses.sqlite3") == {"meteor": 3, "bertscore": 3}
        scores = {r["code"]: (r["meteor"], r["bertscore"]) for r in cases}
        assert json.loads((pytester.path / "imported.json").read_text())["bert_score"] is True  # the spy spies

        # the same selection, every answer and score cached; in a process of its own, to see what it imports
        result = _run(pytester, server, first, own_process=True)
        result.assert_outcomes(passed=3, failed=3)
        summary, cases = _latest(pytester)
        assert summary["similarity"]["scored"] == {"meteor": 0, "bertscore": 0}
        assert summary["similarity"]["stored"] == {"meteor": 3, "bertscore": 3}
        assert {r["code"]: (r["meteor"], r["bertscore"]) for r in cases} == scores  # the same numbers
        assert json.loads((pytester.path / "imported.json").read_text()) == {"torch": False, "bert_score": False}

        _run(pytester, server, list(WRONG)).assert_outcomes(passed=3, failed=5)  # two new wrong answers
        summary, _ = _latest(pytester)
        assert summary["similarity"]["scored"] == {"meteor": 2, "bertscore": 2}
        assert summary["similarity"]["stored"] == {"meteor": 3, "bertscore": 3}
        assert _stored_rows(pytester.path / "responses.sqlite3") == {"meteor": 5, "bertscore": 5}

        _run(pytester, server, list(WRONG), "--medcode-no-similarity").assert_outcomes(passed=3, failed=5)
        assert _stored_rows(pytester.path / "responses.sqlite3") == {"meteor": 5, "bertscore": 5}


class CountingScorer:
    """A real scorer (METEOR without synonyms) that counts the pairs it is handed."""

    def __init__(self, identity: str = "counting/v1") -> None:
        self.inner = MeteorScorer(use_wordnet=False)
        self.identity = identity
        self.label = "counting"
        self.seen: list[tuple[str, str]] = []

    def score(self, pairs):
        self.seen.extend(pairs)
        return self.inner.score(pairs)


def _records() -> list[dict]:
    icd10 = load_system("icd10cm")
    out = []
    for ref, answer in [*WRONG.items(), ("E78.5", "E78.5")]:
        out.append({"system": "icd10cm", "code": ref, "outcome": "incorrect" if ref != answer else "correct",
                    "predicted_description": icd10.lookup(answer).description,
                    "description": icd10.lookup(ref).description})
    return out


def test_scores_come_back_from_the_store_only_for_the_same_scorer(tmp_path: Path) -> None:
    store = ScoreStore(ResponseStore(tmp_path / "r.sqlite3"))
    first = CountingScorer()
    score_similarity(records := _records(), lambda name: None, meteor=first, bertscore=CountingScorer("b/v1"),
                     store=store)
    assert len(first.seen) == 6  # five wrong pairs and one identical pair (the scorer's own shortcut)
    values = [r["meteor"] for r in records]
    again = CountingScorer()
    report = score_similarity(records := _records(), lambda name: None, meteor=again,
                              bertscore=CountingScorer("b/v1"), store=store)
    assert again.seen == [(records[-1]["description"], records[-1]["predicted_description"])]  # only the shortcut
    assert [r["meteor"] for r in records] == values and report.scored["meteor"] == 0
    other = CountingScorer("counting/v2")  # another configuration: nothing reused
    score_similarity(_records(), lambda name: None, meteor=other, bertscore=CountingScorer("b/v1"), store=store)
    assert len(other.seen) == 6


def test_every_setting_that_changes_a_score_changes_the_identity(tmp_path: Path) -> None:
    assert MeteorScorer(use_wordnet=False).identity != MeteorScorer(use_wordnet=True).identity \
        or not MeteorScorer(use_wordnet=True).synonyms
    assert "synonyms=False" in MeteorScorer(use_wordnet=False).identity
    bundled = BertScorer()
    assert BertScorer(num_layers=5).identity != bundled.identity
    assert "layers=6" in bundled.identity and "revision=" in bundled.identity
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"num_hidden_layers": 4}')
    one = BertScorer(model=str(model), num_layers=4).identity
    (model / "config.json").write_text('{"num_hidden_layers": 4, "hidden_size": 8}')
    assert BertScorer(model=str(model), num_layers=4).identity != one  # another model in the same folder
    assert pair_key("a", ("b", "c")) != pair_key("a", ("bc", "")) != pair_key("ab", ("c", ""))


def _fill(path: Path, n: int) -> list[tuple[str, str]]:
    pairs = [(f"reference {i}", f"candidate {i}") for i in range(n)]
    ScoreStore(ResponseStore(path)).put("m/v1", "meteor", [(p, i / n) for i, p in enumerate(pairs)])
    return pairs


def test_a_locked_cache_costs_a_rescore_with_one_warning(tmp_path: Path) -> None:
    from test_cache import hold_write_lock

    path = tmp_path / "r.sqlite3"
    pairs = _fill(path, 10)
    holder = hold_write_lock(path, 30)
    try:
        store = ScoreStore(ResponseStore(path, wait_s=1.0))
        assert len(store.get("m/v1", pairs)) == 10  # reads go on beside a writer
        with pytest.warns(UserWarning, match=r"similarity scores not kept \(response cache .* is locked"):
            store.put("m/v1", "meteor", [(("new", "pair"), 0.5)])
        store.put("m/v1", "meteor", [(("newer", "pair"), 0.5)])  # once broken, silent: one line per run
    finally:
        holder.kill()
        holder.wait()
    assert _stored_rows(path) == {"meteor": 10}


def test_a_full_file_costs_a_rescore_with_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    responses = ResponseStore(path)
    pages = responses._conn().execute("PRAGMA page_count").fetchone()[0]
    responses._conn().execute(f"PRAGMA max_page_count = {pages + 2}")
    store = ScoreStore(responses)
    big = [((f"reference {i} " + "x" * 300, f"candidate {i}"), 0.5) for i in range(2000)]
    with pytest.warns(UserWarning, match=r"similarity scores not kept \(response cache .*disk full"):
        store.put("m/v1", "meteor", big)
    assert store.get("m/v1", [p for p, _ in big]) == {}  # nothing half-written, nothing raised


def test_damage_in_the_scores_is_salvaged_and_the_lost_scores_computed_again(tmp_path: Path) -> None:
    from test_cache import leaf_pages, overwrite_page

    path = tmp_path / "r.sqlite3"
    pairs = _fill(path, 3000)
    pages = leaf_pages(path, TABLE)
    assert len(pages) > 2
    overwrite_page(path, pages[1][0])

    def reopen() -> tuple[ScoreStore, dict[tuple[str, str], float]]:
        store = ScoreStore(ResponseStore(path))
        return store, store.get("m/v1", pairs)

    with pytest.warns(UserWarning, match="was damaged"):
        store, found = reopen()
    assert found == {}  # a salvage carries the answers over, not the scores: they are computed again
    scorer = CountingScorer("m/v1")
    records = [{"system": "x", "code": "c", "outcome": "incorrect", "description": a, "predicted_description": b}
               for a, b in pairs[:50]]
    score_similarity(records, lambda name: None, meteor=scorer, bertscore=CountingScorer("b/v1"), store=store)
    assert len(scorer.seen) == 50 and _stored_rows(path) == {"meteor": 50, "bertscore": 50}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_two_runs_writing_at_once_keep_every_score(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    ResponseStore(path).close()
    script = textwrap.dedent(f'''
        import sys
        from pathlib import Path
        from pytest_medcode.asking.cache import ResponseStore
        from pytest_medcode.scoring.score_store import ScoreStore
        store = ScoreStore(ResponseStore(Path({str(path)!r})))
        start = int(sys.argv[1])
        for i in range(start, start + 600, 20):
            store.put("m/v1", "meteor", [((f"r{{j}}", f"c{{j}}"), 0.25) for j in range(i, i + 20)])
    ''')
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start)]) for start in (0, 300)]
    deadline = time.monotonic() + 120
    for proc in procs:
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0
    assert _stored_rows(path) == {"meteor": 900}  # 0–899: the overlap (300–599) once


def test_cache_command_counts_prunes_and_clears_scores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_medcode.cli import main

    path = tmp_path / "r.sqlite3"
    _fill(path, 7)
    assert main(["cache", "stats", "--path", str(path)]) == 0
    assert "similarity: meteor" in capsys.readouterr().out
    assert main(["cache", "prune", "--scores", "--older-than-days", "1", "--path", str(path)]) == 0
    assert "removed 0 similarity scores" in capsys.readouterr().out
    assert main(["cache", "prune", "--scores", "--path", str(path)]) == 0
    assert "removed 7 similarity scores" in capsys.readouterr().out
    _fill(path, 4)
    assert main(["cache", "clear", "--path", str(path)]) == 0
    assert "and 4 similarity scores" in capsys.readouterr().out
    assert score_store.counts(ResponseStore(path)) == {}
