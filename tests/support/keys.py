"""Signing keys and tokens for tests, including the hostile ones.

`craft` builds a compact JWS from raw parts so tests can produce what no honest library would:
alg none, swapped payloads, bad base64, JWE-shaped tokens.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = "https://issuer.test"
AUDIENCE = "orders-api"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]

    @property
    def pem(self) -> bytes:
        return bytes(
            self.private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def sign(
        self,
        claims: dict[str, Any],
        *,
        headers: dict[str, Any] | None = None,
        alg: str | None = None,
    ) -> str:
        return jwt.encode(
            claims,
            self.private,
            algorithm=alg or self.alg,
            headers={"kid": self.kid, **(headers or {})},
        )


def rsa_key(kid: str = "rsa-1", alg: str = "RS256") -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid=kid, use="sig")
    return SigningKey(kid, alg, private, jwk)


def ec_key(kid: str = "ec-1") -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid=kid)
    return SigningKey(kid, "ES256", private, jwk)


def ed_key(kid: str = "ed-1") -> SigningKey:
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid=kid)
    return SigningKey(kid, "EdDSA", private, jwk)


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.jwk for k in keys]}


def claims(
    *, scope: str = "orders:read", sub: str = "alice", ttl: int = 600, **extra: Any
) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + ttl}
    if scope:
        out["scope"] = scope
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def craft(
    header: dict[str, Any] | str, payload: dict[str, Any] | str, signature: bytes | str = b""
) -> str:
    h = header if isinstance(header, str) else b64(json.dumps(header))
    p = payload if isinstance(payload, str) else b64(json.dumps(payload))
    s = signature if isinstance(signature, str) else b64(signature)
    return f"{h}.{p}.{s}"
