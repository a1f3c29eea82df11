"""parse_jwks: only public signature keys survive, each with exactly the algorithms it may verify."""

from __future__ import annotations

import json
import re
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa

from authz.jwt.keys import SUPPORTED_ALGORITHMS, parse_jwks
from tests.support.keys import ec_key, ed_key, rsa_key

RSA = rsa_key("rsa-1")
RSA_OTHER = rsa_key("rsa-2")
EC256 = ec_key("ec-256")
ED25519 = ed_key("ed-1")
RSA_ALGS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}


def _ec_jwk(curve: ec.EllipticCurve, kid: str) -> dict[str, Any]:
    public = ec.generate_private_key(curve).public_key()
    jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    return {**jwk, "kid": kid}


EC384 = _ec_jwk(ec.SECP384R1(), "ec-384")
EC521 = _ec_jwk(ec.SECP521R1(), "ec-521")
ED448: dict[str, Any] = {
    **json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(ed448.Ed448PrivateKey.generate().public_key())),
    "kid": "ed-448",
}
SMALL_RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=1024)
RSA_1024: dict[str, Any] = {
    **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SMALL_RSA_PRIVATE.public_key())),
    "kid": "small",
}
RSA_PRIVATE: dict[str, Any] = {
    **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA.private)),
    "kid": "private",
}
OCT = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}


@pytest.mark.parametrize(
    ("jwk", "algorithms"),
    [
        pytest.param(RSA.jwk, RSA_ALGS, id="RSA"),
        pytest.param(EC256.jwk, {"ES256"}, id="EC-P-256"),
        pytest.param(EC384, {"ES384"}, id="EC-P-384"),
        pytest.param(EC521, {"ES512"}, id="EC-P-521"),
        pytest.param(ED25519.jwk, {"EdDSA"}, id="OKP-Ed25519"),
        pytest.param(ED448, {"EdDSA"}, id="OKP-Ed448"),
    ],
)
def test_public_signature_keys_are_loaded_with_fitting_algorithms(
    jwk: dict[str, Any], algorithms: set[str]
) -> None:
    keys = parse_jwks({"keys": [jwk]})
    assert len(keys.keys) == 1
    key = keys.keys[0]
    assert key.kid == jwk["kid"]
    assert key.algorithms == algorithms
    assert key.algorithms <= SUPPORTED_ALGORITHMS
    assert keys.by_kid == {jwk["kid"]: key}
    assert keys.skipped == ()


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        pytest.param(OCT, "keys[0] (kid 'hmac'): symmetric keys are never used", id="oct"),
        pytest.param(RSA_PRIVATE, "contains private key material", id="rsa-private"),
        pytest.param({**EC256.jwk, "d": "AAAA"}, "contains private key material", id="ec-d"),
        pytest.param({**RSA.jwk, "use": "enc"}, "use is 'enc', not 'sig'", id="use-enc"),
        pytest.param(
            {**RSA.jwk, "key_ops": ["encrypt"]}, "key_ops does not allow 'verify'", id="ops-enc"
        ),
        pytest.param(
            {**RSA.jwk, "key_ops": "verify"}, "key_ops does not allow 'verify'", id="ops-string"
        ),
        pytest.param(RSA_1024, "RSA key of 1024 bits is below 2048", id="rsa-1024"),
        pytest.param({**RSA.jwk, "kid": 7}, "keys[0]: kid must be a string", id="kid-int"),
        pytest.param(
            {**RSA.jwk, "alg": "HS256"}, "no supported signature algorithm fits", id="rsa-as-hmac"
        ),
        pytest.param(
            {**EC256.jwk, "alg": "ES384"},
            "no supported signature algorithm fits",
            id="ec-wrong-alg",
        ),
        pytest.param(
            {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
            "no supported signature algorithm fits kty 'EC'",
            id="ec-unknown-curve",
        ),
        pytest.param(
            {"kty": "OKP", "crv": "X25519", "x": "AA"},
            "no supported signature algorithm fits",
            id="okp-x25519",
        ),
        pytest.param({"n": "AA", "e": "AQAB"}, "no supported signature algorithm", id="no-kty"),
        pytest.param("not a key", "keys[0]: not an object", id="not-an-object"),
        pytest.param(
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "unusable key", id="ec-bad-coords"
        ),
        # Malformed members must cost this key only, never the whole document.
        pytest.param({"kty": "RSA", "kid": "bare"}, "unusable key", id="rsa-no-numbers"),
        pytest.param({**RSA.jwk, "n": 5}, "unusable key", id="rsa-n-number"),
        pytest.param(
            {**RSA.jwk, "alg": ["RS256"]}, "no supported signature algorithm", id="alg-list"
        ),
        pytest.param(
            {"kty": "OKP", "crv": ["Ed25519"], "x": "AA"},
            "no supported signature algorithm",
            id="crv-list",
        ),
        pytest.param(
            {"kty": "EC", "crv": {"name": "P-256"}, "x": "AA", "y": "AA"},
            "no supported signature algorithm",
            id="crv-object",
        ),
    ],
)
def test_unusable_entries_are_skipped_with_a_reason(jwk: object, reason: str) -> None:
    keys = parse_jwks({"keys": [jwk, ED25519.jwk]})
    assert [k.kid for k in keys.keys] == ["ed-1"]
    assert len(keys.skipped) == 1
    assert keys.skipped[0].startswith("keys[0]")
    assert reason in keys.skipped[0]


def test_key_ops_with_verify_and_use_sig_are_accepted() -> None:
    keys = parse_jwks({"keys": [{**RSA.jwk, "use": "sig", "key_ops": ["verify", "sign"]}]})
    assert [k.kid for k in keys.keys] == ["rsa-1"]


def test_a_public_key_published_with_key_ops_sign_is_a_signature_key() -> None:
    # What oidc-provider serves: the public half keeps the private key's ["sign"].
    keys = parse_jwks({"keys": [{**RSA.jwk, "use": "sig", "key_ops": ["sign"]}]})
    assert [k.kid for k in keys.keys] == ["rsa-1"]


@pytest.mark.parametrize(
    ("jwk", "algorithms"),
    [
        pytest.param({**RSA.jwk, "alg": "PS256"}, {"PS256"}, id="rsa-ps256"),
        pytest.param({**RSA.jwk, "alg": "RS512"}, {"RS512"}, id="rsa-rs512"),
        pytest.param({**EC384, "alg": "ES384"}, {"ES384"}, id="ec-matching"),
        pytest.param({**ED25519.jwk, "alg": "EdDSA"}, {"EdDSA"}, id="okp"),
    ],
)
def test_a_declared_alg_narrows_the_algorithms(jwk: dict[str, Any], algorithms: set[str]) -> None:
    assert parse_jwks({"keys": [jwk]}).keys[0].algorithms == algorithms


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param({"keys": []}, "no usable signature key in JWKS", id="empty"),
        pytest.param(
            {"keys": [OCT, {**RSA.jwk, "use": "enc"}]},
            "no usable signature key in JWKS: keys[0] (kid 'hmac'): symmetric keys are never "
            "used to verify tokens; keys[1] (kid 'rsa-1'): use is 'enc', not 'sig'",
            id="all-skipped",
        ),
        pytest.param(
            [RSA.jwk], 'a JWKS document must be an object with a "keys" array', id="array"
        ),
        pytest.param(
            {"keys": RSA.jwk},
            'a JWKS document must be an object with a "keys" array',
            id="keys-object",
        ),
        pytest.param({}, 'a JWKS document must be an object with a "keys" array', id="no-keys"),
        pytest.param(None, 'a JWKS document must be an object with a "keys" array', id="null"),
    ],
)
def test_no_usable_key_is_a_value_error(document: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_jwks(document)
    assert str(caught.value) == message


def test_duplicate_kids_resolve_to_the_first_key() -> None:
    twin = {**RSA_OTHER.jwk, "kid": "rsa-1"}
    keys = parse_jwks({"keys": [RSA.jwk, twin]})
    assert len(keys.keys) == 2
    assert keys.by_kid["rsa-1"] is keys.keys[0]


def test_keys_without_kid_are_kept_but_not_indexed() -> None:
    no_kid = {k: v for k, v in RSA.jwk.items() if k != "kid"}
    keys = parse_jwks({"keys": [no_kid, EC256.jwk]})
    assert [k.kid for k in keys.keys] == [None, "ec-256"]
    assert set(keys.by_kid) == {"ec-256"}


def _fp(*jwks: object) -> str:
    return parse_jwks({"keys": list(jwks)}).fingerprint()


def test_fingerprint_is_stable_for_the_same_usable_keys() -> None:
    base = _fp(RSA.jwk, EC256.jwk, ED25519.jwk)
    assert _fp(RSA.jwk, EC256.jwk, ED25519.jwk) == base
    assert _fp(ED25519.jwk, RSA.jwk, EC256.jwk) == base  # order does not matter
    assert _fp(RSA.jwk, OCT, EC256.jwk, ED25519.jwk) == base  # skipped entries do not count
    assert _fp({**RSA.jwk, "x5t": "ignored"}, EC256.jwk, ED25519.jwk) == base


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param([RSA.jwk, EC256.jwk], id="key-removed"),
        pytest.param([RSA.jwk, EC256.jwk, ED25519.jwk, RSA_OTHER.jwk], id="key-added"),
        pytest.param([{**RSA_OTHER.jwk, "kid": "rsa-1"}, EC256.jwk, ED25519.jwk], id="same-kid"),
        pytest.param([{**RSA.jwk, "kid": "renamed"}, EC256.jwk, ED25519.jwk], id="kid-renamed"),
        pytest.param([{**RSA.jwk, "alg": "RS256"}, EC256.jwk, ED25519.jwk], id="alg-narrowed"),
        pytest.param([RSA.jwk, EC384, ED25519.jwk], id="ec-curve"),
        pytest.param([RSA.jwk, EC256.jwk, ed_key("ed-1").jwk], id="okp-same-kid"),
    ],
)
def test_fingerprint_changes_when_usable_keys_change(changed: list[object]) -> None:
    assert _fp(*changed) != _fp(RSA.jwk, EC256.jwk, ED25519.jwk)
