"""Hostile tokens, through the real Envoy and straight at the gRPC service: each is denied with
401 and the service stays up. Key-locating headers (jku, x5u) point at a server that must never
receive a request."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable, Iterator

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.e2e.gateway import HOST, Gateway, start_gateway
from tests.support.grpcclient import CheckClient, check_request
from tests.support.http import request
from tests.support.keys import SigningKey, b64, claims, craft, ec_key, rsa_key
from tests.support.procs import Proc, start_http_dir


class Ctx:
    def __init__(
        self,
        gw: Gateway,
        rsa: SigningKey,
        ec: SigningKey,
        attacker: SigningKey,
        evil_url: str,
        evil: Proc,
    ) -> None:
        self.gw, self.rsa, self.ec, self.attacker, self.evil_url, self.evil = (
            gw,
            rsa,
            ec,
            attacker,
            evil_url,
            evil,
        )


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def ctx(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Ctx]:
    """The gateway, once with one sidecar process and once with `--workers 2` (checks spread
    over two processes, each on its own socket)."""
    tmp = tmp_path_factory.mktemp("hostile")
    rsa, ec, attacker = rsa_key("rsa-1"), ec_key("ec-1"), rsa_key("attacker")
    gw = start_gateway(tmp, rsa, ec, workers=request.param)
    evil_dir = tmp / "evil"
    evil_dir.mkdir()
    (evil_dir / "jwks.json").write_text(json.dumps({"keys": [attacker.jwk]}))
    evil, port = start_http_dir(tmp, evil_dir, name="evil-server")
    yield Ctx(gw, rsa, ec, attacker, f"http://127.0.0.1:{port}", evil)
    evil.terminate()
    gw.stop()


def _self_signed(key: SigningKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key.private, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _swap_payload(c: Ctx) -> str:
    honest = c.rsa.sign(claims(scope="orders:read"))
    forged = c.rsa.sign(claims(scope="orders:read orders:write admin")).split(".")[1]
    h, _, s = honest.split(".")
    return f"{h}.{forged}.{s}"


def _hs256_with_public_key(c: Ctx) -> str:
    public_pem = c.rsa.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}))
    payload = b64(json.dumps(claims()))
    import hmac

    sig = hmac.new(public_pem, f"{header}.{payload}".encode(), "sha256").digest()
    return f"{header}.{payload}.{b64(sig)}"


HOSTILE: dict[str, Callable[[Ctx], str]] = {
    "alg none": lambda c: craft({"alg": "none", "typ": "JWT"}, claims()),
    "alg None with signature": lambda c: craft({"alg": "None", "kid": "rsa-1"}, claims(), b"sig"),
    "alg NONE": lambda c: craft({"alg": "NONE"}, claims()) + "",
    "alg nOnE": lambda c: craft({"alg": "nOnE"}, claims(), b"x"),
    "HS256 signed with the RSA public key": _hs256_with_public_key,
    "jku to attacker": lambda c: c.attacker.sign(
        claims(), headers={"jku": f"{c.evil_url}/jwks.json"}
    ),
    "x5u to attacker": lambda c: c.attacker.sign(
        claims(), headers={"x5u": f"{c.evil_url}/cert.pem"}
    ),
    "embedded jwk": lambda c: c.attacker.sign(
        claims(), headers={"jwk": c.attacker.jwk, "kid": "rsa-1"}
    ),
    "attacker x5c": lambda c: c.attacker.sign(
        claims(), headers={"x5c": [_self_signed(c.attacker)], "kid": "rsa-1"}
    ),
    "kid path traversal": lambda c: c.attacker.sign(
        claims(), headers={"kid": "../../../../../dev/null"}
    ),
    "ECDSA all-zero signature": lambda c: craft(
        {"alg": "ES256", "kid": "ec-1"}, claims(), bytes(64)
    ),
    "payload swapped after signing": _swap_payload,
    "missing exp": lambda c: c.rsa.sign({k: v for k, v in claims().items() if k != "exp"}),
    "future nbf": lambda c: c.rsa.sign(claims(nbf=claims()["iat"] + 3600)),
    "future iat": lambda c: c.rsa.sign(claims(iat=claims()["exp"] + 3600)),
    "non-numeric exp": lambda c: c.rsa.sign(claims(exp="tomorrow")),
    "boolean exp": lambda c: c.rsa.sign(claims(exp=True)),
    "exp overflowing a float": lambda c: c.rsa.sign(claims(exp=10**400)),
    "nbf overflowing a float": lambda c: c.rsa.sign(claims(nbf=-(10**400))),
    "unknown crit": lambda c: c.rsa.sign(claims(), headers={"crit": ["exp"], "exp": 1}),
    "JWE-shaped 5-part token": lambda c: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
    "bad base64": lambda c: "!!!.???.***",
    "padded base64": lambda c: c.rsa.sign(claims()).replace(".", "=.", 1),
    "non-JSON header": lambda c: craft(b64("not json"), claims(), b"sig"),
    "JSON array header": lambda c: craft(b64("[1,2]"), claims(), b"sig"),
    "non-JSON payload": lambda c: craft({"alg": "RS256", "kid": "rsa-1"}, b64("\xff\xfe"), b"sig"),
    "deeply nested payload": lambda c: craft(
        {"alg": "RS256", "kid": "rsa-1"}, b64("[" * 5000 + "]" * 5000), b"s"
    ),
    "two segments": lambda c: "a.b",
    "empty signature": lambda c: ".".join(c.rsa.sign(claims()).split(".")[:2]) + ".",
    "alg mismatched with key (PS256 on RS key ok, ES256 on RSA kid)": lambda c: c.ec.sign(
        claims(), headers={"kid": "rsa-1"}
    ),
    "HS256 jwt library": lambda c: jwt.encode(
        claims(), "s" * 32, algorithm="HS256", headers={"kid": "rsa-1"}
    ),
    "8 KiB + 1": lambda c: c.rsa.sign(claims(pad="x" * 8192)),
}


def _assert_up(c: Ctx) -> None:
    assert c.gw.sidecar.alive(), c.gw.sidecar.output()
    assert request(c.gw.url, "/orders", host=HOST, token=c.rsa.sign(claims())).status == 200


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_token_through_envoy_is_401(ctx: Ctx, name: str) -> None:
    token = HOSTILE[name](ctx)
    response = request(ctx.gw.url, "/orders", host=HOST, token=token)
    assert response.status == 401, (name, response.status, response.body)
    assert response.json()["error"] == "invalid_token"
    _assert_up(ctx)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_token_straight_to_grpc_is_401(ctx: Ctx, name: str) -> None:
    client = CheckClient(ctx.gw.grpc)
    try:
        request_ = check_request(
            host=HOST, path="/orders", headers={"authorization": f"Bearer {HOSTILE[name](ctx)}"}
        )
        response = client.check(request_)
    finally:
        client.close()
    assert response.status.code == 16  # UNAUTHENTICATED
    assert response.denied_response.status.code == 401


def test_100_kib_token_is_denied_and_never_parsed(ctx: Ctx) -> None:
    huge = ctx.rsa.sign(claims(pad="x" * 100 * 1024))
    through_envoy = request(ctx.gw.url, "/orders", host=HOST, token=huge)
    assert through_envoy.status in (401, 431)  # Envoy may refuse the header size itself
    client = CheckClient(ctx.gw.grpc)
    try:
        response = client.check(
            check_request(host=HOST, path="/orders", headers={"authorization": f"Bearer {huge}"})
        )
    finally:
        client.close()
    assert response.denied_response.status.code == 401
    assert "larger than 8192 bytes" in response.denied_response.body
    _assert_up(ctx)


def test_basic_scheme_is_not_a_bearer_token(ctx: Ctx) -> None:
    response = request(
        ctx.gw.url, "/orders", host=HOST, headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"}
    )
    assert response.status == 401
    assert response.headers["www-authenticate"] == f'Bearer realm="{HOST}"'


def test_key_locating_headers_were_never_fetched(ctx: Ctx) -> None:
    for name in ("jku to attacker", "x5u to attacker"):
        assert request(ctx.gw.url, "/orders", host=HOST, token=HOSTILE[name](ctx)).status == 401
    assert "GET" not in ctx.evil.output(), ctx.evil.output()
