"""The revocation list: what it refuses, how entries end, and its bounds."""

from __future__ import annotations

import json

import pytest

from authz.errors import INVALID_TOKEN
from authz.jwt.providers import offline_provider
from authz.jwt.revocation import DEFAULT_KEEP, JTI, SUBJECT, RevocationError, Revocations
from authz.jwt.verify import Verifier
from authz.policy.compile import compile_policy
from tests.support.keys import rsa_key
from tests.support.policies import auth_policy, issuer

NOW = 1_800_000_000.0
ISS = "https://issuer.test"
KEY = rsa_key("k1")


def claims(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {"iss": ISS, "sub": "alice", "jti": "j1", "iat": NOW - 60}
    base.update(extra)
    return base


def test_an_empty_list_is_inactive_and_refuses_nothing() -> None:
    revocations = Revocations()
    assert not revocations.active
    assert not revocations.refuses(claims(), ISS, NOW)


def test_a_jti_is_refused_for_its_issuer_or_any() -> None:
    revocations = Revocations()
    revocations.revoke(kind=JTI, value="j1", issuer=ISS, now=NOW)
    assert revocations.active
    assert revocations.refuses(claims(), ISS, NOW)
    assert not revocations.refuses(claims(), "https://other.test", NOW)
    assert not revocations.refuses(claims(jti="j2"), ISS, NOW)
    revocations.revoke(kind=JTI, value="j2", now=NOW)  # any issuer
    assert revocations.refuses(claims(jti="j2"), "https://other.test", NOW)


@pytest.mark.parametrize(
    ("iat", "refused"),
    [(NOW - 60, True), (NOW, True), (NOW + 1, False), (None, True), ("NOW", True), (True, True)],
)
def test_a_subject_is_refused_for_tokens_issued_up_to_the_revocation(
    iat: object, refused: bool
) -> None:
    revocations = Revocations()
    revocations.revoke(kind=SUBJECT, value="alice", issuer=ISS, now=NOW)
    token = claims(iat=iat) if iat is not None else {"sub": "alice"}
    assert revocations.refuses(token, ISS, NOW + 5) is refused
    assert not revocations.refuses(claims(sub="bob", iat=iat), ISS, NOW + 5)


def test_non_string_claims_never_match_and_never_raise() -> None:
    revocations = Revocations()
    revocations.revoke(kind=JTI, value="1", now=NOW)
    revocations.revoke(kind=SUBJECT, value="1", now=NOW)
    for odd in (1, ["1"], {"1": 1}, None, 1.0):
        assert not revocations.refuses({"jti": odd, "sub": odd}, ISS, NOW)


def test_entries_end_at_until_and_the_list_turns_inactive() -> None:
    revocations = Revocations()
    entry = revocations.revoke(kind=JTI, value="j1", now=NOW, until=NOW + 100)
    assert entry.until == NOW + 100
    assert revocations.refuses(claims(), ISS, NOW + 99)
    assert not revocations.refuses(claims(), ISS, NOW + 100)
    assert revocations.entries(NOW + 100) == []
    assert not revocations.active
    default = revocations.revoke(kind=JTI, value="j1", now=NOW)
    assert default.until == NOW + DEFAULT_KEEP


def test_revoking_again_keeps_the_later_until() -> None:
    revocations = Revocations()
    revocations.revoke(kind=SUBJECT, value="alice", now=NOW, until=NOW + 1000)
    again = revocations.revoke(kind=SUBJECT, value="alice", now=NOW + 10, until=NOW + 20)
    assert (again.revoked_at, again.until) == (NOW + 10, NOW + 1000)
    assert len(revocations) == 1


@pytest.mark.parametrize(
    ("kind", "value", "issuer", "until", "why"),
    [
        ("email", "x", "", None, "revoke by"),
        (JTI, "", "", None, "1 to 2048"),
        (JTI, "x" * 2049, "", None, "1 to 2048"),
        (JTI, "x", "i" * 2049, None, "1 to 2048"),
        (JTI, "x", "", NOW - 1, "future"),
        (JTI, "x", "", float("inf"), "future"),
        (JTI, "x", "", float("nan"), "future"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    kind: str, value: str, issuer: str, until: float | None, why: str
) -> None:
    with pytest.raises(RevocationError, match=why):
        Revocations().revoke(kind=kind, value=value, issuer=issuer, now=NOW, until=until)


def test_the_list_is_bounded_but_expired_entries_make_room() -> None:
    revocations = Revocations(max_entries=3)
    for i in range(3):
        revocations.revoke(kind=JTI, value=f"j{i}", now=NOW, until=NOW + 10 + i)
    with pytest.raises(RevocationError, match="full"):
        revocations.revoke(kind=JTI, value="flood", now=NOW)
    revocations.revoke(kind=JTI, value="j0", now=NOW)  # a repeat is not a new entry
    revocations.revoke(kind=JTI, value="later", now=NOW + 11)  # j1 (and not j0) expired
    assert [e.value for e in revocations.entries(NOW + 11)] == ["j0", "j2", "later"]


async def test_the_verifier_refuses_a_revoked_jwt_even_from_its_cache() -> None:
    policy = compile_policy(
        auth_policy(issuers=[issuer(name=ISS, keys=[KEY])]), bind=offline_provider
    )
    verifier = Verifier()
    token = KEY.sign(
        {"iss": ISS, "aud": "orders-api", "sub": "alice", "jti": "j1", "exp": NOW + 600}
    )
    assert (await verifier.verify(token, policy.issuers, now=NOW)).claims["jti"] == "j1"
    verifier.revocations.revoke(kind=JTI, value="j1", now=NOW)
    with pytest.raises(Exception, match="revoked") as caught:
        await verifier.verify(token, policy.issuers, now=NOW + 1)
    assert getattr(caught.value, "code", None) == INVALID_TOKEN
    assert json.dumps([e.value for e in verifier.revocations.entries(NOW)]) == '["j1"]'
