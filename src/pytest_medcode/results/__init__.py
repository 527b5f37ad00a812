"""Per-case records and what is concluded from them: aggregates with intervals, pairing with a baseline,
the gate's verdict. Pure functions over lists of dicts; no pytest, no files."""
