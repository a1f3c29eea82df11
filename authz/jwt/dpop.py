"""Read and verify a DPoP proof (RFC 9449): the client's signature over this one request.

A DPoP-bound access token names a key (`cnf.jkt`, the RFC 7638 thumbprint of a public key);
each request carries a fresh proof JWT signed by that key. Everything here runs on
attacker-controlled bytes, so it is strict and bounded, like token.parse_token: one proof of at
most a few kilobytes, `typ` dpop+jwt, an asymmetric `alg` the issuer allows (never none, never
HMAC), and a `jwk` header that is a public key only - loaded by the same rules as an issuer's
JWKS (authz.jwt.keys), so symmetric keys, private members and short RSA keys are refused. The
signature is checked by PyJWT's algorithms, as for access tokens.

This module checks what the proof says about itself and about the token (signature, key,
`iat` window, `jti` shape, `ath`). What it says about the request (`htm`, `htu`) is compared by
the pipeline, which owns the request's normal form, and the `jti` is remembered last (see
replay.py), so only a proof that passed every check can use up its `jti`.

Messages are constants: nothing from the proof or the token is echoed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from jwt.algorithms import get_default_algorithms

from authz.errors import ProofError, TokenError
from authz.jwt.keys import VerificationKey, load_public_key
from authz.jwt.token import parse_token

_ALGORITHMS = get_default_algorithms()
#: The members RFC 7638 section 3.2 hashes for each key type, in lexicographic order.
_THUMBPRINT_MEMBERS: Final = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
#: A proof with an RSA-4096 key is about 2.3 kB; anything far larger is not a proof.
MAX_PROOF_BYTES: Final = 4096
_MAX_JTI = 256
DPOP_TYP: Final = "dpop+jwt"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK (base64url). Raises ValueError when the key
    lacks a member the thumbprint needs."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise ValueError("the key cannot be thumbprinted")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), ensure_ascii=False)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(token: str) -> str:
    """What a proof's `ath` must be: base64url(SHA-256(the access token's ASCII))."""
    return b64url(hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest())


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof whose signature, key and timing have been checked."""

    #: RFC 7638 thumbprint of the proof's key (what `cnf.jkt` must equal).
    thumbprint: str
    htm: str
    htu: str
    iat: float
    jti: str
    #: The server-provided nonce, when the proof carries one (checked by the caller).
    nonce: object = None


def _fail(message: str) -> ProofError:
    return ProofError(message)


class _KnownKeys:
    """Proof keys already loaded, by the proof's encoded header (a client signs every proof
    with the same key, so its header repeats): loading a JWK and thumbprinting it is a visible
    part of a proof check. Bounded: cleared when full. Only keys that passed are kept."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: dict[bytes, tuple[VerificationKey, str]] = {}

    def get(self, header: bytes) -> tuple[VerificationKey, str] | None:
        return self._keys.get(header)

    def put(self, header: bytes, loaded: tuple[VerificationKey, str]) -> None:
        if len(self._keys) >= self._size:
            self._keys.clear()
        self._keys[header] = loaded


_KNOWN = _KnownKeys(4096)


def _public_key(header: Mapping[str, Any], alg: str) -> tuple[VerificationKey, str]:
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise _fail("DPoP proof has no jwk header")
    if jwk.get("kty") == "oct":
        raise _fail("DPoP proof key is symmetric")
    loaded = load_public_key(jwk)
    if isinstance(loaded, str):
        raise _fail("DPoP proof key is not a usable public key")
    if alg not in loaded.algorithms:
        raise _fail("DPoP proof algorithm does not fit its key")
    try:
        thumbprint = jwk_thumbprint(jwk)
    except ValueError:
        raise _fail("DPoP proof key is not a usable public key") from None
    return loaded, thumbprint


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def read_proof(
    value: str,
    *,
    access_token: str,
    algorithms: frozenset[str],
    now: float,
    window: float,
    max_bytes: int = MAX_PROOF_BYTES,
) -> Proof:
    """The checked proof of a `DPoP` header value, or ProofError saying which check failed."""
    value = value.strip()
    if not value:
        raise _fail("DPoP proof is empty")
    if "," in value:  # Envoy joins repeated headers with ","; a compact JWS has none
        raise _fail("more than one DPoP proof")
    if len(value) > max_bytes:
        raise _fail(f"DPoP proof is larger than {max_bytes} bytes")
    try:
        parsed = parse_token(value, max_bytes=max_bytes)
    except TokenError:
        raise _fail("DPoP proof is not a well-formed signed JWT") from None
    header, claims = parsed.header, parsed.claims
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() != DPOP_TYP:
        raise _fail("DPoP proof typ is not dpop+jwt")
    if parsed.alg not in algorithms:
        raise _fail("DPoP proof algorithm is not allowed")
    encoded_header = parsed.signing_input.partition(b".")[0]
    known = _KNOWN.get(encoded_header)
    if known is None:
        known = _public_key(header, parsed.alg)
        _KNOWN.put(encoded_header, known)
    key, thumbprint = known
    try:
        valid = _ALGORITHMS[parsed.alg].verify(parsed.signing_input, key.key, parsed.signature)
    except Exception:  # malformed signatures raise inside cryptography; all mean "invalid"
        valid = False
    if not valid:
        raise _fail("DPoP proof signature is invalid")
    htm, htu, jti = claims.get("htm"), claims.get("htu"), claims.get("jti")
    if not isinstance(htm, str) or not isinstance(htu, str):
        raise _fail("DPoP proof lacks htm or htu")
    if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI:
        raise _fail("DPoP proof jti is missing or malformed")
    iat = _number(claims.get("iat"))
    if iat is None:
        raise _fail("DPoP proof iat is missing or not a number")
    if iat > now + window:
        raise _fail("DPoP proof was issued in the future")
    if iat < now - window:
        raise _fail("DPoP proof is too old")
    ath = claims.get("ath")
    if not isinstance(ath, str):
        raise _fail("DPoP proof has no ath")
    if not hmac.compare_digest(ath.encode(), access_token_hash(access_token).encode()):
        raise _fail("DPoP proof ath does not match the access token")
    return Proof(
        thumbprint=thumbprint, htm=htm, htu=htu, iat=iat, jti=jti, nonce=claims.get("nonce")
    )
