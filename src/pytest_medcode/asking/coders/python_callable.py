"""``python:package.module:function``: a team's own coding product as a model row.

The function receives the :class:`~pytest_medcode.api.Question` — the same object every other coder
gets — and returns the answer text (or a :class:`~pytest_medcode.api.Reply` with usage, or None for
"no answer"). It may be a plain function or an ``async def``::

    # mycompany/coding.py
    def suggest(question):
        # question.system: "icd10cm", "icd9cm", "icd9cm-proc" or "cpt"
        # question.description: the description as asked (a robustness variant's wording)
        # question.messages: the study's prompt, if the product is itself an LLM wrapper
        return my_product.code(question.description, system=question.system)

    pytest benchmarks/ --model python:mycompany.coding:suggest --model gpt-4

Why the question and not a bare string: it carries the system, the prompt and the generation
parameters, and it is the one type every coder shares, so a product can be swapped for a model
without changing anything around it. The question does not carry the reference code. (The function
runs inside the benchmark's process, which it could search; a product to keep at arm's length is
benchmarked behind an HTTP endpoint instead: ``openai/NAME --medcode-api-base URL``.)

Plain functions run in a worker thread (``asyncio.to_thread``), so a slow product does not stall
other calls; with ``--medcode-concurrency`` above 1 it may run in several threads at once. An
exception is a failed call: raise :class:`~pytest_medcode.api.CallFailed` to control
retries (``retryable=True`` for a transient outage); any other exception ends the case as an
``error`` at once, with its message — a bug does not get better with retries.

Answers of a ``python:`` coder are not cached: a team benchmarks the product as it is now.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from pytest_medcode.asking.coders.base import CallFailed, CoderUnavailable, Question, Reply

__all__ = ["PythonCoder", "load_callable"]

PREFIX = "python:"


def load_callable(target: str) -> Callable[..., Any]:
    """``package.module:function`` (or ``:Class.method``) → the callable; CoderUnavailable otherwise."""
    flag = f"--model {PREFIX}{target}"
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise CoderUnavailable(f"{flag}: expected python:package.module:function")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CoderUnavailable(
            f"{flag}: cannot import {module_name} ({exc.__class__.__name__}: {exc}); is it installed or on "
            f"the path (pytest's 'pythonpath' ini option)?"
        ) from None
    except Exception as exc:  # the module raised while importing: its problem, told in one line
        raise CoderUnavailable(
            f"{flag}: importing {module_name} raised {exc.__class__.__name__}: {exc}".splitlines()[0]
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CoderUnavailable(f"{flag}: {module_name} has no attribute {attr_path}") from None
    if not callable(obj):
        raise CoderUnavailable(f"{flag}: {attr_path} is a {type(obj).__name__}, not a callable")
    return obj


class PythonCoder:
    cacheable = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.target = name[len(PREFIX):] if name.startswith(PREFIX) else name
        self._fn: Callable[..., Any] | None = None

    def identity(self) -> dict[str, Any]:
        return {"coder": "python", "target": self.target}

    def check(self) -> None:
        self._fn = load_callable(self.target)

    def _callable(self) -> Callable[..., Any]:
        if self._fn is None:
            self._fn = load_callable(self.target)
        return self._fn

    async def answer(self, question: Question) -> Reply:
        try:
            fn = self._callable()
        except CoderUnavailable as exc:
            raise CallFailed(str(exc), retryable=False) from None
        try:
            if inspect.iscoroutinefunction(fn):
                result = await fn(question)
            else:
                result = await asyncio.to_thread(fn, question)
                if inspect.isawaitable(result):
                    result = await result
        except CallFailed:
            raise
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise CallFailed(f"{self.target} raised {exc.__class__.__name__}: {message[:300]}",
                             retryable=False) from None
        return _as_reply(self.target, result)

    def close(self) -> None:
        """Nothing to release: the product's module stays imported, as any other."""


def _as_reply(target: str, result: Any) -> Reply:
    if isinstance(result, Reply):
        return result
    if result is None:
        return Reply(text="")
    if isinstance(result, str):
        return Reply(text=result)
    raise CallFailed(f"{target} returned a {type(result).__name__}; return the answer text (str) or a Reply",
                     retryable=False)
