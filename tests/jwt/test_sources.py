"""Key sources: which URLs the sidecar may fetch, and sources as comparable values."""

from __future__ import annotations

import pytest

from authz.jwt.sources import KeySource, KeySourceKind, check_fetch_url, discovery_url

HTTPS_ONLY = "must use https (plain http is allowed only for loopback hosts)"


@pytest.mark.parametrize(
    "url",
    [
        "https://issuer.example/.well-known/jwks.json",
        "https://issuer.example:8443/keys",
        "https://10.0.0.1/keys",
        "http://127.0.0.1:8080/jwks.json",
        "http://127.1.2.3/jwks.json",
        "http://[::1]:8080/jwks.json",
        "http://localhost/jwks.json",
        "http://LOCALHOST:9000/jwks.json",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert check_fetch_url(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://issuer.example/jwks.json", HTTPS_ONLY),
        ("http://10.0.0.1/jwks.json", HTTPS_ONLY),
        ("http://0.0.0.0/jwks.json", HTTPS_ONLY),
        ("http://[::]/jwks.json", HTTPS_ONLY),
        ("http://localhost.evil.test/jwks.json", HTTPS_ONLY),
        ("http://127.0.0.1.evil.test/jwks.json", HTTPS_ONLY),
        ("ftp://issuer.example/jwks.json", HTTPS_ONLY),
        ("file://localhost/etc/passwd", HTTPS_ONLY),
        ("https://user:secret@issuer.example/jwks", "URL must not carry credentials"),
        ("https://user@issuer.example/jwks", "URL must not carry credentials"),
        ("http://user:pw@127.0.0.1/jwks", "URL must not carry credentials"),
        ("https:///jwks.json", "URL has no host"),
        ("/jwks.json", "URL has no host"),
        ("not a url", "URL has no host"),
        ("", "URL has no host"),
    ],
)
def test_refused_urls(url: str, reason: str) -> None:
    assert check_fetch_url(url) == reason


def test_garbage_urls_are_refused_not_raised() -> None:
    reason = check_fetch_url("https://[::1/jwks.json")
    assert reason is not None
    assert reason.startswith("not a valid URL: ")


def test_discovery_url() -> None:
    assert discovery_url("https://issuer.example") == (
        "https://issuer.example/.well-known/openid-configuration"
    )
    assert discovery_url("https://issuer.example/realms/x/") == (
        "https://issuer.example/realms/x/.well-known/openid-configuration"
    )


def test_inline_sources_are_canonical_values() -> None:
    a = KeySource.inline({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]})
    b = KeySource.inline({"keys": [{"e": "AQAB", "n": "x", "kty": "RSA"}]})
    assert a == b
    assert hash(a) == hash(b)
    assert a.location == '{"keys":[{"e":"AQAB","kty":"RSA","n":"x"}]}'
    assert a != KeySource.inline({"keys": [{"kty": "RSA", "n": "y", "e": "AQAB"}]})


def test_describe() -> None:
    assert KeySource.inline({"keys": []}).describe() == "inline JWKS"
    assert KeySource(KeySourceKind.DISCOVERY, "https://i.example").describe() == (
        "discovery of https://i.example"
    )
    assert KeySource(KeySourceKind.JWKS_URI, "https://i.example/k").describe() == (
        "https://i.example/k"
    )
