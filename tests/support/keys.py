"""Signing keys and tokens for tests, including the hostile ones.

`craft` builds a compact JWS from raw parts so tests can produce what no honest library would:
alg none, swapped payloads, bad base64, JWE-shaped tokens.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
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


#: RSA keys made by earlier test runs, reused: a 2048-bit key takes tens of milliseconds to
#: generate, and the test modules make dozens of them as they are collected, in every pytest
#: process. A process takes the file's keys in order until it needs one more than the file
#: holds; from then on it makes new ones (adding them to the file, up to _POOL_SIZE), so the
#: keys one process holds always differ.
_POOL = Path(__file__).resolve().parents[2] / ".pytest_cache" / "authz-rsa-2048.pem"
_POOL_SIZE = 200
_END = b"-----END PRIVATE KEY-----\n"
_pooled: list[bytes] = []
_taken = 0


def _from_pool() -> rsa.RSAPrivateKey | None:
    global _taken
    if _taken < 0:
        return None
    if not _pooled:
        with contextlib.suppress(OSError):
            _pooled.extend(part + _END for part in _POOL.read_bytes().split(_END)[:-1])
    if _taken < len(_pooled):
        try:
            # Checking a key this suite made itself costs as much as making it anew.
            key = serialization.load_pem_private_key(
                _pooled[_taken], password=None, unsafe_skip_rsa_key_validation=True
            )
        except ValueError:  # cut short: a process stopped while it wrote
            key = None
        if isinstance(key, rsa.RSAPrivateKey):
            _taken += 1
            return key
    _taken = -1  # the pool is used up for this process
    return None


def _rsa_private() -> rsa.RSAPrivateKey:
    pooled = _from_pool()
    if pooled is not None:
        return pooled
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        _POOL.parent.mkdir(exist_ok=True)
        with _POOL.open("a+b") as pool:
            fcntl.flock(pool, fcntl.LOCK_EX)  # pytest-xdist's workers add to it at once
            os.fchmod(pool.fileno(), 0o600)  # test keys, but private keys all the same
            pool.seek(0)
            if pool.read().count(_END) < _POOL_SIZE:
                pool.write(pem)
    except OSError:
        pass  # a read-only checkout: the keys are only not kept
    return key


def rsa_key(kid: str = "rsa-1", alg: str = "RS256") -> SigningKey:
    private = _rsa_private()
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
