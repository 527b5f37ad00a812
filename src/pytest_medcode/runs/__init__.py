"""Run folders: written once per run, read back by ``medcode report``/``rescore``/``compare`` and the gate's
baseline."""
