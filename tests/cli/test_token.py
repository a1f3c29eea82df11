"""`authz token` (DEV ONLY): tokens the sidecar accepts, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authz.devtools.token import DEMO_AUDIENCE, DEMO_ISSUER
from authz.errors import TokenError
from authz.jwt.keys import SUPPORTED_ALGORITHMS
from authz.jwt.providers import StaticKeys, offline_provider
from authz.jwt.sources import KeySource
from authz.jwt.verify import IssuerSpec, VerifiedToken, Verifier
from authz.pipeline.decide import decide
from authz.pipeline.request import CheckInput
from authz.policy.store import PolicyStore, SourceDocument
from tests.cli.support import DEMO_JWKS, DEMO_KEY, ROOT, run


async def verify_demo(token: str, *, now: float | None = None) -> VerifiedToken:
    provider = StaticKeys(KeySource.inline(json.loads(DEMO_JWKS.read_text())))
    issuers = {
        DEMO_ISSUER: IssuerSpec(
            issuer=DEMO_ISSUER,
            audiences=frozenset({DEMO_AUDIENCE}),
            algorithms=SUPPORTED_ALGORITHMS,
            leeway=0,
            provider=provider,
        )
    }
    return await Verifier().verify(token, issuers, now=time.time() if now is None else now)


async def test_token_verifies_with_the_demo_public_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        [
            "token",
            "--key",
            str(DEMO_KEY),
            "--sub",
            "bob",
            "--scope",
            "orders:read orders:write",
            "--claim",
            'org={"tenant": "t1"}',
            "--claim",
            "note=plain text",
            "--claim",
            "n=7",
        ],
        capsys,
    )
    assert code == 0
    verified = await verify_demo(out.strip())
    claims = verified.claims
    assert verified.alg == "RS256"
    assert (claims["sub"], claims["scope"], claims["aud"]) == (
        "bob",
        "orders:read orders:write",
        DEMO_AUDIENCE,
    )
    assert (claims["org"], claims["note"], claims["n"]) == ({"tenant": "t1"}, "plain text", 7)
    assert claims["exp"] - claims["iat"] == 3600


async def test_token_defaults_to_the_demo_key_from_the_repository_root(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run(["token"], capsys)
    assert code == 0
    verified = await verify_demo(out.strip())
    assert verified.claims["sub"] == "alice"
    assert "scope" not in verified.claims


async def test_an_expired_token(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["token", "--key", str(DEMO_KEY), "--ttl", "-60"], capsys)
    assert code == 0
    with pytest.raises(TokenError, match="expired"):
        await verify_demo(out.strip())


def test_other_algorithms_the_key_can_make(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["token", "--key", str(DEMO_KEY), "--alg", "PS384"], capsys)
    assert code == 0
    private = serialization.load_pem_private_key(DEMO_KEY.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    claims = jwt.decode(
        out.strip(), private.public_key(), algorithms=["PS384"], audience=DEMO_AUDIENCE
    )
    assert claims["iss"] == DEMO_ISSUER


def test_token_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(["token", "--key", str(tmp_path / "none.pem")], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"authz: error: --key: cannot read {tmp_path / 'none.pem'}")
    code, _, err = run(["token", "--key", str(DEMO_KEY), "--claim", "novalue"], capsys)
    assert (code, err) == (2, "authz: error: --claim: expected NAME=VALUE, got 'novalue'\n")


@pytest.mark.parametrize("alg", ["HS256", "none", "FOO", "rs256", ""])
def test_an_algorithm_the_sidecar_does_not_verify_is_one_line(
    alg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["token", "--key", str(DEMO_KEY), "--alg", alg], capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"authz: error: --alg: expected one of {', '.join(sorted(SUPPORTED_ALGORITHMS))}, "
        f"got {alg!r} (the sidecar accepts asymmetric signatures only)\n"
    )


def _pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_an_algorithm_that_does_not_fit_the_key_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(["token", "--key", str(DEMO_KEY), "--alg", "ES256"], capsys)
    assert code == 2
    assert err == (
        f"authz: error: --alg ES256 cannot sign with {DEMO_KEY}, an RSA key; use --alg RS256 or "
        "RS384 or RS512 or PS256 or PS384 or PS512\n"
    )
    p384 = _pem(ec.generate_private_key(ec.SECP384R1()), tmp_path / "p384.pem")
    code, _, err = run(["token", "--key", str(p384), "--alg", "ES256"], capsys)
    assert err == (
        f"authz: error: --alg ES256 cannot sign with {p384}, an EC secp384r1 key; use --alg ES384\n"
    )
    assert run(["token", "--key", str(p384), "--alg", "ES384"], capsys)[0] == 0
    edwards = _pem(ed25519.Ed25519PrivateKey.generate(), tmp_path / "ed.pem")
    assert run(["token", "--key", str(edwards), "--alg", "EdDSA"], capsys)[0] == 0


@pytest.mark.parametrize(
    "content",
    [b"not a key\n", b"", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_a_key_that_is_not_a_pem_private_key_is_one_line(
    content: bytes, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(content)
    code, out, err = run(["token", "--key", str(key)], capsys)
    assert (code, out) == (2, "")
    assert err == f"authz: error: --key: {key} is not an unencrypted PEM private key\n"
    jwks = DEMO_JWKS  # a public key set, not a private key
    code, _, err = run(["token", "--key", str(jwks)], capsys)
    assert err == f"authz: error: --key: {jwks} is not an unencrypted PEM private key\n"


async def test_a_dpop_bound_token_and_its_proof_pass_the_demo_policy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "http://127.0.0.1:8080/orders/42"
    code, out, _ = run(
        ["token", "--key", str(DEMO_KEY), "--scope", "orders:read", "--dpop-url", url + "?q=1"],
        capsys,
    )
    assert code == 0
    authorization, dpop = out.strip().splitlines()
    assert authorization.startswith("Authorization: DPoP ")
    assert dpop.startswith("DPoP: ")
    policy = yaml.safe_load((ROOT / "examples/policies/demo.yaml").read_text())
    snapshot = PolicyStore(bind=offline_provider).update("t", [SourceDocument("demo", policy)])
    request = CheckInput(
        method="GET",
        host="127.0.0.1",
        raw_path="/orders/42",
        headers={"authorization": authorization.split(": ", 1)[1], "dpop": dpop.split(": ", 1)[1]},
        scheme="http",
        authority="127.0.0.1:8080",
    )
    verifier = Verifier()
    first = await decide(snapshot, request, verifier=verifier, now=time.time())
    assert first.allowed, first
    again = await decide(snapshot, request, verifier=verifier, now=time.time())
    assert again.reason == "invalid_dpop_proof"  # one request per proof


def test_dpop_url_must_be_http(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["token", "--key", str(DEMO_KEY), "--dpop-url", "ftp://x/y"], capsys)
    assert code == 2
    assert "--dpop-url: expected an http(s) URL" in err
