"""Where pytest-medcode keeps derived data (code tables, WordNet copy, response cache).

One place so every module agrees, and so a user can move it all with one variable.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Root of derived, rebuildable data: ``$MEDCODE_CACHE_DIR`` or ``$XDG_CACHE_HOME/pytest-medcode``."""
    explicit = os.environ.get("MEDCODE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "pytest-medcode"
