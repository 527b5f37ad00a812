"""Command-line entry: run the scripted server as its own process, so perf runs don't share a GIL.

Invoked as ``python -m pytest_medcode.testing`` (testing/__main__.py).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from pytest_medcode.testing.faults import FaultPlan, LatencyFn, RateLimitStorm, fixed_latency, lognormal_latency
from pytest_medcode.testing.responders import degrade, echo_responder, mapping_responder, scripted_confidence
from pytest_medcode.testing.server import OUTAGES, ScriptedServer
from pytest_medcode.testing.stats import ServerStats

__all__ = ["main"]


def _load_answers(path: Path) -> dict[str, str]:
    """Read ``{description: code}`` or ``[{"description": ..., "code": ...}, ...]``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, Mapping):
        return {str(k): str(v) for k, v in data.items()}
    if isinstance(data, list):
        return {str(row["description"]): str(row["code"]) for row in data}
    raise ValueError(f"{path}: expected a JSON object or a list of {{description, code}} rows")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_medcode.testing",
        description="Serve a scripted OpenAI-compatible API; prints the base URL, runs until killed.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--answers", type=Path, help="JSON {description: code} the model 'knows'")
    parser.add_argument("--default", default="Code: 000.0", help="answer for unknown descriptions")
    parser.add_argument("--echo", metavar="TEXT", help="answer TEXT to everything instead of --answers")
    parser.add_argument(
        "--wrong-fraction", type=float, default=0.0, help="deterministically wrong on this share"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --wrong-fraction and latency")
    parser.add_argument("--logprobs", action="store_true",
                        help="answer requests that ask for logprobs with log-probabilities that follow correctness "
                             "(a code made wrong by --wrong-fraction is less sure, the ranges overlap)")
    parser.add_argument("--latency", choices=("none", "fixed", "lognormal"), default="none")
    parser.add_argument("--latency-s", type=float, default=0.05, help="seconds for --latency fixed")
    parser.add_argument("--median", type=float, default=0.3, help="median seconds for --latency lognormal")
    parser.add_argument("--p95", type=float, default=2.0, help="p95 seconds for --latency lognormal")
    parser.add_argument("--latency-cap", type=float, default=None, help="upper bound for lognormal latency")
    parser.add_argument("--capacity", type=int, default=None,
                        help="requests worked on at once; the rest queue (a model server's batch size)")
    parser.add_argument("--faults", default="", help="e.g. rate_429=0.1,retry_after=1,rate_500=0.05,seed=0")
    parser.add_argument("--require-key", default=None, help="answer 401 unless this bearer token is sent")
    parser.add_argument("--models", default="medcode-test", help="comma-separated ids for GET /v1/models")
    parser.add_argument("--outage", choices=OUTAGES, help="fail every request this way (after --outage-after)")
    parser.add_argument("--outage-after", type=int, default=0, help="requests answered before the outage")
    parser.add_argument("--storm-s", type=float, default=0.0,
                        help="answer every chat request 429 for this many seconds from the first one")
    parser.add_argument("--storm-retry-after", type=float, default=1.0, help="Retry-After seconds during --storm-s")
    parser.add_argument("--stats-file", type=Path, help="write the counters here as JSON on SIGTERM/SIGINT")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    parser.add_argument("--batch-validating-s", type=float, default=0.0, help="seconds a batch stays validating")
    parser.add_argument("--batch-in-progress-s", type=float, default=0.0,
                        help="seconds a batch stays in_progress at least")
    parser.add_argument("--batch-finalizing-s", type=float, default=0.0, help="seconds a batch stays finalizing")
    parser.add_argument("--batch-drop-answers", type=int, default=0,
                        help="Anthropic message batches made whose answer is never sent (the connection closes)")
    return parser


def _write_stats(path: Path, stats: ServerStats) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stats.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def main(argv: Iterable[str] | None = None) -> int:
    """Run the server as its own process so perf runs don't share a GIL with the client."""
    args = _build_parser().parse_args(None if argv is None else list(argv))
    if args.echo is not None:
        responder = echo_responder(args.echo)
        if args.wrong_fraction > 0:
            responder = degrade(responder, args.wrong_fraction, args.seed)
    else:
        answers = _load_answers(args.answers) if args.answers else {}
        responder = mapping_responder(
            answers, args.default, wrong_fraction=args.wrong_fraction, seed=args.seed
        )
    latency: LatencyFn | None = None
    if args.latency == "fixed":
        latency = fixed_latency(args.latency_s)
    elif args.latency == "lognormal":
        latency = lognormal_latency(args.median, args.p95, args.seed, cap=args.latency_cap)
    faults = FaultPlan.parse(args.faults) if args.faults.strip() else None

    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = ScriptedServer(
        responder,
        latency=latency,
        faults=faults,
        require_key=args.require_key,
        host=args.host,
        port=args.port,
        models=[m for m in args.models.split(",") if m],
        verbose=args.verbose,
        outage=args.outage,
        outage_after=args.outage_after,
        confidence=scripted_confidence(args.wrong_fraction, args.seed) if args.logprobs else None,
        capacity=args.capacity,
    )
    if args.storm_s > 0:
        server.storm = RateLimitStorm(args.storm_s, args.storm_retry_after)
    plan = server.batch_api.plan
    plan.validating_s, plan.in_progress_s = args.batch_validating_s, args.batch_in_progress_s
    plan.finalizing_s = args.batch_finalizing_s
    server.anthropic_batch_api.plan.in_progress_s = args.batch_in_progress_s  # Anthropic's batches: the same wait
    server.anthropic_batch_api.drop_answers = args.batch_drop_answers
    server.start()
    try:
        print(server.base_url, flush=True)
        while not done.wait(0.2):
            pass
    finally:
        stats = server.stats
        server.stop()
        if args.stats_file is not None:
            _write_stats(args.stats_file, stats)
    return 0
