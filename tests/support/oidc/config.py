"""What the test provider is configured with: clients, resource servers and signing keys.

Defaults fit the sidecar's tests: one audience (`orders-api`) served by two resource servers that
differ only in token format, a gateway client that introspects, and one client per binding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import jwt

from tests.support.keys import SigningKey

#: Where the test provider expects the forwarded client certificate (URL-encoded PEM).
CLIENT_CERT_HEADER = "x-client-cert"

AUDIENCE = "orders-api"
SCOPES = ("orders:read", "orders:write")
#: Resource indicators (RFC 8707) of the default resource servers: same audience, two formats.
OPAQUE_RESOURCE = "https://orders.test/opaque"
JWT_RESOURCE = "https://orders.test/jwt"


@dataclass(frozen=True)
class Client:
    """A confidential client registered at the provider (client_secret_basic)."""

    client_id: str
    secret: str
    scope: str = " ".join(SCOPES)
    #: The provider refuses to issue this client a token without a DPoP proof.
    dpop_bound: bool = False
    #: The provider binds this client's tokens to its certificate, and requires one.
    certificate_bound: bool = False

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "client_id": self.client_id,
            "client_secret": self.secret,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "scope": self.scope,
        }
        if self.dpop_bound:
            meta["dpop_bound_access_tokens"] = True
        if self.certificate_bound:
            meta["tls_client_certificate_bound_access_tokens"] = True
        return meta


GATEWAY = Client("orders-gateway", "gateway-secret")
DPOP_CLIENT = Client("dpop-client", "dpop-secret", dpop_bound=True)
MTLS_CLIENT = Client("mtls-client", "mtls-secret", certificate_bound=True)


@dataclass(frozen=True)
class Resource:
    """A resource server: the tokens issued for it (audience, scopes, lifetime, format)."""

    format: Literal["opaque", "jwt"]
    audience: str = AUDIENCE
    scope: str = " ".join(SCOPES)
    ttl: int = 300
    #: JWS alg of JWT tokens; the provider's default (RS256) when None.
    alg: str | None = None


DEFAULT_RESOURCES = {OPAQUE_RESOURCE: Resource("opaque"), JWT_RESOURCE: Resource("jwt")}


def private_jwks(keys: Sequence[SigningKey]) -> dict[str, Any]:
    """The provider's `jwks` configuration: private JWKs with their kid, use and alg."""
    out = []
    for key in keys:
        algorithm = jwt.get_algorithm_by_name(key.alg)
        jwk = dict(algorithm.to_jwk(key.private, as_dict=True))
        # PyJWT marks a private JWK key_ops ["sign"], and the provider would publish that on the
        # public key too - which a verifier rightly refuses to verify with. Real providers omit it.
        jwk.pop("key_ops", None)
        jwk.update(kid=key.kid, use="sig", alg=key.alg)
        out.append(jwk)
    return {"keys": out}


def provider_config(
    *,
    port: int,
    keys: Sequence[SigningKey],
    clients: Sequence[Client],
    resources: dict[str, Resource],
    dpop_nonce: bool,
    store_file: Path,
) -> dict[str, Any]:
    """The JSON document server.mjs reads at start."""
    return {
        "port": port,
        "jwks": private_jwks(keys),
        "clients": [c.metadata() for c in clients],
        "scopes": list(SCOPES),
        "resources": {
            uri: {k: v for k, v in asdict(r).items() if v is not None}
            for uri, r in resources.items()
        },
        # Lifetime (seconds) of a token requested without a resource.
        "defaultTtl": 600,
        "dpopNonce": dpop_nonce,
        "clientCertHeader": CLIENT_CERT_HEADER,
        "storeFile": str(store_file),
    }
