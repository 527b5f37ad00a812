"""Everything pytest-medcode knows about pytest-xdist, in one place.

Workers collect and run cases; records ride to the controller on ``report.user_properties``
(xdist serialises them with the report); the controller aggregates once and writes the reports.
"""

from __future__ import annotations

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
