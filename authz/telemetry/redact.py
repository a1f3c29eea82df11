"""Logs on stderr: one format for every process, and a last line of defence that scrubs
bearer tokens, JWTs and cookie values from every record.

The sidecar's own log statements never include headers or tokens, and the decision log is
built from an allowlist of fields. This filter sits on the log handlers anyway, so a library's
debug message, an exception text or a future mistake cannot leak a credential (opa #5848).
"""

from __future__ import annotations

import logging
import re
import sys

REDACTED = "[REDACTED]"

_PATTERNS = (
    # A compact JWS/JWE: base64url JSON header ("eyJ") then at least one more segment.
    (re.compile(r"eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){1,4}"), REDACTED),
    # Authorization: Bearer/Basic/... <credentials>
    (
        re.compile(r"(?i)\b(bearer|basic|digest|negotiate)\s+[A-Za-z0-9\-._~+/=]{8,}"),
        r"\1 " + REDACTED,
    ),
    # authorization / cookie / set-cookie header values in "name: value" or 'name': 'value' form.
    (
        re.compile(
            r"(?i)((?:proxy-)?authorization|set-cookie|cookie)(['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n]+"
        ),
        r"\1\2" + REDACTED,
    ),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and exception text) when it contains a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(handler: logging.Handler) -> None:
    handler.addFilter(RedactingFilter())


def configure_logging(level: str) -> None:
    """Log records of `level` and above to stderr, redacted (`authz serve` and each worker)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        install(handler)
