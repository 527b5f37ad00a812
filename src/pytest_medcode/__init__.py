"""pytest-medcode: benchmark how well models turn a medical code's description into the code."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pytest-medcode")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"
