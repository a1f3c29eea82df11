"""decide: every branch of the decision, against a snapshot the PolicyStore compiled.

Keys are inline in the policy (bound offline), except one issuer whose remote keys are never
fetched - the "issuer unavailable" branch.
"""

from __future__ import annotations

from typing import Any

import pytest

from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide, decide_now
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Step, Trace
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from tests.support.keys import SigningKey, ec_key, rsa_key
from tests.support.policies import ORDERS_HEADERS, auth_policy, issuer, rule

NOW = 1_800_000_000
KEY = rsa_key("k1")
REALM_KEY = ec_key("realm-1")
STRANGER = rsa_key("k1")  # right kid, wrong key
ISSUER = "https://issuer.test"
REALM = "https://realm.test"
REMOTE = "https://remote.test"

POLICY = auth_policy(
    "orders",
    namespace="shop",
    hosts=["orders.test", "*.orders.test"],
    issuers=[
        issuer(keys=[KEY]),
        issuer(name=REALM, keys=[REALM_KEY], scopeClaim="realm.scopes"),
        issuer(name=REMOTE, jwks_uri=f"{REMOTE}/jwks.json"),
    ],
    rules=[
        rule("health", paths=["/healthz"], anonymous=True),
        rule(
            "read", methods=["GET", "HEAD"], paths=["/orders", "/orders/*"], scopes=["orders:read"]
        ),
        rule("write", methods=["POST"], paths=["/orders"], scopes=["orders:write", "orders:read"]),
        rule("admin", paths=["/admin/**"], any_of=["admin", "superuser"]),
        rule("both", paths=["/both"], scopes=["a"], any_of=["b", "c"]),
        rule("me", paths=["/me"]),
    ],
    response={
        "setHeaders": list(ORDERS_HEADERS),
        "removeHeaders": ["authorization", "cookie"],
    },
)
REMOVED = ("authorization", "cookie")


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    published: list[Snapshot] = []
    store = PolicyStore(bind=offline_provider, publish=published.append)
    built = store.update("test", [SourceDocument("policy.yaml:0", POLICY)])
    assert [s.state.value for s in built.states] == ["ready"], built.states
    return built


def token(
    *,
    key: SigningKey = KEY,
    iss: str = ISSUER,
    scope: str | None = "orders:read",
    **extra: Any,
) -> str:
    claims: dict[str, Any] = {"iss": iss, "aud": "orders-api", "sub": "alice", "exp": NOW + 600}
    if scope is not None:
        claims["scope"] = scope
    claims.update(extra)
    return key.sign({k: v for k, v in claims.items() if v is not None})


async def run(
    snapshot: Snapshot,
    path: str,
    *,
    method: str = "GET",
    host: str = "orders.test",
    bearer: str | None = None,
    headers: dict[str, str] | None = None,
    trace: Trace | None = None,
) -> Decision:
    all_headers = dict(headers or {})
    if bearer is not None:
        all_headers["authorization"] = f"Bearer {bearer}"
    request = CheckInput(method=method, host=host, raw_path=path, headers=all_headers)
    return await decide(snapshot, request, verifier=Verifier(), now=NOW, trace=trace)


def outcomes(trace: Trace) -> list[tuple[str, str]]:
    return [(step.name, step.outcome) for step in trace.steps]


# --- allow --------------------------------------------------------------------------------------


async def test_allowed_request_gets_identity_headers(snapshot: Snapshot) -> None:
    bearer = token(org={"tenant": "t1"}, roles=["a", "b"])
    decision = await run(snapshot, "/orders/42", bearer=bearer)
    assert decision == Decision(
        True,
        "allowed",
        200,
        policy="shop/orders",
        rule="read",
        subject="alice",
        set_headers=(
            ("x-user-id", "alice"),
            ("x-tenant", "t1"),
            ("x-roles", "a,b"),
            ("x-gateway", "authz"),
        ),
        remove_headers=REMOVED,
    )


async def test_headers_for_absent_or_unsafe_claims_are_removed(snapshot: Snapshot) -> None:
    decision = await run(snapshot, "/orders", bearer=token(sub="a\r\nx-evil: 1", roles=[{"x": 1}]))
    assert decision.allowed
    assert decision.set_headers == (("x-gateway", "authz"),)
    assert decision.remove_headers == (*REMOVED, "x-user-id", "x-tenant", "x-roles")
    assert decision.subject == "a\r\nx-evil: 1"  # metadata, not a header


async def test_a_non_string_subject_is_not_reported(snapshot: Snapshot) -> None:
    decision = await run(snapshot, "/orders", bearer=token(sub=42))
    assert decision.allowed
    assert decision.subject is None
    assert ("x-user-id", "42") in decision.set_headers


async def test_anonymous_rule_without_a_token(snapshot: Snapshot) -> None:
    trace = Trace()
    decision = await run(snapshot, "/healthz", trace=trace)
    assert (decision.allowed, decision.rule, decision.subject) == (True, "health", None)
    assert decision.set_headers == (("x-gateway", "authz"),)
    assert decision.remove_headers == (*REMOVED, "x-user-id", "x-tenant", "x-roles")
    assert outcomes(trace) == [
        ("host", "pass"),
        ("path", "pass"),
        ("rule", "pass"),
        ("token", "skip"),
        ("scopes", "skip"),
        ("response", "info"),
    ]


async def test_anonymous_rule_with_a_valid_token_uses_it(snapshot: Snapshot) -> None:
    decision = await run(snapshot, "/healthz", bearer=token())
    assert decision.allowed
    assert decision.subject == "alice"


async def test_wildcard_host(snapshot: Snapshot) -> None:
    decision = await run(snapshot, "/healthz", host="eu.orders.test")
    assert (decision.allowed, decision.policy) == (True, "shop/orders")


async def test_the_path_is_normalized_before_matching(snapshot: Snapshot) -> None:
    decision = await run(snapshot, "/healthz/../orders/%34%32?x=1", bearer=token())
    assert (decision.allowed, decision.rule) == (True, "read")
    # ...so a traversal out of an anonymous rule needs a token.
    denied = await run(snapshot, "/healthz/../me")
    assert (denied.reason, denied.rule) == ("missing_token", "me")


@pytest.mark.parametrize(
    ("path", "scope", "allowed"),
    [
        ("/admin/users", "superuser", True),
        ("/admin/users", "admin other", True),
        ("/admin", "orders:read", False),
        ("/both", "a c", True),
        ("/both", "a b", True),
        ("/both", "a", False),
        ("/both", "b c", False),
        ("/both", None, False),
    ],
)
async def test_all_of_and_any_of(
    snapshot: Snapshot, path: str, scope: str | None, allowed: bool
) -> None:
    decision = await run(snapshot, path, bearer=token(scope=scope))
    assert decision.allowed is allowed
    assert decision.reason == ("allowed" if allowed else "insufficient_scope")


async def test_scopes_from_a_configured_claim(snapshot: Snapshot) -> None:
    granted = token(key=REALM_KEY, iss=REALM, scope=None, realm={"scopes": ["orders:read"]})
    assert (await run(snapshot, "/orders", bearer=granted)).allowed
    # With scopeClaim set, the standard claim is not consulted.
    ignored = token(key=REALM_KEY, iss=REALM, scope="orders:read")
    assert (await run(snapshot, "/orders", bearer=ignored)).reason == "insufficient_scope"


async def test_scp_array(snapshot: Snapshot) -> None:
    decision = await run(snapshot, "/orders", bearer=token(scope=None, scp=["orders:read"]))
    assert decision.allowed


# --- deny ---------------------------------------------------------------------------------------


async def test_no_policy(snapshot: Snapshot) -> None:
    trace = Trace()
    decision = await run(snapshot, "/orders", host="other.test", bearer=token(), trace=trace)
    assert decision == Decision(False, "no_policy", 403, "no policy protects this host")
    assert trace.steps == [Step("host", "fail", "no policy claims host 'other.test'")]


async def test_wildcard_does_not_cover_the_apex_parent(snapshot: Snapshot) -> None:
    assert (await run(snapshot, "/healthz", host="test")).reason == "no_policy"


async def test_invalid_path(snapshot: Snapshot) -> None:
    trace = Trace()
    decision = await run(snapshot, "/healthz/%2e%2e/%2e%2e/etc", trace=trace)
    assert (decision.allowed, decision.status, decision.reason) == (False, 400, "invalid_path")
    assert decision.description == "the path climbs above the root"
    assert (decision.policy, decision.rule) == ("shop/orders", None)
    assert outcomes(trace) == [("host", "pass"), ("path", "fail")]


async def test_no_rule_matches(snapshot: Snapshot) -> None:
    trace = Trace()
    decision = await run(snapshot, "/orders", method="DELETE", bearer=token(), trace=trace)
    assert (decision.status, decision.reason) == (403, "access_denied")
    assert (decision.policy, decision.rule) == ("shop/orders", None)
    assert outcomes(trace) == [("host", "pass"), ("path", "pass"), ("rule", "fail")]
    assert trace.steps[-1].detail == "no rule matches DELETE /orders"


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Basic YWxpY2U6cHc="}, {"x-token": "Bearer abc"}],
    ids=["none", "basic", "elsewhere"],
)
async def test_missing_token(snapshot: Snapshot, headers: dict[str, str]) -> None:
    trace = Trace()
    decision = await run(snapshot, "/me", headers=headers, trace=trace)
    assert (decision.status, decision.reason) == (401, "missing_token")
    assert (decision.policy, decision.rule) == ("shop/orders", "me")
    assert decision.response_headers == (("www-authenticate", 'Bearer realm="orders.test"'),)
    assert outcomes(trace)[-1] == ("token", "fail")


@pytest.mark.parametrize(
    ("bearer", "description"),
    [
        ("", "token is not a JWT (expected header.payload.signature)"),
        ("not-a-token", "token is not a JWT (expected header.payload.signature)"),
        (token(key=STRANGER), "token signature is invalid"),
        (token(exp=NOW - 3600), "token has expired"),
        (token(aud="billing-api"), "token audience is not accepted here"),
        (token(iss="https://evil.test"), "token issuer is not trusted here"),
        (token(key=REALM_KEY), "no signing key of the issuer matches the token's kid"),
    ],
    ids=["empty", "garbage", "forged", "expired", "audience", "issuer", "unknown-kid"],
)
async def test_invalid_token(snapshot: Snapshot, bearer: str, description: str) -> None:
    trace = Trace()
    decision = await run(snapshot, "/me", bearer=bearer, trace=trace)
    assert (decision.status, decision.reason, decision.description) == (
        401,
        "invalid_token",
        description,
    )
    assert (decision.policy, decision.rule) == ("shop/orders", "me")
    assert decision.response_headers == (
        (
            "www-authenticate",
            f'Bearer realm="orders.test", error="invalid_token", error_description="{description}"',
        ),
    )
    assert trace.steps[-1] == Step("token", "fail", description)


async def test_an_anonymous_rule_still_rejects_a_bad_token(snapshot: Snapshot) -> None:
    decision = await run(snapshot, "/healthz", bearer=token(key=STRANGER))
    assert (decision.status, decision.reason, decision.rule) == (401, "invalid_token", "health")


async def test_issuer_unavailable(snapshot: Snapshot) -> None:
    trace = Trace()
    decision = await run(snapshot, "/me", bearer=token(iss=REMOTE), trace=trace)
    assert (decision.status, decision.reason) == (503, "issuer_unavailable")
    assert decision.description == "the issuer's signing keys are not available yet"
    assert decision.response_headers == (("retry-after", "5"),)
    assert (decision.policy, decision.rule) == ("shop/orders", "me")
    assert outcomes(trace)[-1] == ("token", "fail")


async def test_insufficient_scope(snapshot: Snapshot) -> None:
    trace = Trace()
    decision = await run(snapshot, "/orders", method="POST", bearer=token(), trace=trace)
    assert (decision.status, decision.reason) == (403, "insufficient_scope")
    assert (decision.policy, decision.rule) == ("shop/orders", "write")
    assert decision.response_headers == (
        (
            "www-authenticate",
            'Bearer realm="orders.test", error="insufficient_scope", '
            'scope="orders:write orders:read"',
        ),
    )
    assert decision.set_headers == ()
    assert trace.steps[-1] == Step(
        "scopes", "fail", "needs 'orders:write orders:read'; token grants 'orders:read'"
    )


async def test_the_trace_of_an_allowed_request(snapshot: Snapshot) -> None:
    trace = Trace()
    await run(snapshot, "/orders/7", bearer=token(), trace=trace)
    assert trace.steps == [
        Step("host", "pass", "'orders.test' -> policy shop/orders"),
        Step("path", "pass", "normalized to '/orders/7'"),
        Step("rule", "pass", "rule 'read' matches GET /orders/7"),
        Step("token", "pass", f"valid RS256 token from {ISSUER}"),
        Step("scopes", "pass", "token grants 'orders:read'"),
        Step(
            "response",
            "info",
            "set ['x-user-id', 'x-gateway'], remove ['authorization', 'cookie', 'x-tenant', "
            "'x-roles']",
        ),
    ]


@pytest.mark.parametrize(
    ("host", "method", "path", "bearer"),
    [
        ("orders.test", "GET", "/orders/7", token()),
        ("orders.test", "GET", "/healthz", None),
        ("orders.test", "POST", "/orders", token()),
        ("orders.test", "GET", "/me", None),
        ("orders.test", "GET", "/me", token(key=STRANGER)),
        ("orders.test", "GET", "/me", token(iss=REMOTE)),
        ("orders.test", "DELETE", "/orders", token()),
        ("orders.test", "GET", "/a/%2F", token()),
        ("other.test", "GET", "/orders", token()),
    ],
)
async def test_without_a_trace_the_decision_is_the_same(
    snapshot: Snapshot, host: str, method: str, path: str, bearer: str | None
) -> None:
    trace = Trace()
    traced = await run(snapshot, path, method=method, host=host, bearer=bearer, trace=trace)
    assert trace.steps
    assert await run(snapshot, path, method=method, host=host, bearer=bearer) == traced


# --- answered at once, or after waiting ---------------------------------------------------------

_TWIN_CASES = [
    pytest.param("GET", "/orders/42", {"scope": "orders:read"}, id="allow"),
    pytest.param("POST", "/orders", {"scope": "orders:read"}, id="insufficient-scope"),
    pytest.param("GET", "/admin/x", {"scope": "superuser"}, id="any-of"),
    pytest.param("GET", "/nowhere", {"scope": "orders:read"}, id="no-rule"),
    pytest.param("GET", "/orders", {"scope": "orders:read", "exp": NOW - 100}, id="expired"),
    pytest.param("GET", "/orders", {"scope": "orders:read", "aud": "x"}, id="audience"),
    pytest.param("GET", "/healthz", {"scope": None}, id="anonymous-rule-with-token"),
]


@pytest.mark.parametrize(("method", "path", "claims"), _TWIN_CASES)
async def test_a_cached_token_is_decided_at_once_as_a_verified_one_is(
    snapshot: Snapshot, method: str, path: str, claims: dict[str, Any]
) -> None:
    """The first check of a token waits for its signature check (a coroutine); the next one is
    answered synchronously from the cache. Both paths give the same decision."""
    request = CheckInput(
        method=method,
        host="orders.test",
        raw_path=path,
        headers={"authorization": f"Bearer {token(**claims)}"},
    )
    verifier = Verifier()
    first = decide_now(snapshot, request, verifier=verifier, now=NOW)
    waited = first if isinstance(first, Decision) else await first
    if waited.allowed:
        assert not isinstance(first, Decision)  # the signature was checked: it waited
    again = decide_now(snapshot, request, verifier=verifier, now=NOW)
    if waited.reason == "invalid_token":  # a refused token is not cached: it waits again
        assert not isinstance(again, Decision)
        again = await again
    assert isinstance(again, Decision)
    assert again == waited


async def test_a_request_without_a_token_is_decided_at_once(snapshot: Snapshot) -> None:
    request = CheckInput(method="GET", host="orders.test", raw_path="/orders")
    decision = decide_now(snapshot, request, verifier=Verifier(), now=NOW)
    assert isinstance(decision, Decision)
    assert decision.reason == "missing_token"
