"""The pytest wiring: hooks, options, the ``medcode`` fixture, the per-process session, the reporter and the
xdist hand-off. ``pytest_medcode.plugin`` is the module pytest loads (the ``pytest11`` entry point); its
hooks live in :mod:`pytest_medcode.plugin.hooks`."""

from pytest_medcode.plugin.hooks import *  # noqa: F403 - pytest looks the hooks up on this module
from pytest_medcode.plugin.hooks import __all__  # noqa: F401
