"""Find the access token in a request's headers (RFC 6750 section 2.1, RFC 9449 section 7.1).

Only the Authorization header is read: tokens in query strings end up in access logs, and
tokens in cookies need CSRF thinking this sidecar does not do. Two schemes carry a token:
`Bearer`, and `DPoP` for a token bound to the key of a DPoP proof; which one was used matters
later (a DPoP-bound token sent as Bearer is refused), so the scheme is returned with the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

BEARER: Final = "bearer"
DPOP: Final = "dpop"
_SCHEMES = frozenset({BEARER, DPOP})


def credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(scheme, token) of `Authorization: Bearer <token>` or `DPoP <token>` (scheme
    lower-cased; it is case-insensitive), else None. The token is "" when the scheme comes
    without one, so the caller can tell "no credentials" (None: 401 without an error code)
    from "bad credentials" (401 invalid_token)."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, rest = value.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        return None
    return scheme, rest.strip()


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None ("" when empty)."""
    found = credentials(headers)
    return found[1] if found is not None and found[0] == BEARER else None
