"""Keep API keys out of log records, whoever logs them.

The HTTP clients log every request's URL at INFO (``HTTP Request: POST http://user:KEY@host/...``),
so a key given in ``--medcode-api-base`` would reach pytest's ``--log-file`` and captured-log
sections. Masking at record creation covers every logger and every handler of the process.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
_MIN_LENGTH = 8  # shorter values ("1", "true") are not keys, and masking them would garble logs
_secrets: set[str] = set()
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


def redact_logs(values: Iterable[str | None]) -> None:
    """From now on, replace each of ``values`` with ``***`` in every log record of this process."""
    global _installed
    _secrets.update(v for v in values if v and len(v) >= _MIN_LENGTH)
    if not _secrets or _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call is the logging module's to report, not ours
            return record
        if any(secret in message for secret in _secrets):
            for secret in _secrets:
                message = message.replace(secret, MASK)
            record.msg, record.args = message, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def redact_run_secrets(api_base: str | None) -> None:
    """Mask the keys a run may hold: ``*_API_KEY`` variables (litellm's convention for every provider)
    and credentials in ``--medcode-api-base``."""
    keys = [value for name, value in os.environ.items() if name.upper().endswith("_API_KEY")]
    redact_logs([*keys, *url_secrets(api_base)])


_KEY_LIKE = re.compile(r"(?i)(bearer\s+|sk-|api[_-]?key[\"'=:\s]+)[A-Za-z0-9._\-]{6,}")
_USERINFO = re.compile(r"(://)[^/\s:@]+:[^/\s@]+@")


def mask_credentials(text: str) -> str:
    """Mask what looks like a key or URL credentials in text a provider wrote (its error messages), before a
    report shows it: a key this run never registered (another provider's) is masked too."""
    return _USERINFO.sub(r"\1***@", _KEY_LIKE.sub(lambda m: m.group(1) + "***", text))
