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

ISSUER, AUDIENCE, KID = "https://issuer.bench.authz.local", "bench-api", "bench-key"
SUBJECT, SCOPE, WRITE_SCOPE = "bench-user", "bench:read", "bench:write"
USER_HEADER = "x-user-id"  # the header both filters set from the `sub` claim.
HOSTS = ("127.0.0.1", "localhost")  # wrk and the probes send Host: 127.0.0.1:PORT.


@dataclass(frozen=True, slots=True)
class Material:
    jwks: dict[str, Any]
    token: str  # right issuer, audience and scope
    token_without_scope: str  # valid, but without the scope the sidecar's rule requires
    token_bad_signature: str  # signed by another key with the same kid: refused by every auth

    @property
    def jwks_json(self) -> str:
        return json.dumps(self.jwks, separators=(",", ":"))


def _token(key: rsa.RSAPrivateKey, scope: str) -> str:
    encoding, private = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    pem = key.private_bytes(encoding, private, serialization.NoEncryption())
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "scope": scope}
    return mint(key_pem=pem, claims={**claims, "iat": now, "exp": now + 6 * 3600}, kid=KID)


def make_material() -> Material:
    key, other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=KID, alg="RS256", use="sig")
    return Material(
        jwks={"keys": [jwk]},
        token=_token(key, SCOPE),
        token_without_scope=_token(key, "other:thing"),
        token_bad_signature=_token(other, SCOPE),
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
        limit = {"name": "per-user", "requests": rate_limit, "window": "1m", "key": "claim:sub"}
        rule["rateLimits"] = [limit]
    rules = [rule]
    response: dict[str, Any] = {"setHeaders": [{"name": USER_HEADER, "claim": "sub"}]}
    if writes is not None:
        rule["match"] = {"methods": ["GET", "HEAD"], "paths": ["/bench/**"]}
        limit = {"name": "writes", "requests": writes, "window": "1m", "key": "claim:sub"}
        match = {"methods": ["POST", "PUT", "DELETE"], "paths": ["/bench/items/{id}"]}
        scopes = {"allOf": [WRITE_SCOPE]}
        rules.append({"name": "write", "match": match, "scopes": scopes, "rateLimits": [limit]})
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
