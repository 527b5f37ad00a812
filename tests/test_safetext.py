"""Untrusted text made visible (pytest_medcode.safetext): every control character but newline and tab is
shown as its escape, so a model's answer cannot recolour, clear or ring the terminal of whoever reads it."""

from __future__ import annotations

from pytest_medcode.safetext import visible


def test_terminal_control_bytes_are_shown_as_escapes() -> None:
    assert visible("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"  # ESC: no colour change
    assert visible("ding\x07") == "ding\\x07"  # BEL
    assert visible("\x9b2J") == "\\x9b2J"  # C1 CSI: clears a screen on some terminals
    assert visible("a\x7fb\x00c\rd\x0be\x0cf") == "a\\x7fb\\x00c\\x0dd\\x0be\\x0cf"


def test_newlines_tabs_and_printable_text_are_kept() -> None:
    text = "E11.9\tType 2 diabetes\nI10 — hypertension, café, \xa0non-breaking, 糖尿病"
    assert visible(text) == text  # U+00A0 is the first character after C1


def test_none_and_other_values_become_text() -> None:
    assert visible(None) == ""
    assert visible(3.5) == "3.5"
    assert visible(ValueError("bad answer \x1b[2J")) == "bad answer \\x1b[2J"  # an exception's text too
