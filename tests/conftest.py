"""Shared set-up for the plugin's own tests.

Code tables are built once per machine into a shared cache (atomic writes make that safe under
xdist), instead of once per pytester run: ``MEDCODE_CACHE_DIR`` is set here, before any test runs, so every
test and every pytester session (which points HOME at a temporary folder, not this variable) reads it.
Helper functions the test files share are in helpers.py.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

os.environ.setdefault("MEDCODE_CACHE_DIR", os.path.join(tempfile.gettempdir(), "pytest-medcode-tests-cache"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# In-process pytester runs snapshot sys.modules and delete what a run imported. Native-extension
# packages (torch for BERTScore, litellm's aiohttp) cannot be imported twice into one process:
# a second copy over the same C extension crashes the interpreter at garbage collection. Importing
# them here, once, puts them in every snapshot, so no run ever removes them.
import bert_score  # noqa: F401
import litellm  # noqa: F401
import pytest
import torch  # noqa: F401
import transformers  # noqa: F401
from _pytest import pytester as _pytester

if TYPE_CHECKING:
    from pytest_medcode.asking.cache import ResponseStore

# Their submodules are imported lazily, though, e.g. while a test that uses ``pytester`` calls
# ``medcode rescore`` in-process; the snapshot taken for that test would drop them afterwards, and the
# next import registers torch's operators a second time ("Only a single TORCH_LIBRARY can be used ...",
# so BERTScore cannot load), or makes a second copy of a class that old objects still use (transformers'
# hub kernels: "unsupported operand type(s) for 'in': 'Mode' and 'Mode'"). So every snapshot keeps every
# installed third-party module, whenever it was imported, as any long-lived process would; what it still
# removes is what a run imported from elsewhere: the test modules pytester writes, and this plugin's source.
_SITE_PACKAGES = tuple({os.path.join(sysconfig.get_paths()[key], "") for key in ("purelib", "platlib")})
_snapshot_init = _pytester.SysModulesSnapshot.__init__


def _installed(name: str) -> bool:
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) or ""
    return origin.startswith(_SITE_PACKAGES)


def _keep_native_modules(self, preserve=None) -> None:
    def keep(name: str) -> bool:
        return _installed(name) or (preserve is not None and preserve(name))

    _snapshot_init(self, preserve=keep)


_pytester.SysModulesSnapshot.__init__ = _keep_native_modules


def in_ci() -> bool:
    """True under CI (``CI=true``, ``1`` or ``yes``), where set-up installs every optional piece."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(what: str) -> NoReturn:
    """An optional piece the README promises (WordNet, Chromium, the BERTScore model, the local LLM) is
    not here. In CI that is a broken install: fail with one line saying what is missing and how to get
    it. Elsewhere skip with the same line as the reason, so a laptop without Chromium still runs the rest."""
    if in_ci():
        pytest.fail(f"missing in CI: {what}", pytrace=False)
    pytest.skip(what)


BENCHMARK = '''
def test_code_query(medcode_case, medcode):
    medcode.check(medcode_case)
'''


@pytest.fixture(scope="session")
def lookup_run_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``lookup_run_folder(*options)``: the run folder of a real session in its own process, answered by the
    offline lookup coder with these options (``--medcode-system``, ``--medcode-sample``), made once per
    session for each set of options."""
    from helpers import record_lookup_run

    made: dict[tuple[str, ...], Path] = {}

    def folder(*options: str) -> Path:
        if options not in made:
            made[options] = record_lookup_run(tmp_path_factory.mktemp("lookup-run"), *options)
        return made[options]

    return folder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResponseStore]:
    """A response cache of the test's own (the batch runner's tests record their batches in it)."""
    from pytest_medcode.asking.cache import ResponseStore

    db = ResponseStore(tmp_path / "c.db")
    yield db
    db.close()
