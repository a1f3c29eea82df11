"""`authz token`: DEV ONLY - mint a JWT signed with the demo key from examples/keys.

The demo private key is published in this repository, so tokens it signs prove nothing; the
command exists so a newcomer can call the local gateway (`make run`) with a valid token.

With `--dpop-url`, the token is DPoP-bound to a key made for this one call (`cnf.jkt`), and the
command prints the two request headers - the token and a proof for that method and URL - ready
for `curl -H @-`. A proof is good for one request within the sidecar's window, so mint a new
pair per request.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from jwt.algorithms import ECAlgorithm

from authz.errors import ConfigError
from authz.jwt.dpop import access_token_hash, jwk_thumbprint
from authz.jwt.keys import SUPPORTED_ALGORITHMS

DEMO_ISSUER = "https://demo-issuer.authz.local"
DEMO_AUDIENCE = "demo-api"
DEMO_KID = "demo-2026"
DEMO_KEY = Path("examples/keys/demo-private.pem")


HELP = "DEV ONLY: mint a token signed with the demo key"
DESCRIPTION = (
    "DEV ONLY. Mint a JWT signed with the demo private key in examples/keys (a published key: its "
    "tokens prove nothing). For calling the local gateway of `make run`."
)


def add_arguments(token: argparse.ArgumentParser) -> None:
    """The flags of `authz token`."""
    token.add_argument("--sub", default="alice", help="subject (default %(default)s)")
    token.add_argument(
        "--scope", default="", help='space-separated scopes, e.g. "orders:read orders:write"'
    )
    token.add_argument("--aud", default=DEMO_AUDIENCE, help="audience (default %(default)s)")
    token.add_argument("--iss", default=DEMO_ISSUER, help="issuer (default %(default)s)")
    token.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help="seconds until exp (default %(default)s; negative = expired)",
    )
    token.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="extra claim; the value is parsed as JSON when it can be (repeatable)",
    )
    token.add_argument(
        "--key", type=Path, default=DEMO_KEY, help="PEM private key (default %(default)s)"
    )
    token.add_argument("--kid", default=DEMO_KID, help="key id header (default %(default)s)")
    token.add_argument(
        "--dpop-url",
        metavar="URL",
        help="bind the token to a fresh DPoP key and print `Authorization: DPoP` and `DPoP` "
        "header lines, with a proof for --dpop-method URL (pipe into `curl -H @- URL`)",
    )
    token.add_argument(
        "--dpop-method", default="GET", help="the proof's method (default %(default)s)"
    )
    token.add_argument(
        "--alg",
        default="RS256",
        help="signature algorithm, one the sidecar verifies and the key can make: "
        f"{', '.join(sorted(SUPPORTED_ALGORITHMS))} (default %(default)s)",
    )


def mint(
    *,
    key_pem: bytes,
    claims: dict[str, Any],
    kid: str | None = DEMO_KID,
    alg: str = "RS256",
    headers: dict[str, Any] | None = None,
) -> str:
    extra = dict(headers or {})
    if kid is not None:
        extra["kid"] = kid
    return jwt.encode(claims, key_pem, algorithm=alg, headers=extra)


def demo_claims(
    *, sub: str, scope: str, aud: str = DEMO_AUDIENCE, iss: str = DEMO_ISSUER, ttl: int = 3600
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + ttl}
    if scope:
        claims["scope"] = scope
    return claims


def _key_algorithms(key: PrivateKeyTypes) -> tuple[str, tuple[str, ...]]:
    """What a private key is, and the signature algorithms it can make that the sidecar verifies."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "an RSA key", ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        fitting = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        curve = key.curve.name
        return f"an EC {curve} key", (fitting[curve],) if curve in fitting else ()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "an Ed25519 key", ("EdDSA",)
    if isinstance(key, ed448.Ed448PrivateKey):
        return "an Ed448 key", ("EdDSA",)
    return f"a {type(key).__name__}", ()


def signing_key(path: Path, alg: str) -> bytes:
    """The PEM private key at `path`, checked to make `alg` signatures. Raises ConfigError."""
    if alg not in SUPPORTED_ALGORITHMS:
        raise ConfigError(
            f"--alg: expected one of {', '.join(sorted(SUPPORTED_ALGORITHMS))}, got {alg!r} "
            "(the sidecar accepts asymmetric signatures only)"
        )
    try:
        key_pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"--key: cannot read {path} ({exc.strerror}); run from the repository root or pass --key"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"--key: {path} is not an unencrypted PEM private key") from None
    what, fitting = _key_algorithms(key)
    if alg not in fitting:
        advice = f"use --alg {' or '.join(fitting)}" if fitting else "no supported algorithm fits"
        raise ConfigError(f"--alg {alg} cannot sign with {path}, {what}; {advice}")
    return key_pem


def dpop_headers(
    *, key_pem: bytes, claims: dict[str, Any], kid: str | None, alg: str, method: str, url: str
) -> tuple[str, str]:
    """(`Authorization: DPoP ...`, `DPoP: ...`): a token bound to a fresh P-256 key, and that
    key's proof for `method url` (RFC 9449)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"--dpop-url: expected an http(s) URL, got {url!r}")
    client_key = ec.generate_private_key(ec.SECP256R1())
    public_jwk = json.loads(ECAlgorithm.to_jwk(client_key.public_key()))
    token = mint(
        key_pem=key_pem,
        claims={**claims, "cnf": {"jkt": jwk_thumbprint(public_jwk)}},
        kid=kid,
        alg=alg,
    )
    proof = jwt.encode(
        {
            "htm": method.upper(),
            "htu": urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path, "", "")),
            "iat": int(time.time()),
            "jti": secrets.token_urlsafe(16),
            "ath": access_token_hash(token),
        },
        client_key,
        algorithm="ES256",
        headers={"typ": "dpop+jwt", "jwk": public_jwk},
    )
    return f"Authorization: DPoP {token}", f"DPoP: {proof}"


def run_token(args: argparse.Namespace) -> int:
    key_pem = signing_key(args.key, args.alg)
    claims = demo_claims(sub=args.sub, scope=args.scope, aud=args.aud, iss=args.iss, ttl=args.ttl)
    for item in args.claim:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--claim: expected NAME=VALUE, got {item!r}")
        try:
            claims[name] = json.loads(raw)
        except ValueError:
            claims[name] = raw
    if args.dpop_url:
        lines = dpop_headers(
            key_pem=key_pem,
            claims=claims,
            kid=args.kid or None,
            alg=args.alg,
            method=args.dpop_method,
            url=args.dpop_url,
        )
        print("\n".join(lines), file=sys.stdout)
        return 0
    print(mint(key_pem=key_pem, claims=claims, kid=args.kid or None, alg=args.alg), file=sys.stdout)
    return 0
