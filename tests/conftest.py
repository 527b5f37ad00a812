"""Shared set-up for the plugin's own tests.

Code tables are built once per machine into a shared cache (atomic writes make that safe under
xdist), instead of once per pytester run.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("MEDCODE_CACHE_DIR", os.path.join(tempfile.gettempdir(), "pytest-medcode-tests-cache"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

BENCHMARK = '''
def test_code_query(medcode_case, medcode):
    medcode.check(medcode_case)
'''
