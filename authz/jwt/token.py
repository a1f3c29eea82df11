"""Split and decode a compact JWS without trusting it.

Everything here runs before the signature is checked, on attacker-controlled bytes, so it is
strict and bounded: the size is capped before any decoding, segments must be unpadded
base64url, header and payload must be JSON objects, five-part (JWE) tokens are refused, and a
`crit` header is refused because the sidecar implements no JWS extensions (RFC 7515 4.1.11).
Key-locating headers (`jku`, `x5u`, `jwk`, `x5c`) are read by nobody: keys come only from the
issuer configured in the policy.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authz.errors import TokenError

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A token's parts, decoded but not yet verified."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


def _b64decode(segment: str, what: str) -> bytes:
    if not _SEGMENT.fullmatch(segment):
        raise TokenError(f"token {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenError(f"token {what} is not base64url") from None


def json_object(raw: bytes, *, refuse: Callable[[str], Exception]) -> dict[str, Any]:
    """`raw` as a JSON object, else `refuse("JSON")` or `refuse("a JSON object")` is raised.
    A document nested deeper than the parser's recursion limit counts as not JSON."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise refuse("JSON") from None
    if not isinstance(value, dict):
        raise refuse("a JSON object")
    return value


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    return json_object(raw, refuse=lambda noun: TokenError(f"token {what} is not {noun}"))


def parse_token(token: str, *, max_bytes: int) -> UnverifiedToken:
    """Decode a compact JWS. Raises TokenError with a message safe to show the client."""
    if len(token) > max_bytes:
        raise TokenError(f"token is larger than {max_bytes} bytes")
    parts = token.split(".")
    if len(parts) == 5:
        raise TokenError("encrypted tokens (JWE) are not accepted")
    if len(parts) != 3:
        raise TokenError("token is not a JWT (expected header.payload.signature)")
    header_b64, payload_b64, signature_b64 = parts
    header = _json_object(_b64decode(header_b64, "header"), "header")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise TokenError("token header has no alg")
    if alg.lower() == "none":
        raise TokenError("unsigned tokens (alg none) are not accepted")
    if "crit" in header:
        raise TokenError("token header names critical extensions this server does not support")
    if "kid" in header and not isinstance(header["kid"], str):
        raise TokenError("token kid must be a string")
    if not signature_b64:
        raise TokenError("token has no signature")
    claims = _json_object(_b64decode(payload_b64, "payload"), "payload")
    signature = _b64decode(signature_b64, "signature")
    return UnverifiedToken(
        header=header,
        claims=claims,
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
    )
