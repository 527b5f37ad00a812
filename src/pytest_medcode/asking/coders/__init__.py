"""Coders by name: built-in ones, third-party ones from the ``pytest_medcode.asking.coders`` entry points,
and every other name handed to litellm.

Built-in names: ``lookup``; ``rag:<model>`` and ``verify:<model>`` wrap any other name (and compose:
``verify:rag:local:smollm2``); ``python:package.module:function`` is a team's own product;
``local:smollm2`` a small LLM served on 127.0.0.1 (the ``local`` extra)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from pytest_medcode.asking.coders.base import CallFailed, Coder, CodeRequest, CoderUnavailable, Reply

if TYPE_CHECKING:
    from pytest_medcode.plugin.options import Settings

__all__ = ["CallFailed", "CodeRequest", "Coder", "CoderUnavailable", "Reply", "resolve_coder"]

ENTRY_POINT_GROUP = "pytest_medcode.coders"


def resolve_coder(name: str, settings: Settings) -> Coder:
    """The coder a ``--model`` value names. Heavy imports wait until the coder is used."""
    if name == "lookup":
        from pytest_medcode.asking.coders.lookup import LookupCoder

        return LookupCoder(settings.codesets)
    prefix, sep, rest = name.partition(":")
    if sep and prefix in ("rag", "verify", "python", "local"):
        return _resolve_prefixed(name, prefix, rest, settings)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()(name, settings)
    if name.startswith("openai/") and settings.api_base:
        from pytest_medcode.asking.coders.openai_compat import OpenAICompatibleCoder

        return OpenAICompatibleCoder(name, settings.api_base, settings.timeout)
    from pytest_medcode.asking.coders.litellm_coder import LiteLLMCoder

    return LiteLLMCoder(name, settings.api_base, settings.timeout)


def _resolve_prefixed(name: str, prefix: str, rest: str, settings: Settings) -> Coder:
    if not rest:
        raise CoderUnavailable(f"--model {name}: name the model after '{prefix}:', e.g. {prefix}:lookup"
                               if prefix in ("rag", "verify") else f"--model {name}: incomplete name")
    if prefix == "rag":
        from pytest_medcode.asking.coders.rag import RagCoder

        return RagCoder(name, resolve_coder(rest, settings), settings.rag_k, settings.codesets)
    if prefix == "verify":
        from pytest_medcode.asking.coders.verify import VerifyCoder

        return VerifyCoder(name, resolve_coder(rest, settings), settings.verify_rounds, settings.codesets)
    if prefix == "python":
        from pytest_medcode.asking.coders.python_callable import PythonCoder

        return PythonCoder(name)
    from pytest_medcode.asking.coders.local import LocalCoder

    return LocalCoder(name, settings.timeout)
