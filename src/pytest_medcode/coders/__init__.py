"""Coders by name: built-in ones, third-party ones from the ``pytest_medcode.coders`` entry points,
and every other name handed to litellm."""

from __future__ import annotations

from importlib.metadata import entry_points

from pytest_medcode.coders.base import CallFailed, Coder, CodeRequest, CoderUnavailable, Reply
from pytest_medcode.options import Settings

__all__ = ["CallFailed", "CodeRequest", "Coder", "CoderUnavailable", "Reply", "resolve_coder"]

ENTRY_POINT_GROUP = "pytest_medcode.coders"


def resolve_coder(name: str, settings: Settings) -> Coder:
    """The coder a ``--model`` value names. Heavy imports wait until the coder is used."""
    if name == "lookup":
        from pytest_medcode.coders.lookup import LookupCoder

        return LookupCoder(settings.codesets)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()(name, settings)
    if name.startswith("openai/") and settings.api_base:
        from pytest_medcode.coders.openai_compat import OpenAICompatibleCoder

        return OpenAICompatibleCoder(name, settings.api_base, settings.timeout)
    from pytest_medcode.coders.litellm_coder import LiteLLMCoder

    return LiteLLMCoder(name, settings.api_base, settings.timeout)
