"""SIGTERM ends a run as Ctrl-C does.

CI runners and ``timeout`` stop a job with SIGTERM, whose default action ends the process on the
spot: no message, no session end, the run's lock and state files left behind. Raised as
``KeyboardInterrupt`` instead, it takes pytest's interrupted path (exit 2, one line saying why):
the query phase releases its claims, the session closes the cache and removes the run's state,
and every answer received so far is already in the cache, so a re-run asks only the rest.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

MESSAGE = ("SIGTERM: run stopped; every answer received is kept in the response cache, "
           "a re-run asks only the rest")


def _on_term(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise KeyboardInterrupt(MESSAGE)


def handle_sigterm() -> Callable[[], None] | None:
    """Turn SIGTERM into KeyboardInterrupt (main thread, default handler only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # someone else chose what SIGTERM does: theirs stands
        return None
    signal.signal(signal.SIGTERM, _on_term)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) is _on_term:
            signal.signal(signal.SIGTERM, previous)

    return undo
