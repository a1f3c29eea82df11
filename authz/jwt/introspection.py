"""One RFC 7662 introspection call, and finding the endpoint through discovery.

Everything the endpoint answers is untrusted input: the body is read up to a size limit, must be
a JSON object, and only `active: true` (the JSON boolean, not the string) makes a token active.
Any other failure - a refused connection, a timeout, a non-200 status, a body that is not a JSON
object - is the endpoint's failure, never the token's: the caller answers 503, not 401.

The client authenticates with client_secret_basic (RFC 6749 2.3.1: id and secret are
form-urlencoded before base64). Nothing here logs the token or the secret; error messages name
the endpoint and the HTTP status only. The caller bounds each call in time (asyncio.timeout).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from authz.errors import KeysUnavailable
from authz.jwt.secrets import SecretRef
from authz.jwt.sources import check_fetch_url, discovery_url, read_answer
from authz.jwt.token import json_object


class IntrospectionUnavailable(KeysUnavailable):
    """The introspection endpoint failed, is too slow or is shedding load (503; retry)."""


@dataclass(frozen=True, slots=True)
class IntrospectionSpec:
    """How one issuer of one policy introspects opaque tokens (the secret by reference only)."""

    issuer: str
    #: None: the discovery document's introspection_endpoint.
    endpoint: str | None
    client_id: str
    secret: SecretRef
    cache_seconds: float
    #: Distinguishes cached answers of different endpoints/clients for the same token.
    cache_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = f"{self.issuer}\0{self.endpoint or ''}\0{self.client_id}".encode()
        object.__setattr__(self, "cache_key", key)

    @property
    def breaker_key(self) -> str:
        """Calls to the same endpoint share one rate budget and one circuit breaker."""
        return self.endpoint or f"discovery of {self.issuer}"


def basic_auth(client_id: str, secret: str) -> str:
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


async def _read_json(
    response: aiohttp.ClientResponse, *, what: str, limit: int
) -> tuple[dict[str, Any], int]:
    """The JSON object answered, and its size in bytes."""
    body = await read_answer(response, limit=limit, what=what, error=IntrospectionUnavailable)
    doc = json_object(
        body, refuse=lambda noun: IntrospectionUnavailable(f"{what} did not answer {noun}")
    )
    return doc, len(body)


async def discover_endpoint(session: aiohttp.ClientSession, issuer: str, *, limit: int) -> str:
    """The issuer's introspection_endpoint, from its discovery document."""
    url = discovery_url(issuer)
    async with session.get(
        url,
        allow_redirects=False,
        headers={"accept": "application/json"},
    ) as response:
        doc, _ = await _read_json(response, what=f"discovery of {issuer}", limit=limit)
    if doc.get("issuer") != issuer:
        raise IntrospectionUnavailable(f"the discovery document of {issuer} names another issuer")
    endpoint = doc.get("introspection_endpoint")
    if not isinstance(endpoint, str):
        raise IntrospectionUnavailable(
            f"the discovery document of {issuer} has no introspection_endpoint"
        )
    refusal = check_fetch_url(endpoint)
    if refusal:
        raise IntrospectionUnavailable(f"introspection endpoint of {issuer}: {refusal}")
    return endpoint


async def introspect(
    session: aiohttp.ClientSession,
    endpoint: str,
    token: str,
    *,
    client_id: str,
    secret: str,
    limit: int,
) -> tuple[dict[str, Any], int]:
    """The answer about `token` (a JSON object) and its size, or IntrospectionUnavailable."""
    async with session.post(
        endpoint,
        data={"token": token, "token_type_hint": "access_token"},
        allow_redirects=False,
        headers={"accept": "application/json", "authorization": basic_auth(client_id, secret)},
    ) as response:
        return await _read_json(response, what=f"introspection at {endpoint}", limit=limit)
