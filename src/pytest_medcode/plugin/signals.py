"""SIGINT and SIGTERM end a run, at any stage, with one line and exit 2.

Ctrl-C is a ``KeyboardInterrupt`` that pytest reports with a banner, a location and a hint (a
traceback with ``--full-trace``), and only while the session runs: the end of the session (the
similarity pass, writing the run folder) is outside its handling, so an interrupt there is a long
traceback and exit 130. SIGTERM (a cancelled CI job, ``timeout``) would end the process on the spot.

Here both signals raise :class:`Interrupted`, which pytest shows as it shows its own
``Session.Interrupted``: one banner line, ``!!! Interrupted: <what is kept> !!!``. The text is
chosen when the signal arrives, from the stage the run is in (the reporter says what each stage
keeps). While the run folder is written the signal is only noted, so the folder is whole; the
reporter catches it in the similarity pass and writes the folder without similarity. Every answer
is committed to the response cache the moment it arrives, so none of this loses one.

A second signal while the run stops ends the process at once (``os._exit(2)``) with the line: no
traceback, no half-written run folder (the one being written is removed), the answers in the cache kept.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

#: The stages a signal can arrive in, as the line names them.
COLLECTION = "collection"
QUERY_PHASE = "the query phase"
TESTS = "the tests"
SIMILARITY = "the similarity pass"
WRITING = "writing the run folder"
ENDING = "the end of the run"

SIGNALS = ("SIGINT", "SIGTERM")


class Interrupted(KeyboardInterrupt):
    """A signal, as pytest's interrupted path (exit 2) and its one line: ``Interrupted: <why>``."""

    __module__ = "builtins"  # shown as "Interrupted: why", as pytest shows its own Session.Interrupted


def _plain(name: str, stage: str, again: bool) -> str:
    return (f"{name}{' again' if again else ''} during {stage}: every answer received is kept in the "
            "response cache, a re-run asks only what is missing")


class Interrupts:
    """One process's signals: the stage it is in, the first signal received, and what stops it at once."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.stage = COLLECTION
        self.received: str | None = None  # the first signal's name
        self.received_stage = COLLECTION  # and the stage it came in
        #: (signal, stage, again) → the line's text (the reporter's, where the report is made)
        self.describe: Callable[[str, str, bool], str] = _plain
        #: where the line goes when the process stops at once (None: nowhere, an xdist worker)
        self.show: Callable[[str], None] | None = None if quiet else _stdout
        self.shown = False  # the line was shown (pytest's banner, or ours)
        self.defer = False  # a first signal is noted, not raised: what runs now is kept whole
        self.cleanups: list[Callable[[], None]] = []  # before stopping at once
        self.notify: list[Callable[[], None]] = []  # on the first signal (the xdist controller tells its workers)
        self._previous: dict[int, Any] = {}

    def install(self) -> bool:
        """Take SIGINT and SIGTERM where their handlers are Python's defaults (another's choice stands)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for name in SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            current = signal.getsignal(signum)
            if current in (signal.SIG_DFL, signal.default_int_handler):
                self._previous[signum] = current
                signal.signal(signum, self._on_signal)
        return bool(self._previous)

    def uninstall(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, previous)
        self._previous.clear()

    @contextmanager
    def raising(self, stage: str) -> Iterator[None]:
        """A stage of the session's end that a first signal may cut short (the caller catches Interrupted)."""
        before, self.stage, self.defer = (self.stage, self.defer), stage, False
        try:
            yield
        finally:
            self.stage, self.defer = before

    def line(self, again: bool = False, name: str | None = None) -> str:
        return self.describe(name or self.received or "SIGINT", self.stage, again)

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is not None or self.stage == ENDING:
            self.stop_now(name, again=self.received is not None)
        self.received, self.received_stage = name, self.stage
        for tell in self.notify:
            with suppress(Exception):  # telling others is a convenience: the signal is handled here regardless
                tell()
        if not self.defer:
            raise Interrupted(self.line())

    def from_controller(self) -> None:
        """An xdist worker whose controller was interrupted: stop as if the signal had come here."""
        if self.received is None and self._previous:
            os.kill(os.getpid(), signal.SIGTERM)

    def stop_now(self, name: str, again: bool) -> None:
        """End the process now: clean up what would be left half-made, show the line once, exit 2."""
        if self.received is None:
            self.received, self.received_stage = name, self.stage
        for cleanup in self.cleanups:
            with suppress(Exception):  # stopping at once: nothing may stand in the way
                cleanup()
        if self.show is not None and not self.shown:
            with suppress(Exception):
                self.show("Interrupted: " + self.line(again=again, name=name))
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(2)


def _stdout(line: str) -> None:
    sys.stdout.write(f"\n!!! {line} !!!\n")
