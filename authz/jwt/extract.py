"""Find the bearer token in a request's headers (RFC 6750 section 2.1).

Only the Authorization header is read: tokens in query strings end up in access logs, and
tokens in cookies need CSRF thinking this sidecar does not do.
"""

from __future__ import annotations

from collections.abc import Mapping


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), else None.

    Returns "" for a Bearer header without a token, so the caller can tell "no bearer
    credentials" (None: 401 without an error code) from "bad bearer credentials" (401 invalid_token).
    """
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return rest.strip()
