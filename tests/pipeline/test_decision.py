"""The denials: status, stable reason, and RFC 6750 WWW-Authenticate challenges."""

from __future__ import annotations

import pytest

from authz import errors
from authz.pipeline import decision as d
from authz.pipeline.decision import Decision


def challenge(decision: Decision) -> str:
    headers = dict(decision.response_headers)
    assert set(headers) == {"www-authenticate"}
    return headers["www-authenticate"]


def test_missing_token_has_no_error_code() -> None:
    decision = d.missing_token("orders.test")
    assert (decision.allowed, decision.status, decision.reason) == (False, 401, "missing_token")
    assert challenge(decision) == 'Bearer realm="orders.test"'


def test_invalid_token() -> None:
    decision = d.invalid_token("orders.test", "token has expired")
    assert (decision.status, decision.reason) == (401, errors.INVALID_TOKEN)
    assert decision.description == "token has expired"
    assert challenge(decision) == (
        'Bearer realm="orders.test", error="invalid_token", error_description="token has expired"'
    )


def test_invalid_token_description_cannot_break_the_quoted_string() -> None:
    decision = d.invalid_token("orders.test", 'say "hi" \\ bye')
    assert challenge(decision) == (
        'Bearer realm="orders.test", error="invalid_token", error_description="say \'hi\'  bye"'
    )
    assert decision.description == 'say "hi" \\ bye'  # the JSON body keeps it as it was


def test_insufficient_scope_names_the_scopes() -> None:
    decision = d.insufficient_scope("orders.test", "orders:read orders:write")
    assert (decision.status, decision.reason) == (403, errors.INSUFFICIENT_SCOPE)
    assert challenge(decision) == (
        'Bearer realm="orders.test", error="insufficient_scope", scope="orders:read orders:write"'
    )


@pytest.mark.parametrize(
    ("host", "realm"),
    [
        ("orders.test", "orders.test"),
        ("[::1]", "[::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ('evil.test", error="none', "evil.testerrornone"),
        ("evil.test\r\nset-cookie: x=1", "evil.testset-cookie:x1"),
        ("a\\b", "ab"),
        ("ORDERS.test", ".test"),  # hosts arrive lower-cased; anything else is dropped
        ("caf\u00e9.test", "caf.test"),
        ("x" * 300, "x" * 253),
        ("", ""),
    ],
)
def test_realm_is_sanitized(host: str, realm: str) -> None:
    assert challenge(d.missing_token(host)) == f'Bearer realm="{realm}"'
    assert challenge(d.insufficient_scope(host, "s")).startswith(f'Bearer realm="{realm}", ')
    assert challenge(d.invalid_token(host, "x")).startswith(f'Bearer realm="{realm}", ')


@pytest.mark.parametrize(
    ("decision", "status", "reason"),
    [
        (d.no_policy("x.test"), 403, errors.NO_POLICY),
        (d.invalid_path("the path climbs above the root"), 400, errors.INVALID_PATH),
        (d.access_denied(), 403, errors.ACCESS_DENIED),
        (d.issuer_unavailable("keys not yet"), 503, errors.ISSUER_UNAVAILABLE),
        (d.internal_error(), 503, errors.INTERNAL_ERROR),
    ],
)
def test_denials_without_a_challenge(decision: Decision, status: int, reason: str) -> None:
    assert decision.allowed is False
    assert (decision.status, decision.reason) == (status, reason)
    assert decision.description
    assert "www-authenticate" not in dict(decision.response_headers)


def test_issuer_unavailable_asks_to_retry() -> None:
    decision = d.issuer_unavailable("the issuer's signing keys are not available yet")
    assert decision.response_headers == (("retry-after", "5"),)
    assert decision.description == "the issuer's signing keys are not available yet"


def test_located_sets_policy_rule_and_subject_only() -> None:
    base = d.insufficient_scope("a.test", "s")
    located = base.located(policy="ns/p", rule="r", subject="alice")
    assert (located.policy, located.rule, located.subject) == ("ns/p", "r", "alice")
    assert located.response_headers == base.response_headers
    assert (located.status, located.reason, located.description) == (
        base.status,
        base.reason,
        base.description,
    )
    assert base.policy is None  # decisions are immutable
