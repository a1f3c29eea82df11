"""maxTokenLifetime on JWTs, and how `introspection` / `maxTokenLifetime` compile (or not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from authz.errors import PolicyError, TokenError
from authz.jwt.providers import offline_provider
from authz.jwt.secrets import FileSecrets, SecretRef, SecretUnavailable
from authz.jwt.verify import Verifier
from authz.policy.compile import compile_policy
from authz.policy.tokens import MSG_INTROSPECTION_ENDPOINT
from tests.support.keys import rsa_key
from tests.support.policies import auth_policy, issuer

NOW = 1_800_000_000.0
ISS = "https://issuer.test"
KEY = rsa_key("k1")
SECRET_REF = {"name": "idp", "key": "secret"}


def compiled(**fields: Any) -> Any:
    return compile_policy(
        auth_policy(issuers=[issuer(name=ISS, keys=[KEY], **fields)]), bind=offline_provider
    )


def problems(**fields: Any) -> str:
    with pytest.raises(PolicyError) as caught:
        compiled(**fields)
    return str(caught.value)


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"iat": NOW - 10, "exp": NOW + 3600}, "maxTokenLifetime"),
        ({"exp": NOW + 60}, "no iat"),
        ({"iat": "yesterday", "exp": NOW + 60}, "not a number"),
    ],
)
async def test_a_long_lived_token_or_one_without_iat_is_refused(
    claims: dict[str, Any], why: str
) -> None:
    policy = compiled(maxTokenLifetime="15m")
    token = KEY.sign({"iss": ISS, "aud": "orders-api", **claims})
    with pytest.raises(TokenError, match=why):
        await Verifier().verify(token, policy.issuers, now=NOW)


async def test_a_short_lived_token_passes_and_the_bound_is_inclusive() -> None:
    policy = compiled(maxTokenLifetime="15m")
    token = KEY.sign({"iss": ISS, "aud": "orders-api", "iat": NOW, "exp": NOW + 900})
    assert (await Verifier().verify(token, policy.issuers, now=NOW)).issuer.max_lifetime == 900


def test_introspection_compiles_with_the_secret_by_reference_only() -> None:
    policy = compiled(
        introspection={
            "endpoint": "https://id.test/introspect",
            "clientId": "gw",
            "clientSecretRef": SECRET_REF,
        }
    )
    spec = policy.issuers[ISS].introspection
    assert spec is not None
    assert (spec.endpoint, spec.client_id, spec.cache_seconds) == (
        "https://id.test/introspect",
        "gw",
        60.0,
    )
    assert spec.secret == SecretRef("default", "idp", "secret")


@pytest.mark.parametrize(
    ("introspection", "why"),
    [
        ({"clientId": "gw", "clientSecretRef": SECRET_REF}, MSG_INTROSPECTION_ENDPOINT),
        (
            {"endpoint": "http://id.test/i", "clientId": "gw", "clientSecretRef": SECRET_REF},
            "must use https",
        ),
        (
            {"endpoint": "https://u:p@id.test/i", "clientId": "gw", "clientSecretRef": SECRET_REF},
            "credentials",
        ),
        (
            {"endpoint": "https://id.test/i", "clientId": "gw", "clientSecretRef": {"name": "a"}},
            "key",
        ),
        (
            {
                "endpoint": "https://id.test/i",
                "clientId": "gw",
                "clientSecretRef": {"name": "idp", "key": ".."},
            },
            "not a Secret name or key",
        ),
        (
            {
                "endpoint": "https://id.test/i",
                "clientId": "gw",
                "clientSecretRef": SECRET_REF,
                "clientSecret": "in-clear",
            },
            "unknown field",
        ),
        (
            {
                "endpoint": "https://id.test/i",
                "clientId": "gw",
                "clientSecretRef": SECRET_REF,
                "cacheSeconds": 3601,
            },
            "cacheSeconds",
        ),
    ],
)
def test_bad_introspection_is_a_policy_problem(introspection: dict[str, Any], why: str) -> None:
    assert why in problems(introspection=introspection)


@pytest.mark.parametrize("text", ["0s", "15", "1w", "32d", "-5m", "1.5h"])
def test_bad_lifetimes_are_policy_problems(text: str) -> None:
    assert "maxTokenLifetime" in problems(maxTokenLifetime=text)


async def test_file_secrets_refuse_what_is_not_a_plain_secret(tmp_path: Path) -> None:
    secrets = FileSecrets(tmp_path)
    base = tmp_path / "ns" / "idp"
    base.mkdir(parents=True)
    (base / "big").write_bytes(b"x" * 5000)
    (base / "empty").write_bytes(b"\n")
    (base / "binary").write_bytes(b"\xff\xfe")
    (base / "ok").write_text("s3cret\n")
    for key, why in [
        ("big", "over"),
        ("empty", "empty"),
        ("binary", "UTF-8"),
        ("missing", "mount the Secret"),
        ("..", "not a Secret name"),
    ]:
        with pytest.raises(SecretUnavailable, match=why) as caught:
            await secrets.read(SecretRef("ns", "idp", key), now=NOW)
        assert "s3cret" not in str(caught.value)
    assert await secrets.read(SecretRef("ns", "idp", "ok"), now=NOW) == "s3cret"
    # Cached for a while, then read again (a rotated secret is picked up).
    (base / "ok").write_text("rotated")
    assert await secrets.read(SecretRef("ns", "idp", "ok"), now=NOW + 1) == "s3cret"
    assert await secrets.read(SecretRef("ns", "idp", "ok"), now=NOW + 60) == "rotated"
