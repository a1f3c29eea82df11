"""parse_token: strict decoding of attacker-controlled compact JWS, before any signature check."""

from __future__ import annotations

import json

import pytest

from authz.errors import TokenError
from authz.jwt.token import parse_token
from tests.support.keys import b64, craft, rsa_key

KEY = rsa_key("k1")
CLAIMS = {"iss": "https://issuer.test", "sub": "alice", "exp": 2_000_000_000}
GOOD = KEY.sign(CLAIMS)
HEADER = {"alg": "RS256", "kid": "k1"}
LIMIT = 8192


def test_a_good_token_is_split_and_decoded() -> None:
    parsed = parse_token(GOOD, max_bytes=LIMIT)
    header_b64, payload_b64, signature_b64 = GOOD.split(".")
    assert parsed.header == {"alg": "RS256", "kid": "k1", "typ": "JWT"}
    assert parsed.claims == CLAIMS
    assert parsed.alg == "RS256"
    assert parsed.kid == "k1"
    assert parsed.signing_input == f"{header_b64}.{payload_b64}".encode()
    assert b64(parsed.signature) == signature_b64
    assert len(parsed.signature) == 256  # RSA-2048


def test_kid_is_none_when_absent() -> None:
    parsed = parse_token(craft({"alg": "ES256"}, CLAIMS, b"sig"), max_bytes=LIMIT)
    assert parsed.kid is None
    assert parsed.alg == "ES256"


def test_size_cap_is_checked_before_anything_else() -> None:
    token = craft(HEADER, CLAIMS, b"s")
    assert parse_token(token, max_bytes=len(token)).claims == CLAIMS
    with pytest.raises(TokenError, match=f"^token is larger than {len(token) - 1} bytes$"):
        parse_token(token, max_bytes=len(token) - 1)
    # Garbage past the cap is refused for its size, not parsed.
    with pytest.raises(TokenError, match="larger than 100 bytes"):
        parse_token("!" * 101, max_bytes=100)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "encrypted tokens (JWE)", id="jwe-5-part"),
        pytest.param("a.b", "not a JWT", id="two-parts"),
        pytest.param("a.b.c.d", "not a JWT", id="four-parts"),
        pytest.param("", "not a JWT", id="empty"),
        pytest.param("!!!.???.***", "token header is not base64url", id="bad-base64"),
        pytest.param(
            b64(json.dumps(HEADER)) + "=." + b64(json.dumps(CLAIMS)) + ".c2ln",
            "token header is not base64url",
            id="padded-header",
        ),
        pytest.param(
            craft(HEADER, b64(json.dumps(CLAIMS)) + "==", b"sig"),
            "token payload is not base64url",
            id="padded-payload",
        ),
        pytest.param(
            craft(HEADER, CLAIMS, "c2ln="), "token signature is not base64url", id="padded-sig"
        ),
        pytest.param(
            craft(HEADER, CLAIMS, "a+b/"), "token signature is not base64url", id="std-alphabet"
        ),
        pytest.param("A.e30.c2ln", "token header is not base64url", id="impossible-length"),
        pytest.param(
            craft(b64("not json"), CLAIMS, b"sig"), "token header is not JSON", id="header-text"
        ),
        pytest.param(
            craft(b64("[1, 2]"), CLAIMS, b"sig"),
            "token header is not a JSON object",
            id="header-array",
        ),
        pytest.param(
            craft(HEADER, b64('"a string"'), b"sig"),
            "token payload is not a JSON object",
            id="payload-string",
        ),
        pytest.param(
            craft(HEADER, b64(b"\xff\xfe"), b"sig"), "token payload is not JSON", id="payload-bytes"
        ),
        pytest.param(
            craft(HEADER, b64("[" * 5000 + "]" * 5000), b"sig"),
            "token payload is not JSON",
            id="payload-deep-nesting",
        ),
        pytest.param(craft({"typ": "JWT"}, CLAIMS, b"sig"), "has no alg", id="no-alg"),
        pytest.param(craft({"alg": 256}, CLAIMS, b"sig"), "has no alg", id="alg-number"),
        pytest.param(craft({"alg": "none"}, CLAIMS, b"sig"), "alg none", id="alg-none"),
        pytest.param(craft({"alg": "None"}, CLAIMS, b"sig"), "alg none", id="alg-None"),
        pytest.param(craft({"alg": "NONE"}, CLAIMS, b""), "alg none", id="alg-NONE-unsigned"),
        pytest.param(craft({"alg": "nOnE"}, CLAIMS, b"sig"), "alg none", id="alg-nOnE"),
        pytest.param(
            craft({**HEADER, "crit": ["exp"], "exp": 1}, CLAIMS, b"sig"),
            "critical extensions",
            id="crit",
        ),
        pytest.param(
            craft({**HEADER, "crit": []}, CLAIMS, b"sig"), "critical extensions", id="crit-empty"
        ),
        pytest.param(
            craft({"alg": "RS256", "kid": 7}, CLAIMS, b"sig"), "kid must be a string", id="kid-int"
        ),
        pytest.param(
            craft({"alg": "RS256", "kid": None}, CLAIMS, b"sig"),
            "kid must be a string",
            id="kid-null",
        ),
        pytest.param(
            craft({"alg": "RS256", "kid": ["k1"]}, CLAIMS, b"sig"),
            "kid must be a string",
            id="kid-list",
        ),
        pytest.param(".".join(GOOD.split(".")[:2]) + ".", "token has no signature", id="no-sig"),
        pytest.param(
            craft(HEADER, CLAIMS, b"sig").replace("e", "é", 1),
            "is not base64url",
            id="non-ascii",
        ),
    ],
)
def test_hostile_tokens_are_refused_with_a_safe_message(token: str, message: str) -> None:
    with pytest.raises(TokenError) as caught:
        parse_token(token, max_bytes=1_000_000)
    assert message in str(caught.value)
    assert caught.value.code == "invalid_token"


def test_key_locating_headers_are_kept_as_data_only() -> None:
    token = craft({**HEADER, "jku": "https://evil.test/jwks", "x5u": "https://evil.test/x"}, CLAIMS)
    parsed = parse_token(token + "c2ln", max_bytes=LIMIT)
    assert parsed.kid == "k1"
    assert parsed.signature == b"sig"
