"""Everything pytest-medcode knows about pytest-xdist, in one place.

Workers collect and run cases; records ride to the controller on ``report.user_properties``
(xdist serialises them with the report); the controller aggregates once and writes the reports.
"""

from __future__ import annotations

import pytest


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
