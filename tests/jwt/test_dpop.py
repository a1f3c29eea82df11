"""read_proof, the RFC 7638 thumbprint, the replay cache and the certificate thumbprint, against
hostile inputs. Proofs are made by the client-side helper of tests/support/oidc (written from the
RFCs independently of the sidecar) or crafted by hand where a real client would never go."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from authz.errors import ProofError, TokenError
from authz.jwt.certbound import certificate_thumbprint
from authz.jwt.dpop import MAX_PROOF_BYTES, access_token_hash, jwk_thumbprint, read_proof
from authz.jwt.keys import SUPPORTED_ALGORITHMS
from authz.jwt.nonce import Nonces
from authz.jwt.replay import ReplayCache, Use
from tests.support.keys import rsa_key
from tests.support.oidc.proofs import ClientCertificate, DpopKey
from tests.support.oidc.proofs import jwk_thumbprint as reference_thumbprint

NOW = 1_800_000_000
TOKEN = "the.access.token"
URL = "https://orders.test/orders"
KEY = DpopKey.generate()


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def proof(key: DpopKey = KEY, **overrides: Any) -> str:
    options: dict[str, Any] = {"access_token": TOKEN, "iat": NOW}
    options.update(overrides)
    return key.proof("GET", URL, **options)


def read(value: str, *, algorithms: frozenset[str] = SUPPORTED_ALGORITHMS, now: float = NOW) -> Any:
    return read_proof(value, access_token=TOKEN, algorithms=algorithms, now=now, window=60)


def test_a_good_proof_names_its_key_and_request() -> None:
    checked = read(proof())
    assert checked.thumbprint == KEY.thumbprint
    assert (checked.htm, checked.htu, checked.iat) == ("GET", URL, NOW)
    ed = DpopKey.generate("EdDSA")
    assert read(proof(ed)).thumbprint == ed.thumbprint


def test_thumbprint_matches_rfc_7638_and_the_reference() -> None:
    # The example of RFC 7638 section 3.1.
    rfc_jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
        "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vM"
        "QFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(rfc_jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    for key in (KEY, DpopKey.generate("EdDSA")):
        assert jwk_thumbprint(key.jwk) == reference_thumbprint(key.jwk) == key.thumbprint
    with pytest.raises(ValueError, match="cannot be thumbprinted"):
        jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": "AA"})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("not-a-jwt", "well-formed"),
        ("a.b.c.d.e", "well-formed"),
        ("!!!.???.###", "well-formed"),
        (f"{b64('{')}.{b64('{}')}.{b64('s')}", "well-formed"),
        ("x" * (MAX_PROOF_BYTES + 1), "larger than"),
    ],
    ids=["empty", "one-part", "five-parts", "not-base64url", "header-not-json", "oversized"],
)
def test_malformed_proofs(value: str, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        read(value)


def test_two_proofs_in_one_header_are_refused() -> None:
    # Envoy joins a repeated header with ",": two proofs arrive as one value.
    with pytest.raises(ProofError, match="more than one"):
        read(f"{proof()},{proof()}")
    with pytest.raises(ProofError, match="more than one"):
        read(f"{proof()}, {proof()}")


def crafted(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    return f"{b64(json.dumps(header))}.{b64(json.dumps(payload))}.{b64(signature)}"


def claims() -> dict[str, Any]:
    return {
        "htm": "GET",
        "htu": URL,
        "iat": NOW,
        "jti": "j1",
        "ath": access_token_hash(TOKEN),
    }


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"typ": "dpop+jwt", "alg": "none", "jwk": KEY.jwk}, "well-formed"),
        ({"typ": "dpop+jwt", "alg": "HS256", "jwk": KEY.jwk}, "algorithm is not allowed"),
        (
            {"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "oct", "k": b64("secret")}},
            "symmetric",
        ),
        ({"typ": "dpop+jwt", "alg": "ES256"}, "no jwk"),
        ({"typ": "dpop+jwt", "alg": "ES256", "jwk": "a string"}, "no jwk"),
        ({"typ": "JWT", "alg": "ES256", "jwk": KEY.jwk}, "typ"),
        ({"alg": "ES256", "jwk": KEY.jwk}, "typ"),
        (
            {"typ": "dpop+jwt", "alg": "ES256", "jwk": {**KEY.jwk, "x": "AAAA"}},
            "usable public key",
        ),
        ({"typ": "dpop+jwt", "alg": "RS256", "jwk": KEY.jwk}, "does not fit"),
        ({"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.jwk, "crit": ["exp"]}, "well-formed"),
    ],
    ids=[
        "alg-none",
        "hmac",
        "symmetric-jwk",
        "no-jwk",
        "jwk-not-object",
        "wrong-typ",
        "no-typ",
        "off-curve-key",
        "alg-key-mismatch",
        "crit",
    ],
)
def test_hostile_headers(header: dict[str, Any], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        read(crafted(header, claims()))


def test_private_key_material_in_the_jwk_is_refused() -> None:
    private = KEY.private
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    d = private.private_numbers().private_value.to_bytes(32, "big")
    leaky = {**KEY.jwk, "d": b64(d)}
    with pytest.raises(ProofError, match="usable public key"):
        read(proof(headers={"jwk": leaky}))


def test_an_algorithm_the_issuer_does_not_allow() -> None:
    with pytest.raises(ProofError, match="algorithm is not allowed"):
        read(proof(), algorithms=frozenset({"RS256"}))


def test_rsa_proof_keys_follow_the_jwks_rules() -> None:
    strong = rsa_key("strong")
    signed = strong.sign(claims(), headers={"typ": "dpop+jwt", "jwk": strong.jwk})
    assert read(signed).thumbprint == jwk_thumbprint(strong.jwk)
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    with pytest.warns(UserWarning, match="1024 bits"):  # PyJWT warns the client too
        weak = jwt.encode(
            claims(), private, algorithm="RS256", headers={"typ": "dpop+jwt", "jwk": weak_jwk}
        )
    with pytest.raises(ProofError, match="usable public key"):
        read(weak)


def test_a_signature_by_another_key_fails() -> None:
    other = DpopKey.generate()
    forged = proof(other, headers={"jwk": KEY.jwk})  # claims KEY, signed by other
    with pytest.raises(ProofError, match="signature is invalid"):
        read(forged)
    header, payload, _ = proof().split(".")
    with pytest.raises(ProofError, match="signature is invalid"):
        read(f"{header}.{payload}.{b64(b'x' * 64)}")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iat": NOW + 61}, "future"),
        ({"iat": NOW - 61}, "too old"),
        ({"claims": {"iat": "now"}}, "iat"),
        ({"claims": {"iat": float("inf")}}, "iat"),
        ({"claims": {"iat": True}}, "iat"),
        ({"access_token": "another.token"}, "ath does not match"),
        ({"access_token": None}, "no ath"),
        ({"claims": {"ath": 7}}, "no ath"),
        ({"claims": {"jti": ""}}, "jti"),
        ({"claims": {"jti": "j" * 257}}, "jti"),
        ({"claims": {"jti": 5}}, "jti"),
        ({"claims": {"htm": None}}, "htm or htu"),
        ({"claims": {"htu": ["x"]}}, "htm or htu"),
    ],
    ids=[
        "iat-future",
        "iat-past",
        "iat-string",
        "iat-infinite",
        "iat-bool",
        "wrong-ath",
        "no-ath",
        "ath-not-string",
        "empty-jti",
        "long-jti",
        "jti-number",
        "no-htm",
        "htu-list",
    ],
)
def test_hostile_claims(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        read(proof(**overrides))


def test_the_window_edges_are_inclusive() -> None:
    assert read(proof(iat=NOW + 60)).iat == NOW + 60
    assert read(proof(iat=NOW - 60)).iat == NOW - 60


def test_nothing_from_the_proof_is_echoed() -> None:
    marker = "ECHO-ME-<script>"
    for hostile in (
        proof(claims={"htm": marker, "jti": marker, "ath": marker}),
        proof(headers={"typ": marker}),
        crafted({"typ": "dpop+jwt", "alg": marker, "jwk": KEY.jwk}, claims()),
    ):
        with pytest.raises(ProofError) as refused:
            read(hostile)
        assert marker not in str(refused.value)


# --- the replay cache ----------------------------------------------------------------------------


def test_a_proof_is_accepted_once_until_it_expires() -> None:
    cache = ReplayCache(size=10)
    assert cache.use("k", "j1", expires=NOW + 60, now=NOW) is Use.FIRST
    assert cache.use("k", "j1", expires=NOW + 60, now=NOW + 30) is Use.REPLAY
    assert cache.seen("k", "j1", now=NOW + 30)
    assert cache.use("other-key", "j1", expires=NOW + 60, now=NOW) is Use.FIRST  # per key
    assert cache.use("k", "j1", expires=NOW + 200, now=NOW + 61) is Use.FIRST  # expired: forgotten


def test_the_cache_is_bounded_and_refuses_rather_than_forgets() -> None:
    cache = ReplayCache(size=3)
    for jti in ("a", "b", "c"):
        assert cache.use("k", jti, expires=NOW + 60, now=NOW) is Use.FIRST
    assert cache.use("k", "d", expires=NOW + 60, now=NOW) is Use.FULL
    assert len(cache) == 3
    assert cache.use("k", "a", expires=NOW + 60, now=NOW) is Use.REPLAY  # still remembered
    # Once the old proofs expire, room is made without any other call.
    assert cache.use("k", "d", expires=NOW + 200, now=NOW + 61) is Use.FIRST
    assert len(cache) == 1


def test_a_flood_of_proofs_keeps_the_cache_within_its_size() -> None:
    cache = ReplayCache(size=100)
    for i in range(10_000):
        cache.use("k", str(i), expires=i + 60, now=i)
        assert len(cache) <= 100


def test_a_cache_needs_room() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ReplayCache(size=0)


# --- the client certificate ----------------------------------------------------------------------

CERT = ClientCertificate.generate()


def test_the_certificate_thumbprint_is_rfc_8705s() -> None:
    assert certificate_thumbprint(CERT.url_encoded) == CERT.x5t_s256
    assert certificate_thumbprint(CERT.pem) == CERT.x5t_s256  # unencoded PEM decodes the same


@pytest.mark.parametrize(
    ("forwarded", "message"),
    [
        ("", "no client certificate"),
        ("garbage", "not one PEM"),
        (urllib.parse.quote(CERT.pem + CERT.pem, safe=""), "not one PEM"),
        (urllib.parse.quote(CERT.pem.replace("M", "!"), safe=""), "cannot be read"),
        (urllib.parse.quote(CERT.pem[:200], safe=""), "cannot be read"),
        ("%FF%FE" + CERT.url_encoded, "cannot be read"),
        (urllib.parse.quote(CERT.url_encoded, safe=""), "not one PEM"),
        ("x" * 20_000, "too large"),
    ],
    ids=[
        "absent",
        "garbage",
        "two-certificates",
        "corrupt-base64",
        "truncated",
        "not-utf8",
        "double-encoded",
        "oversized",
    ],
)
def test_unusable_certificates(forwarded: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        certificate_thumbprint(forwarded)


# --- server nonces -------------------------------------------------------------------------------


def test_a_nonce_is_current_for_its_window_and_the_next() -> None:
    nonces = Nonces(b"secret", lifetime=60)
    nonce = nonces.current(NOW)
    assert nonces.valid(nonce, NOW)
    assert nonces.valid(nonce, NOW + 60)
    assert not nonces.valid(nonce, NOW + 180)
    assert not nonces.valid(nonce, NOW - 120)  # from a later step: not issued yet
    assert not Nonces(b"other", lifetime=60).valid(nonce, NOW)  # another process's secret


@pytest.mark.parametrize(
    "nonce",
    [None, 7, "", "!!!", "A" * 65, b64(b"x" * 24), b64(b"x" * 23)],
    ids=["none", "number", "empty", "not-base64", "oversized", "forged", "short"],
)
def test_hostile_nonces(nonce: object) -> None:
    assert not Nonces(b"secret", lifetime=60).valid(nonce, NOW)


def test_a_nonce_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        Nonces(b"", lifetime=60)


def test_a_known_key_gives_the_same_answer_as_a_fresh_one() -> None:
    key = DpopKey.generate()
    first, second = read(proof(key)), read(proof(key))  # the second from the known keys
    assert first.thumbprint == second.thumbprint == reference_thumbprint(key.jwk)
    # A refused key is never remembered: it is refused every time.
    leaky = {**key.jwk, "d": "AAAA"}
    for _ in range(2):
        with pytest.raises(ProofError, match="usable public key"):
            read(proof(key, headers={"jwk": leaky}))
    # A known key still has to verify the signature and fit the algorithm allowlist.
    header, payload, _ = proof(key).split(".")
    with pytest.raises(ProofError, match="signature is invalid"):
        read(f"{header}.{payload}.{b64(b'x' * 64)}")
    with pytest.raises(ProofError, match="algorithm is not allowed"):
        read(proof(key), algorithms=frozenset({"EdDSA"}))
