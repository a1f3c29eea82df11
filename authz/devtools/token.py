"""`authz token`: DEV ONLY - mint a JWT signed with the demo key from examples/keys.

The demo private key is published in this repository, so tokens it signs prove nothing; the
command exists so a newcomer can call the local gateway (`make run`) with a valid token.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jwt

from authz.errors import ConfigError

DEMO_ISSUER = "https://demo-issuer.authz.local"
DEMO_AUDIENCE = "demo-api"
DEMO_KID = "demo-2026"
DEMO_KEY = Path("examples/keys/demo-private.pem")


def add_token_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser(
        "token",
        help="DEV ONLY: mint a token signed with the demo key",
        description="DEV ONLY. Mint a JWT signed with the demo private key in examples/keys (a "
        "published key: its tokens prove nothing). For calling the local gateway of `make run`.",
    )
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
    token.add_argument("--alg", default="RS256", help="signature algorithm (default %(default)s)")


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


def run_token(args: argparse.Namespace) -> int:
    try:
        key_pem = args.key.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"--key: cannot read {args.key} ({exc.strerror}); run from the repository root or pass --key"
        ) from None
    claims = demo_claims(sub=args.sub, scope=args.scope, aud=args.aud, iss=args.iss, ttl=args.ttl)
    for item in args.claim:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--claim: expected NAME=VALUE, got {item!r}")
        try:
            claims[name] = json.loads(raw)
        except ValueError:
            claims[name] = raw
    print(mint(key_pem=key_pem, claims=claims, kid=args.kid or None, alg=args.alg), file=sys.stdout)
    return 0
