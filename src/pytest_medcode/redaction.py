"""Keep API keys out of everything a run keeps or shows: one masker, applied where text enters.

Two kinds of text carry credentials. A provider's error message may echo the key it was sent ("Incorrect
API key provided: …", "upstream failed for header Authorization=Bearer …"), and an HTTP client logs each
request's URL at INFO (``HTTP Request: POST http://user:KEY@host/...``). :func:`mask_credentials` is the one
masker for both: :class:`~pytest_medcode.api.CallFailed` masks its message when it is made (so no coder's
error reaches the engine, the cache, the records or the terminal unmasked), and a log record factory masks
every log record of the process (``--log-file``, captured-log sections).

It masks the run's own secrets wherever they appear — registered once per process at configure time
(:func:`redact_run_secrets`, in the xdist workers too): API keys from the environment and the user:password
of ``--medcode-api-base``, each also in its URL-encoded and its HTTP Basic (base64) form. And it masks what
merely looks like a key (``sk-…``, ``AIza…``, ``Bearer …``, ``Basic <base64 of user:pass>``, ``api_key=…``,
``?key=…``, "API key provided: …", ``user:pass@`` in a URL), so another provider's key that this run was
never told about is masked too.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

MASK = "***"
_MIN_LENGTH = 8  # shorter values ("1", "true") are not keys, and masking them would garble every message
_MIN_GUESSED = 12  # a variable that is only named like a secret (FOO_TOKEN) must look like one too
#: The variables providers' clients read their keys from (litellm's names), whatever their values look like.
PROVIDER_VARIABLES = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "REPLICATE_API_TOKEN",
    "REPLICATE_API_KEY", "AZURE_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_AI_API_KEY", "MISTRAL_API_KEY",
    "COHERE_API_KEY", "CO_API_KEY", "GROQ_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_API_KEY", "HF_TOKEN",
    "HUGGINGFACE_API_KEY", "OPENROUTER_API_KEY", "DEEPSEEK_API_KEY", "XAI_API_KEY", "FIREWORKS_AI_API_KEY",
    "PERPLEXITYAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK",
    "VERTEX_API_KEY", "DATABRICKS_TOKEN", "WATSONX_APIKEY", "NVIDIA_NIM_API_KEY", "LITELLM_MASTER_KEY",
)
_SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_APIKEY")
_secrets: set[str] = set()
_ordered: list[str] = []  # longest first, so a secret is masked whole before any part of it
_installed = False


def url_secrets(url: str | None) -> list[str]:
    """What in a URL may be a credential: the ``user:password@`` part and the query values."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password or "", parts.username or ""]
        found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    except ValueError:
        return []
    return [value for value in found if value]


def basic_forms(user: str, password: str) -> list[str]:
    """How ``user:password`` travels: as written, URL-decoded, and base64 in an ``Authorization: Basic``
    header (httpx sends a URL's user:password so, decoded first)."""
    forms = []
    for u, p in {(user, password), (unquote(user), unquote(password))}:
        pair = f"{u}:{p}"
        forms += [pair, base64.b64encode(pair.encode()).decode(), base64.urlsafe_b64encode(pair.encode()).decode()]
    return forms


def secret_forms(value: str) -> list[str]:
    """A secret as it may show up in text: as is, URL-encoded, URL-decoded, and as a Basic credential when a
    client sends a key as the user name or password."""
    forms = [value, quote(value, safe=""), unquote(value)]
    for pair in (f"{value}:", f":{value}"):
        forms.append(base64.b64encode(pair.encode()).decode())
    return forms


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The API keys in the environment: each provider variable, and any ``*_KEY``, ``*_TOKEN``,
    ``*_SECRET`` or ``*_PASSWORD`` variable whose value is long enough to be a key."""
    env = os.environ if environ is None else environ
    found = []
    for name, value in env.items():
        upper = name.upper()
        named = upper in PROVIDER_VARIABLES or upper.endswith("_API_KEY")
        guessed = upper.endswith(_SECRET_SUFFIXES) and len(value.strip()) >= _MIN_GUESSED and " " not in value.strip()
        if named or guessed:
            found.append(value)
    return [value.strip() for value in found if value and value.strip()]


def endpoint_secrets(api_base: str | None) -> list[str]:
    """The credentials of an endpoint URL, in every form they may be sent or echoed in."""
    found = url_secrets(api_base)
    try:
        parts = urlsplit(api_base or "")
        if parts.password:
            found += basic_forms(parts.username or "", parts.password)
    except ValueError:
        pass
    return found


def public_url(url: str | None) -> str | None:
    """A URL fit for a report: no user:password@, no query string (keys sometimes ride there)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "(unparsable URL, not shown)"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def register_secrets(values: Iterable[str | None]) -> None:
    """From now on, mask each of ``values`` (in each of its forms) in every text :func:`mask_credentials`
    sees and in every log record of this process."""
    global _ordered
    added = {form for value in values if value for form in secret_forms(value) if len(form) >= _MIN_LENGTH}
    if added - _secrets:
        _secrets.update(added)
        _ordered = sorted(_secrets, key=len, reverse=True)
    _install_log_masking()


def redact_run_secrets(api_base: str | None) -> None:
    """Register the keys a run may hold: the environment's API keys and the credentials in
    ``--medcode-api-base`` (called at configure time in every process of the run)."""
    register_secrets([*environment_secrets(), *endpoint_secrets(api_base)])


def forget_secrets() -> None:
    """Forget every registered secret (for tests that register their own)."""
    global _ordered
    _secrets.clear()
    _ordered = []


def _install_log_masking() -> None:
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call is the logging module's to report, not ours
            return record
        masked = mask_credentials(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


_VALUE = r"[A-Za-z0-9._~+/=\-]"


def _token(least: int) -> str:
    """A key-like value of at least ``least`` characters; a sentence's full stop after it is not part of it."""
    return rf"{_VALUE}{{{least - 1},}}[A-Za-z0-9_~+/=\-]"


_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # A URL's user:password@ and key-like query values (?key=, &api_key=, &token=, &sig=).
    (re.compile(r"(://)[^/\s:@]+:[^/\s@]+@"), r"\1***@"),
    (re.compile(r"(?i)([?&;](?:key|api[_-]?key|apikey|token|access[_-]?token|auth|secret|password|sig|signature)=)"
                r"[^&\s#\"'<>]+"), r"\1***"),
    # Header-shaped: "Authorization: Bearer X", "Authorization=Bearer X".
    (re.compile(rf"(?i)(\bbearer\s+){_token(8)}"), r"\1***"),
    # Provider key shapes: OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), Google (AIza…).
    (re.compile(r"(?<![A-Za-z0-9])(sk-)[A-Za-z0-9_\-]{8,}"), r"\1***"),
    (re.compile(r"(?<![A-Za-z0-9])(AIza)[0-9A-Za-z_\-]{30,}"), r"\1***"),
    # Named: api_key=X, "api-key": "X", x-api-key: X, access_token=X, password: X, "API key provided: X".
    (re.compile(rf"(?i)(\b(?:x-)?api[_-]?key[\"']?\s*[=:]\s*[\"']?){_token(6)}"), r"\1***"),
    (re.compile(rf"(?i)(\bapi key(?: provided)?\s*[=:]\s*[\"']?){_token(6)}"), r"\1***"),
    (re.compile(rf"(?i)(\b(?:access|auth|refresh|api|session)[_-]?token[\"']?\s*[=:]\s*[\"']?){_token(6)}"),
     r"\1***"),
    (re.compile(rf"(?i)(\b(?:password|passwd|client[_-]?secret)[\"']?\s*[=:]\s*[\"']?){_token(6)}"), r"\1***"),
)
_BASIC = re.compile(r"\b(Basic\s+)([A-Za-z0-9+/_\-]{6,}={0,2})")


def _basic(match: re.Match[str]) -> str:
    """``Basic <base64>`` masked when the base64 is a credential (it decodes to ``user:password``), so the
    word "Basic" in prose is left alone."""
    token = match.group(2)
    padded = token + "=" * (-len(token) % 4)
    try:
        decoded = base64.b64decode(padded, altchars=b"-_" if "-" in token or "_" in token else None, validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return match.group(1) + MASK if b":" in decoded else match.group(0)


def mask_credentials(text: str) -> str:
    """``text`` with the run's registered secrets and anything shaped like a key or a credential masked."""
    if not text:
        return text
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return _BASIC.sub(_basic, text)
