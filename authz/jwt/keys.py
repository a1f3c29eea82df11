"""Turn a JWKS document into verification keys, refusing anything that could be abused.

Only public signature keys are kept: symmetric (`oct`) keys are never used, so an attacker
cannot sign with HS256 using a public key as the secret; keys carrying private material, keys
marked for encryption and RSA keys below 2048 bits are skipped with a reason the operator can
read. Each key carries the exact set of algorithms it may verify, so a token's `alg` must fit
the key's type (and the key's own `alg`, when the JWKS states one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jwt import PyJWK
from jwt.exceptions import PyJWTError

#: Every algorithm the sidecar can accept. Never "none", never HMAC.
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key and the algorithms it may verify."""

    kid: str | None
    algorithms: frozenset[str]
    key: Any = field(repr=False)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class KeySet:
    """An issuer's usable keys, indexed by kid."""

    keys: tuple[VerificationKey, ...]
    by_kid: Mapping[str, VerificationKey]
    #: Why some JWKS entries were not used (for logs and `authz explain`).
    skipped: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """A stable description of the key set; it changes exactly when the usable keys change."""
        return json.dumps(
            sorted([k.kid or "", sorted(k.algorithms), _public_numbers(k.key)] for k in self.keys)
        )


def _public_numbers(key: Any) -> str:
    numbers = getattr(key, "public_numbers", None)
    if numbers is not None:
        return repr(numbers())
    raw = getattr(key, "public_bytes_raw", None)
    return raw().hex() if raw is not None else repr(key)


def _compatible_algorithms(jwk: Mapping[str, Any]) -> frozenset[str]:
    kty = jwk.get("kty")
    if kty == "RSA":
        return _RSA_ALGS
    if kty == "EC":
        alg = _EC_ALGS.get(str(jwk.get("crv")))
        return frozenset({alg}) if alg else frozenset()
    if kty == "OKP" and str(jwk.get("crv")) in _OKP_CURVES:
        return frozenset({"EdDSA"})
    return frozenset()


def _load_key(jwk: Mapping[str, Any], where: str) -> VerificationKey | str:
    """Return the key, or the reason it was skipped."""
    label = where + (f" (kid {jwk['kid']!r})" if isinstance(jwk.get("kid"), str) else "")
    kty = jwk.get("kty")
    if kty == "oct":
        return f"{label}: symmetric keys are never used to verify tokens"
    if _PRIVATE_MEMBERS & jwk.keys():
        return f"{label}: contains private key material; publish only public keys"
    if jwk.get("use", "sig") != "sig":
        return f"{label}: use is {jwk.get('use')!r}, not 'sig'"
    ops = jwk.get("key_ops")
    # The public half of a signing key is published with "sign" by some servers (oidc-provider
    # copies the private key's operations): either one says "a signature key".
    if ops is not None and (
        not isinstance(ops, list) or ("verify" not in ops and "sign" not in ops)
    ):
        return f"{label}: key_ops does not allow 'verify'"
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        return f"{label}: kid must be a string"
    algorithms = _compatible_algorithms(jwk)
    declared = jwk.get("alg")
    if declared is not None:
        algorithms = algorithms & {declared} if isinstance(declared, str) else frozenset()
    if not algorithms:
        return f"{label}: no supported signature algorithm fits kty {kty!r} / alg {declared!r}"
    # Malformed members raise InvalidKeyError (a PyJWTError, not a PyJWKError): skip this key only.
    try:
        loaded = PyJWK(dict(jwk), algorithm=sorted(algorithms)[0]).key
    except (PyJWTError, ValueError, TypeError, KeyError) as exc:
        return f"{label}: unusable key: {exc}"
    if kty == "RSA" and loaded.key_size < _MIN_RSA_BITS:
        return f"{label}: RSA key of {loaded.key_size} bits is below {_MIN_RSA_BITS}"
    return VerificationKey(kid=kid, algorithms=algorithms, key=loaded)


def load_public_key(jwk: Mapping[str, Any], *, label: str = "jwk") -> VerificationKey | str:
    """One public signature key by the same rules as a JWKS entry (a DPoP proof's `jwk`
    header), or the reason it is refused."""
    return _load_key(jwk, label)


def parse_jwks(document: object) -> KeySet:
    """Build a KeySet from a parsed JWKS document. Raises ValueError when nothing is usable."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS document must be an object with a "keys" array')
    keys: list[VerificationKey] = []
    skipped: list[str] = []
    for index, jwk in enumerate(document["keys"]):
        result = (
            _load_key(jwk, f"keys[{index}]")
            if isinstance(jwk, Mapping)
            else f"keys[{index}]: not an object"
        )
        if isinstance(result, str):
            skipped.append(result)
        else:
            keys.append(result)
    if not keys:
        raise ValueError(
            "no usable signature key in JWKS" + (": " + "; ".join(skipped) if skipped else "")
        )
    by_kid: dict[str, VerificationKey] = {}
    for key in keys:
        if key.kid is not None:
            by_kid.setdefault(key.kid, key)
    return KeySet(keys=tuple(keys), by_kid=by_kid, skipped=tuple(skipped))
