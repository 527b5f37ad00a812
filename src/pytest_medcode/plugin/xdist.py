"""Everything pytest-medcode knows about pytest-xdist, in one place.

Workers collect and run cases; records ride to the controller on ``report.user_properties``
(xdist serialises them with the report); the controller aggregates once and writes the reports.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SHARED = "medcode"


def is_worker(config: pytest.Config) -> bool:
    """True inside an xdist worker process."""
    return hasattr(config, "workerinput")


def is_distributed(config: pytest.Config) -> bool:
    """True in the controller or a worker of a run with ``-n N`` (N > 0)."""
    if is_worker(config):
        return True
    numprocesses = getattr(config.option, "numprocesses", None)
    dist = getattr(config.option, "dist", "no")
    return bool(numprocesses) and dist != "no"


def from_controller(config: pytest.Config) -> dict[str, Any] | None:
    """In a worker, what the controller shared through ``workerinput`` (run id, start time)."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get(SHARED) if workerinput else None


def share_with_worker(node: Any, data: dict[str, Any]) -> None:
    """Controller side of :func:`from_controller` (called from ``pytest_configure_node``)."""
    node.workerinput[SHARED] = data


def from_worker(report: pytest.TestReport) -> bool:
    """True for a report the controller received from a worker (xdist sets its ``node``)."""
    return getattr(report, "node", None) is not None


def compact(record: dict[str, Any]) -> dict[str, Any]:
    """A record as received from a worker, with its keys and short strings interned: unpickled, each of
    75k records holds its own copy of ~45 key strings (~180 MB on the controller)."""
    return {sys.intern(k): sys.intern(v) if isinstance(v, str) and len(v) <= 16 else v for k, v in record.items()}


def exit_with_controller(config: pytest.Config, interrupted: Path | None = None,
                         on_interrupt: Callable[[], None] | None = None, every_s: float = 0.5) -> None:
    """In a worker: exit as soon as the controller is gone (``kill -9`` of the run), and stop as soon as it
    was interrupted (``interrupted`` appears: it was sent SIGTERM alone, as ``timeout`` and CI runners do).

    A worker learns of its controller's death only when it next sends a report, which the asking
    worker does not do for the whole query phase: orphaned, it would go on paying for every call of
    a run nobody reads, and a re-run would ask the same keys beside it. Answers stored so far stay.
    Interrupted, the controller waits for its workers, and xdist interrupts a busy one only after 5 s.
    """
    if not is_worker(config):
        return
    parent = os.getppid()

    def watch() -> None:
        told = False
        while os.getppid() == parent:
            if not told and interrupted is not None and on_interrupt is not None and interrupted.exists():
                told = True
                on_interrupt()
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="medcode-controller-watch", daemon=True).start()


def run_in_one_process(config: pytest.Config) -> None:
    """Turn ``-n`` off for this run (``--medcode-estimate`` asks and runs nothing, so workers would only
    collect the same cases again). Called from ``pytest_configure``, before xdist's own (``trylast``)."""
    if not is_worker(config) and getattr(config.option, "dist", "no") != "no":
        config.option.dist = "no"
        config.option.numprocesses = None
        config.option.tx = []
