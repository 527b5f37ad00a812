"""Coders by name: built-in ones, third-party ones from the ``pytest_medcode.coders`` entry-point group
(``ENTRY_POINT_GROUP``), and every other name handed to litellm.

Built-in names: ``lookup``; ``rag:<model>`` and ``verify:<model>`` wrap any other name (and compose:
``verify:rag:local:smollm2``); ``python:package.module:function`` is a team's own product;
``local:smollm2`` a small LLM served on 127.0.0.1 (the ``local`` extra). A name that ``--medcode-router``'s file
serves is asked through litellm's Router over its deployments (``router.py``).

A third-party factory is called as ``factory(name, options)`` with a
:class:`~pytest_medcode.api.CoderOptions` and returns a :class:`~pytest_medcode.api.Coder`."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from pytest_medcode.api import CallFailed, Coder, CoderOptions, CoderUnavailable, Question, Reply

if TYPE_CHECKING:
    from pytest_medcode.asking.coders.router import RouterConfig

__all__ = ["CallFailed", "Coder", "CoderOptions", "CoderUnavailable", "Question", "Reply", "gives_confidence",
           "resolve_coder"]

ENTRY_POINT_GROUP = "pytest_medcode.coders"
_PROTOCOL = ("identity", "check", "answer", "close")


def resolve_coder(name: str, options: CoderOptions, router: RouterConfig | None = None) -> Coder:
    """The coder a ``--model`` value names. Heavy imports wait until the coder is used. ``router``: the
    ``--medcode-router`` file, kept out of :class:`CoderOptions` (a third-party factory's view) as its
    deployments' parameters may hold API keys."""
    if name == "lookup":
        from pytest_medcode.asking.coders.lookup import LookupCoder

        return LookupCoder(options.codesets)
    prefix, sep, rest = name.partition(":")
    if sep and prefix in ("rag", "verify", "python", "local"):
        return _resolve_prefixed(name, prefix, rest, options, router)
    if router is not None and name in router.deployments:
        from pytest_medcode.asking.coders.router import RouterCoder

        keyed = resolve_coder(name, options)  # the cache key: the model's, not a replica's
        return RouterCoder(name, router, keyed, options.timeout, options.confidence)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _checked(ep.value, ep.load()(name, options))
    if name.startswith("openai/") and options.api_base:
        from pytest_medcode.asking.coders.openai_compat import OpenAICompatibleCoder

        return OpenAICompatibleCoder(name, options.api_base, options.timeout, options.confidence)
    from pytest_medcode.asking.coders.litellm_coder import LiteLLMCoder

    return LiteLLMCoder(name, options.api_base, options.timeout, options.confidence)


def _checked(origin: str, coder: Coder) -> Coder:
    """A third-party coder with the whole protocol, or one line now (not an AttributeError at the end)."""
    missing = [m for m in _PROTOCOL if not callable(getattr(coder, m, None))]
    if missing:
        raise CoderUnavailable(f"--model {getattr(coder, 'name', origin)}: the coder made by {origin} has no "
                               f"{', '.join(m + '()' for m in missing)} (see pytest_medcode.api.Coder)")
    return coder


def _resolve_prefixed(name: str, prefix: str, rest: str, options: CoderOptions,
                      router: RouterConfig | None = None) -> Coder:
    if not rest:
        raise CoderUnavailable(f"--model {name}: name the model after '{prefix}:', e.g. {prefix}:lookup"
                               if prefix in ("rag", "verify") else f"--model {name}: incomplete name")
    if prefix == "rag":
        from pytest_medcode.asking.coders.rag import RagCoder

        return RagCoder(name, resolve_coder(rest, options, router), options.rag_k, options.codesets)
    if prefix == "verify":
        from pytest_medcode.asking.coders.verify import VerifyCoder

        return VerifyCoder(name, resolve_coder(rest, options, router), options.verify_rounds, options.codesets)
    if prefix == "python":
        from pytest_medcode.asking.coders.python_callable import PythonCoder

        return PythonCoder(name)
    from pytest_medcode.asking.coders.local import LocalCoder

    return LocalCoder(name, options.timeout)


def gives_confidence(coder: Coder) -> bool | None:
    """Whether a coder's answers carry a confidence: True for lookup, rag: and verify: (their own), an LLM coder
    asking for log-probabilities; False for one known to give none (local:, an LLM not asking); None when only
    its answers will tell (python:, a third-party coder)."""
    declared = getattr(coder, "gives_confidence", None)
    if isinstance(declared, bool):
        return declared
    if hasattr(coder, "logprobs"):
        return bool(coder.logprobs)
    return None
