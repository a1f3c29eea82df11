"""The client's side of sender-constrained tokens: a DPoP key with its proofs, a client certificate.

Written from the RFCs, independently of the sidecar's code, so a test comparing the two can catch a
mistake in either: RFC 7638 (JWK thumbprint), RFC 9449 (DPoP proof JWT), RFC 8705 (certificate
thumbprint `x5t#S256`).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

#: The members RFC 7638 §3.2 hashes for each key type, in the lexicographic order it requires.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK, base64url without padding."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class DpopKey:
    """A client's DPoP key pair; `proof()` signs one proof JWT per request."""

    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    alg: str
    jwk: dict[str, Any] = field(repr=False)

    @classmethod
    def generate(cls, alg: str = "ES256") -> DpopKey:
        private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        if alg == "ES256":
            ec_key = ec.generate_private_key(ec.SECP256R1())
            private = ec_key
            public_jwk = jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
        elif alg == "EdDSA":
            ed_key = ed25519.Ed25519PrivateKey.generate()
            private = ed_key
            public_jwk = jwt.algorithms.OKPAlgorithm.to_jwk(ed_key.public_key(), as_dict=True)
        else:
            raise ValueError(f"unsupported DPoP alg {alg!r}: use ES256 or EdDSA")
        return cls(private, alg, dict(public_jwk))

    @property
    def thumbprint(self) -> str:
        """What a bound token carries as `cnf.jkt`."""
        return jwk_thumbprint(self.jwk)

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: int | None = None,
        jti: str | None = None,
        headers: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A DPoP proof for `method url`; with `access_token`, bound to it by `ath`.

        `headers` and `claims` override or add members, for hostile proofs in tests.
        """
        payload: dict[str, Any] = {
            "htm": method,
            "htu": url,
            "iat": int(time.time()) if iat is None else iat,
            "jti": jti or uuid.uuid4().hex,
        }
        if access_token is not None:
            payload["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        if nonce is not None:
            payload["nonce"] = nonce
        payload.update(claims or {})
        header = {"typ": "dpop+jwt", "jwk": self.jwk, **(headers or {})}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers=header)


@dataclass(frozen=True)
class ClientCertificate:
    """A self-signed client certificate, as a client would present it in mutual TLS."""

    pem: str
    der: bytes = field(repr=False)

    @classmethod
    def generate(cls, common_name: str = "orders-client") -> ClientCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        return cls(
            cert.public_bytes(serialization.Encoding.PEM).decode(),
            cert.public_bytes(serialization.Encoding.DER),
        )

    @property
    def x5t_s256(self) -> str:
        """RFC 8705 §3.1: base64url SHA-256 of the DER certificate, what `cnf["x5t#S256"]` holds."""
        return b64url(hashlib.sha256(self.der).digest())

    @property
    def url_encoded(self) -> str:
        """The PEM URL-encoded, as Envoy forwards a peer certificate (and the test provider reads it)."""
        return urllib.parse.quote(self.pem, safe="")
