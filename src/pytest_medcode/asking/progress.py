"""The query phase's progress: its counters, and its line — rewritten in place on a terminal, a line every
few seconds in a CI log, nothing with ``-q``. Under xdist the asking happens in a worker, whose output pytest
hides, so the controller follows the worker's progress file instead."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_medcode.atomic import read_json, write_json

_LOG_EVERY_S = 10.0


@dataclass
class Progress:
    """Counters of a query phase, read by the progress display (any thread)."""

    total: int = 0
    done: int = 0
    cached: int = 0
    retries: int = 0
    errors: int = 0
    throttled: int = 0
    limit: int = 0
    batches: str = ""  # --medcode-batch: the batches' states while they are polled (asking/batch.py)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    #: When the longest wait on a rate limit now running ends (monotonic; 0: none ran yet)
    rate_limited_until: float = 0.0
    #: The preflight: the model whose check request is being asked (the line says so, not "0/0 answered")
    checking: str = ""

    def waiting(self) -> str:
        """``rate limited by the endpoint, waiting 8 s`` while a call waits on a rate limit, else ''."""
        left = self.rate_limited_until - time.monotonic()
        return f"rate limited by the endpoint, waiting {math.ceil(left)} s" if left > 0 else ""

    def line(self) -> str:
        wait = self.waiting()
        if self.checking:
            return (f"medcode: checking {self.checking} before the first case · "
                    + (f"{wait}; " if wait else "") + f"{self.retries} retries so far")
        elapsed = max(time.monotonic() - self.started, 1e-9)
        asked = self.done - self.cached
        rate = asked / elapsed
        left = self.total - self.done
        eta = f"{left / rate:.0f}s" if rate > 0 and left else "-"
        return (
            f"medcode: {self.done}/{self.total} answered ({self.cached} cached) · {rate:.1f} calls/s · "
            f"ETA {eta} · {self.retries} retries · {self.errors} errors"
            + (f" · throttled to {self.limit} in flight" if self.throttled else "")
            + (f" · {self.batches}" if self.batches else "")
            + (f" · {wait}" if wait else "")
        )

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("total", "done", "cached", "retries", "errors", "throttled")}
        out["elapsed_s"] = round((self.finished or time.monotonic()) - self.started, 3)
        return out


def write_progress(path: Path, progress: Progress) -> None:
    """The progress file an xdist controller follows (ProgressWatcher)."""
    write_json(path, {**progress.to_dict(), "line": progress.line(), "waiting": progress.waiting()})


class ProgressLine:
    def __init__(self, tr: Any) -> None:
        self._tr = tr
        self._tty = bool(getattr(tr, "isatty", False))
        self._last_log = 0.0
        self._shown = False
        self._notable = False  # the last line logged was a notable one (a wait on a rate limit)
        self._lock = threading.Lock()

    def __call__(self, line: str, final: bool = False, notable: bool = False) -> None:
        """Show ``line``; in a log, every 10 s, at the end (``final``), and at once when a ``notable`` state (a
        wait on a rate limit) begins, so a log says why nothing moves."""
        with self._lock:
            if self._tty:
                self._tr.rewrite(line, erase=True)
                self._shown = True
                if final:
                    self._tr.write_line("")
                    self._shown = False
                return
            now = time.monotonic()
            if final or now - self._last_log >= _LOG_EVERY_S or (notable and not self._notable):
                self._last_log = now
                self._notable = notable
                self._tr.write_line(line)

    def notice(self, line: str) -> None:
        """A line of its own (a wait on a locked cache), kept above the progress line."""
        with self._lock:
            if self._shown:
                self._tr.write_line("")
                self._shown = False
            self._tr.write_line(line, yellow=True)


class ProgressWatcher(threading.Thread):
    """Controller-side: shows the progress a worker writes, until told to stop or the phase ends."""

    def __init__(self, path: Path, show: ProgressLine | None, every_s: float = 0.5) -> None:
        super().__init__(name="medcode-progress", daemon=True)
        self._path = path
        self._show = show
        self._every = every_s
        self._stop_event = threading.Event()
        self._seen: str | None = None
        self.last: dict[str, Any] | None = None

    def run(self) -> None:
        while not self._stop_event.wait(self._every):
            data = read_json(self._path)
            if data and data["line"] != self._seen:
                self.last = data
                self._seen = data["line"]
                done = data["done"] >= data["total"]
                if self._show is not None:
                    self._show(data["line"], final=done, notable=bool(data.get("waiting")))
                if done:
                    return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)
