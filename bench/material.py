"""What every setup is asked to check: one RSA key, its JWKS, tokens, and the sidecar's policy.

A fresh RS256 key per run (not the published demo key) keeps the benchmark self-contained. The
same issuer, audience, kid and claim-to-header mapping go into jwt_authn's provider and the
sidecar's AuthPolicy, so both filters do the same work: verify the signature, check iss, aud
and exp, and copy `sub` into `x-user-id`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from authz.devtools.token import mint

ISSUER = "https://issuer.bench.authz.local"
AUDIENCE = "bench-api"
KID = "bench-key"
SUBJECT = "bench-user"
SCOPE = "bench:read"
#: The scope of the second rule (writes) of `sidecar_policy(..., writes=...)`.
WRITE_SCOPE = "bench:write"
#: The header both filters set from the `sub` claim.
USER_HEADER = "x-user-id"
#: Hosts the sidecar's policy claims (wrk and the probes send Host: 127.0.0.1:PORT).
HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class Material:
    private_pem: bytes
    jwks: dict[str, Any]
    #: Valid: right issuer, audience and scope.
    token: str
    #: Valid signature and claims, but without the scope the sidecar's rule requires.
    token_without_scope: str
    #: Signed by another key with the same kid: must be refused by every auth setup.
    token_bad_signature: str

    @property
    def jwks_json(self) -> str:
        return json.dumps(self.jwks, separators=(",", ":"))


def _pem(key: rsa.RSAPrivateKey | None = None) -> bytes:
    """A PEM private key: `key`, or a new RSA key."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encoding, private = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, private, serialization.NoEncryption())


def claims(*, scope: str, ttl: int = 6 * 3600) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "scope": scope,
        "iat": now,
        "exp": now + ttl,
    }


def make_material() -> Material:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=KID, alg="RS256", use="sig")
    pem = _pem(key)
    return Material(
        private_pem=pem,
        jwks={"keys": [jwk]},
        token=mint(key_pem=pem, claims=claims(scope=SCOPE), kid=KID),
        token_without_scope=mint(key_pem=pem, claims=claims(scope="other:thing"), kid=KID),
        token_bad_signature=mint(key_pem=_pem(), claims=claims(scope=SCOPE), kid=KID),
    )


def sidecar_policy(
    material: Material,
    *,
    name: str = "bench",
    hosts: tuple[str, ...] = HOSTS,
    rate_limit: int | None = None,
    writes: int | None = None,
) -> dict[str, Any]:
    """The sidecar's AuthPolicy: one rule requiring a scope, one header from a claim, and with
    `rate_limit` one limit per user (`claim:sub`, sliding window, that many a minute).

    With `writes`, the shape of a service among many (the scale benchmark's): the first rule
    takes reads only, a second rule takes writes with another scope and `writes` a minute per
    user, and the response rewrites headers (one more set to a literal, two removed)."""
    rule: dict[str, Any] = {"name": "read", "scopes": {"allOf": [SCOPE]}}
    if rate_limit is not None:
        rule["rateLimits"] = [
            {"name": "per-user", "requests": rate_limit, "window": "1m", "key": "claim:sub"}
        ]
    rules = [rule]
    response: dict[str, Any] = {"setHeaders": [{"name": USER_HEADER, "claim": "sub"}]}
    if writes is not None:
        rule["match"] = {"methods": ["GET", "HEAD"], "paths": ["/bench/**"]}
        limit = {"name": "writes", "requests": writes, "window": "1m", "key": "claim:sub"}
        match = {"methods": ["POST", "PUT", "DELETE"], "paths": ["/bench/items/{id}"]}
        rules.append(
            {
                "name": "write",
                "match": match,
                "scopes": {"allOf": [WRITE_SCOPE]},
                "rateLimits": [limit],
            }
        )
        response["setHeaders"].append({"name": "x-authz-policy", "value": name})
        response["removeHeaders"] = ["authorization", "cookie"]
    issuer = {"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["RS256"]}
    return {
        "apiVersion": "authz.dev/v1alpha1",
        "kind": "AuthPolicy",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "hosts": list(hosts),
            "issuers": [{**issuer, "jwks": material.jwks}],
            "rules": rules,
            "response": response,
        },
    }
