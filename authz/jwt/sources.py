"""Where an issuer's keys come from, which URLs the sidecar may fetch, and how much of an
answer it reads.

A `KeySource` is a value (hashable, comparable), so two policies that name the same JWKS
share one fetcher and one cache, and a policy reload that keeps the source keeps the keys.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import aiohttp


class KeySourceKind(StrEnum):
    JWKS_URI = "jwksUri"
    INLINE = "jwks"
    DISCOVERY = "discovery"


@dataclass(frozen=True, slots=True)
class KeySource:
    """One of: a JWKS URL, an inline JWKS document (canonical JSON), or OIDC discovery of an issuer."""

    kind: KeySourceKind
    #: The JWKS URL, the issuer (for discovery), or the canonical JSON of an inline JWKS.
    location: str

    @classmethod
    def inline(cls, document: object) -> KeySource:
        return cls(
            KeySourceKind.INLINE, json.dumps(document, sort_keys=True, separators=(",", ":"))
        )

    def describe(self) -> str:
        if self.kind is KeySourceKind.INLINE:
            return "inline JWKS"
        if self.kind is KeySourceKind.DISCOVERY:
            return f"discovery of {self.location}"
        return self.location


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_fetch_url(url: str) -> str | None:
    """Why the sidecar must not fetch `url`, or None when it may (https, or http on loopback)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if not host:
        return "URL has no host"
    if parts.username or parts.password:
        return "URL must not carry credentials"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback_host(host):
        return None
    return "must use https (plain http is allowed only for loopback hosts)"


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


async def read_answer(
    response: aiohttp.ClientResponse,
    *,
    limit: int,
    what: str,
    error: Callable[[str], Exception],
) -> bytes:
    """The body of a 200 answer of at most `limit` bytes; anything else raises `error` with a
    message naming `what` (an issuer's endpoint is untrusted: a body is never read whole
    before its size is known to be bounded)."""
    if response.status != 200:
        raise error(f"{what} answered HTTP {response.status}")
    # read(n) returns whatever has arrived (possibly one chunk): loop until EOF or past limit.
    body = b""
    while len(body) <= limit:
        piece = await response.content.read(limit + 1 - len(body))
        if not piece:
            break
        body += piece
    if len(body) > limit:
        raise error(f"{what} answered more than {limit} bytes")
    return body
