"""Model output made safe for every place it is shown: terminal, report.md, report.html, JUnit XML.

A model's answer is untrusted bytes. Escaping for HTML or Markdown does not stop an ESC sequence
from recolouring (or clearing) the terminal of whoever runs ``cat report.md``, and a BEL still
rings. Every control character — C0 except newline and tab, DEL, and C1 — is therefore shown as
its Python escape, ``\\x1b`` for ESC, ``\\x07`` for BEL, ``\\x9b`` for CSI: visible, unambiguous and
the same in every sink. The stored answer (cache, ``cases.parquet``, ``summary.json``) is kept as it
came: those are data, read by programs.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(value: Any) -> str:
    """``value`` as text with every control character but ``\\n`` and ``\\t`` written as ``\\xNN``."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
