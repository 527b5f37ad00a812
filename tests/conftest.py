"""Shared set-up for the plugin's own tests.

Code tables are built once per machine into a shared cache (atomic writes make that safe under
xdist), instead of once per pytester run.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("MEDCODE_CACHE_DIR", os.path.join(tempfile.gettempdir(), "pytest-medcode-tests-cache"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# In-process pytester runs snapshot sys.modules and delete what a run imported. Native-extension
# packages (torch for BERTScore, litellm's aiohttp) cannot be imported twice into one process:
# a second copy over the same C extension crashes the interpreter at garbage collection. Importing
# them here, once, puts them in every snapshot, so no run ever removes them.
import bert_score  # noqa: E402,F401
import litellm  # noqa: E402,F401
import torch  # noqa: E402,F401
import transformers  # noqa: E402,F401

BENCHMARK = '''
def test_code_query(medcode_case, medcode):
    medcode.check(medcode_case)
'''
