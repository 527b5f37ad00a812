"""What the HTTP clients are handed for ``--medcode-api-base``: a URL without ``user:password@``, and a key.

Given a URL with ``user:password@``, httpx (under both the openai client and litellm) sends it as
``Authorization: Basic base64(user:password)`` — in place of the ``Bearer`` key, which is then not sent at
all — and a server that echoes its headers in an error puts that base64 in the run's records. So the
password is never sent as Basic auth: it is the API key (``Authorization: Bearer PASSWORD``) when
``OPENAI_API_KEY`` is not set, and not sent at all when it is (the environment's key wins).
"""

from __future__ import annotations

import os
from typing import NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

PLACEHOLDER_KEY = "sk-no-key-needed"  # local servers need some key string; never a real one


class Endpoint(NamedTuple):
    url: str | None  # no user:password@ part
    key: str  # sent as Authorization: Bearer KEY


def endpoint(api_base: str | None, key_env: str = "OPENAI_API_KEY") -> Endpoint:
    """The URL and key to give a client for ``api_base`` (None: the provider's own endpoint); ``key_env`` names
    the environment's key for the provider (ANTHROPIC_API_KEY for Anthropic's client)."""
    key = os.environ.get(key_env) or None
    if not api_base:
        return Endpoint(api_base, key or PLACEHOLDER_KEY)
    try:
        parts = urlsplit(api_base)
        password = parts.password
    except ValueError:  # options.py refused it already; a coder made by hand gets it as it is
        return Endpoint(api_base, key or PLACEHOLDER_KEY)
    if "@" not in parts.netloc:
        return Endpoint(api_base, key or PLACEHOLDER_KEY)
    url = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))
    return Endpoint(url, key or (unquote(password) if password else None) or PLACEHOLDER_KEY)
