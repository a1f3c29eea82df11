"""Conditions inside the whole decision: after the scopes, before the rate limits, with a real
signed token, and explained step by step."""

from __future__ import annotations

from typing import Any

from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.memory import MemoryLimiter
from tests.support.keys import AUDIENCE, ISSUER, rsa_key
from tests.support.policies import auth_policy, issuer, rule

NOW = 1_800_000_000
KEY = rsa_key("k1")
WHEN = [
    {"claim": "tenant_id", "equalsParam": "tenant"},
    {"claim": "realm_access.roles", "containsAny": ["admin", "support"]},
    {"header": "x-api-version", "in": ["2", "3"]},
    {"cel": "claims.acr == 'mfa' || request.method == 'GET'"},
]


def snapshot() -> Snapshot:
    document = auth_policy(
        "shop",
        hosts=["shop.test"],
        issuers=[issuer(keys=[KEY])],
        rules=[
            rule(
                "tenant-orders",
                methods=["GET", "POST"],
                paths=["/tenants/{tenant}/orders/**"],
                scopes=["orders:read"],
                when=WHEN,
                rateLimits=[{"name": "u", "requests": 1, "window": "1m", "key": "claim:sub"}],
            )
        ],
    )
    store = PolicyStore(bind=offline_provider, publish=lambda _: None)
    return store.update("t", [SourceDocument("t:0", document)])


def bearer(**claims: Any) -> str:
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": NOW + 600}
    base.update(
        scope="orders:read", tenant_id="acme", realm_access={"roles": ["support"]}, acr="pwd"
    )
    base.update(claims)
    return KEY.sign({k: v for k, v in base.items() if v is not None})


async def run(
    path: str,
    token: str,
    *,
    method: str = "GET",
    trace: Trace | None = None,
    limiter: MemoryLimiter | None = None,
) -> Decision:
    headers = {"authorization": f"Bearer {token}", "x-api-version": "2"}
    request = CheckInput(method, "shop.test", path, headers, "10.0.0.1")
    return await decide(
        snapshot(),
        request,
        verifier=Verifier(),
        now=NOW,
        trace=trace,
        limiter=limiter or MemoryLimiter(),
    )


async def test_own_tenant_is_allowed_and_another_tenant_is_refused() -> None:
    token = bearer()
    assert (await run("/tenants/acme/orders/1", token)).allowed
    other = await run("/tenants/globex/orders/1", token)
    assert (other.status, other.reason, other.rule, other.subject) == (
        403,
        "condition_failed",
        "tenant-orders",
        "alice",
    )


async def test_scopes_are_checked_before_conditions() -> None:
    decision = await run("/tenants/globex/orders/1", bearer(scope="other"))
    assert decision.reason == "insufficient_scope"


async def test_the_cel_rule_needs_mfa_to_write() -> None:
    assert not (await run("/tenants/acme/orders", bearer(), method="POST")).allowed
    assert (await run("/tenants/acme/orders", bearer(acr="mfa"), method="POST")).allowed


async def test_a_refused_condition_consumes_no_rate_limit_and_explains_itself() -> None:
    limiter, trace = MemoryLimiter(), Trace()
    refused = bearer(realm_access=None)
    await run("/tenants/acme/orders/1", refused, limiter=limiter)
    decision = await run("/tenants/acme/orders/1", refused, trace=trace, limiter=limiter)
    assert decision.condition == 1
    assert (await run("/tenants/acme/orders/1", bearer(), limiter=limiter)).allowed
    names = [(s.name, s.outcome) for s in trace.steps]
    assert names[-2:] == [("scopes", "pass"), ("conditions", "fail")]
    assert "when[1] claim realm_access.roles containsAny" in trace.steps[-1].detail
    assert "the claim is missing" in trace.steps[-1].detail
