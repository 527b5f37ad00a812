"""Batch scale: N requests through the Batch API of the scripted server, killed mid-poll, re-attached.

What is measured, end to end on the real code (no pytest: scoring N records through pytest is beyond a
2-core machine at a million cases, so this drives the query phase directly, as the plugin's session does):

  1. a child process runs :class:`~pytest_medcode.asking.phase.QueryPhase` with a
     :class:`~pytest_medcode.asking.batch.BatchRunner` over N questions (real ICD-10-CM descriptions in the
     paper's prompt; each code asked at up to 14 temperatures, so N may exceed the 74,719 codes): request
     files of at most 50,000 lines are built, uploaded to the scripted server (its own process,
     ``python -m pytest_medcode.testing``) and submitted as batches, then polled;
  2. once every batch is recorded in the response cache and the child is polling, it is killed (SIGKILL);
  3. a second child runs the same phase: it must re-attach to the recorded batches, submit nothing, and store
     every answer in the cache;
  4. the second child then scores every stored answer with the plugin's scoring function (``score_answer``:
     code extraction, validity, hierarchy) against its reference code.

Reported: wall time of each step, peak RSS of each child (sampled from /proc every 0.1 s), the server's
upload / submission counts and the custom_ids submitted more than once (must be 0), answers stored.

``--provider anthropic`` does the same through Anthropic's Message Batches API (``anthropic/claude-haiku-4-5``,
batches of at most 100,000 requests sent in one call each, with the real ``anthropic`` client). With
``--lose-answer`` the first child is not killed: the server makes its batch and closes the connection before
answering, so the child cannot know the batch exists (its requests end unasked, none sent again); the second
child must find that batch among the server's by its size and results, and collect it without submitting.

    PYTHONPATH=src python perf/batch_scale.py --n 1000000
    PYTHONPATH=src python perf/batch_scale.py --n 100000 --no-kill
    PYTHONPATH=src python perf/batch_scale.py --n 100000 --provider anthropic
    PYTHONPATH=src python perf/batch_scale.py --n 100000 --provider anthropic --lose-answer
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from full_scale import PeakRSS

TEMPERATURES = 14
#: provider → (the --model name, the model name its API is sent, requests per batch, the server's summary path)
PROVIDERS = {"openai": ("openai/m", "m", 50_000, "/_batches"),
             "anthropic": ("anthropic/claude-haiku-4-5", "claude-haiku-4-5", 100_000, "/_anthropic_batches")}


def _question(system, codes: list[tuple[str, str]], template, i: int):
    from pytest_medcode.asking.coders import Question

    code, description = codes[i % len(codes)]
    messages = template.messages(system.prompt_name, description, system.example)
    return code, Question(system="icd10cm", description=description,
                          messages=tuple((m["role"], m["content"]) for m in messages),
                          temperature=round(0.05 * (i // len(codes)), 2), max_tokens=50, repeat=0)


def child(n: int, db: Path, base_url: str, out: Path, provider: str = "openai") -> int:
    """One run of the query phase in batch mode over N questions, then (when every answer is in) scoring."""
    from pytest_medcode.asking.batch import BatchRoute, BatchRunner
    from pytest_medcode.asking.cache import ResponseStore, request_key
    from pytest_medcode.asking.coders.litellm_coder import LiteLLMCoder
    from pytest_medcode.asking.coders.openai_compat import OpenAICompatibleCoder
    from pytest_medcode.asking.engine import Call, QueryEngine
    from pytest_medcode.asking.phase import QueryPhase
    from pytest_medcode.codesystems import load_system
    from pytest_medcode.dataset.prompts import load_template
    from pytest_medcode.scoring.codes import score_answer

    system = load_system("icd10cm")
    codes = system.billable_codes()
    template = load_template("paper")
    model, sent, _, _ = PROVIDERS[provider]
    coder = OpenAICompatibleCoder(model, base_url, 30.0) if provider == "openai" else \
        LiteLLMCoder(model, base_url, 30.0)
    identity = coder.identity()

    def key_of(i: int) -> str:
        _, q = _question(system, codes, template, i)
        return request_key({**identity, "messages": q.messages, "temperature": q.temperature,
                            "max_tokens": q.max_tokens, "repeat": q.repeat})

    started = time.monotonic()
    keys = [key_of(i) for i in range(n)]
    index = {k: i for i, k in enumerate(keys)}
    store = ResponseStore(db)
    state = db.parent / "runs" / f"child-{os.getpid()}"
    phase = QueryPhase(store, lambda: QueryEngine({model: coder}, 16, 3, 30.0), state, time.time(), False,
                       lambda line, **_: print(line, flush=True))
    phase.batch = BatchRunner(store, {model: BatchRoute(base_url, sent, provider=provider)}, phase.owner,
                              lambda line: print(line, flush=True))
    built = time.monotonic()
    unkept = phase.run(keys, lambda key: Call(model, _question(system, codes, template, index[key])[1]))
    asked = time.monotonic()
    index.clear()
    scored = correct = errors = 0
    for start in range(0, n, 5_000):
        chunk = keys[start : start + 5_000]
        got = store.get_many(chunk)
        for offset, key in enumerate(chunk):
            stored = got.get(key)
            if stored is None or stored.text is None:
                errors += 1
                continue
            code = codes[(start + offset) % len(codes)][0]
            correct += bool(score_answer(system, code, stored.text)["exact_match"])
            scored += 1
    done = time.monotonic()
    out.write_text(json.dumps({"keys_s": round(built - started, 1), "phase_s": round(asked - built, 1),
                               "score_s": round(done - asked, 1), "scored": scored, "exact": correct,
                               "errors": errors, "unkept": len(unkept)}))
    return 0


def _stored(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _recorded(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute("SELECT count(*) FROM batches WHERE batch_id IS NOT NULL").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _server_batches(url: str, path: str) -> dict:
    with urllib.request.urlopen(url.removesuffix("/v1") + path, timeout=60) as r:
        return json.loads(r.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--no-kill", action="store_true", help="one child, not killed")
    parser.add_argument("--in-progress-s", type=float, default=20.0, help="least time a batch stays in_progress")
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="openai", help="whose batch API")
    parser.add_argument("--lose-answer", action="store_true",
                        help="anthropic: the answer to the first batch's submission is lost (not a kill)")
    parser.add_argument("--child", nargs=3, metavar=("DB", "URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.n, Path(args.child[0]), args.child[1], Path(args.child[2]), args.provider)
    _, _, per_batch, summary = PROVIDERS[args.provider]

    work = Path(tempfile.mkdtemp(prefix="medcode-batch-scale-"))
    db = work / "responses.sqlite3"
    server = subprocess.Popen([sys.executable, "-m", "pytest_medcode.testing", "--echo", "Code: A00.0",
                               "--batch-in-progress-s", str(args.in_progress_s),
                               "--batch-drop-answers", str(int(args.lose_answer))],
                              stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    env = {**os.environ, "MEDCODE_BATCH_POLL_S": "1", "MEDCODE_BATCH_POLL_MAX_S": "5"}
    results: dict = {"n": args.n, "provider": args.provider, "files": -(-args.n // per_batch)}
    try:
        runs = ["lost", "found"] if args.lose_answer else ["killed", "resumed"] if not args.no_kill else ["only"]
        for name in runs:
            out = work / f"{name}.json"
            cmd = [sys.executable, __file__, "--n", str(args.n), "--provider", args.provider, "--child", str(db),
                   url, str(out)]
            start = time.perf_counter()
            with open(work / f"{name}.log", "wb") as log:
                proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
                watcher = PeakRSS(proc.pid)
                watcher.start()
                if name == "killed":
                    while _recorded(db) < results["files"]:  # every batch submitted and recorded: now polling
                        assert proc.poll() is None, (work / f"{name}.log").read_text()[-2000:]
                        time.sleep(0.5)
                    time.sleep(3)
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                watcher.stop()
            results[name] = {"wall_s": round(time.perf_counter() - start, 1), "exit": proc.returncode,
                             "peak_rss_mb": round(watcher.peak / 2**20), "stored": _stored(db),
                             **(json.loads(out.read_text()) if out.exists() else {})}
            results[name]["server"] = _server_batches(url, summary)
            print(name, json.dumps(results[name]), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    print(json.dumps(results, indent=2))
    print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
