"""The policy's mode inside decide: a dryRun policy's would-be decision, marked, allowed safely."""

from __future__ import annotations

from typing import Any

import pytest

from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Step, Trace
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.memory import MemoryLimiter
from tests.support.keys import rsa_key
from tests.support.policies import auth_policy, issuer, rule

NOW = 1_800_000_000
KEY = rsa_key("k1")
ISSUER = "https://issuer.test"


def policy(name: str, mode: str) -> dict[str, Any]:
    return auth_policy(
        name,
        namespace="t",
        mode=mode,
        sourceIPs={"deny": ["203.0.113.0/24"]},
        issuers=[issuer(name=ISSUER, audiences=["api"], keys=[KEY])],
        rules=[
            rule(
                "read",
                paths=["/orders/*"],
                scopes=["orders:read"],
                rateLimits=[
                    {"name": "per-user", "requests": 1, "window": "1m", "key": "claim:sub"}
                ],
            )
        ],
        response={
            "setHeaders": [{"name": "x-user", "claim": "sub"}, {"name": "x-tier", "value": "gold"}],
            "removeHeaders": ["authorization"],
        },
    )


def build() -> Snapshot:
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    documents = [policy("trial", "dryRun"), policy("live", "enforce")]
    snapshot = store.update("t", [SourceDocument(f"p{i}", d) for i, d in enumerate(documents)])
    assert [s.state.value for s in snapshot.states] == ["ready", "ready"], snapshot.states
    return snapshot


SNAPSHOT = build()


def bearer(scope: str = "orders:read") -> dict[str, str]:
    claims = {"iss": ISSUER, "aud": "api", "sub": "alice", "exp": NOW + 60, "scope": scope}
    return {"authorization": f"Bearer {KEY.sign(claims)}"}


async def run(
    host: str,
    *,
    path: str = "/orders/1",
    headers: dict[str, str] | None = None,
    ip: str = "10.0.0.1",
    limiter: MemoryLimiter | None = None,
    trace: Trace | None = None,
) -> Decision:
    request = CheckInput("GET", host, path, headers or {}, source_ip=ip)
    return await decide(
        SNAPSHOT,
        request,
        verifier=Verifier(),
        now=NOW,
        limiter=limiter if limiter is not None else MemoryLimiter(),
        trace=trace,
    )


async def test_every_step_reports_in_order_then_the_mode() -> None:
    trace = Trace()
    await run("trial.test", headers=bearer(), trace=trace)
    assert [(step.name, step.outcome) for step in trace.steps] == [
        ("host", "pass"),
        ("ip", "pass"),
        ("path", "pass"),
        ("rule", "pass"),
        ("token", "pass"),
        ("scopes", "pass"),
        ("ratelimit", "pass"),
        ("response", "info"),
        ("mode", "info"),
    ]


async def test_a_would_be_allow_is_marked_and_rewrites_headers_as_usual() -> None:
    trace = Trace()
    decision = await run("trial.test", headers=bearer(), trace=trace)
    assert (decision.allowed, decision.dry_run, decision.subject) == (True, True, "alice")
    assert decision.set_headers == (("x-user", "alice"), ("x-tier", "gold"))
    assert decision.remove_headers == ("authorization",)
    assert decision.response_headers[0] == ("ratelimit-limit", "1")
    assert trace.steps[-1] == Step("mode", "info", "dryRun policy: the request is allowed")


@pytest.mark.parametrize(
    ("case", "reason", "status"),
    [
        ({"ip": "203.0.113.7"}, "ip_denied", 403),
        ({"path": "/%2F"}, "invalid_path", 400),
        ({"path": "/elsewhere"}, "access_denied", 403),
        ({}, "missing_token", 401),
        ({"headers": {"authorization": "Bearer x.y.z"}}, "invalid_token", 401),
        ({"headers": bearer(scope="other")}, "insufficient_scope", 403),
    ],
)
async def test_a_would_be_denial_is_kept_and_strips_every_header_the_policy_sets(
    case: dict[str, object], reason: str, status: int
) -> None:
    trace = Trace()
    decision = await run("trial.test", trace=trace, **case)  # type: ignore[arg-type]
    assert (decision.allowed, decision.dry_run) == (False, True)
    assert (decision.reason, decision.status, decision.policy) == (reason, status, "t/trial")
    assert decision.set_headers == ()
    # A client cannot smuggle its own x-user past a dry run; removeHeaders still apply.
    assert decision.remove_headers == ("authorization", "x-user", "x-tier")
    assert trace.steps[-1] == Step(
        "mode",
        "info",
        f"dryRun policy: would deny ({reason}), allowed instead; headers the policy sets are "
        "stripped",
    )


async def test_a_dry_run_still_counts_its_rate_limits() -> None:
    limiter = MemoryLimiter()
    first = await run("trial.test", headers=bearer(), limiter=limiter)
    second = await run("trial.test", headers=bearer(), limiter=limiter)
    assert (first.allowed, second.allowed) == (True, False)
    assert (second.reason, second.dry_run, second.subject) == ("rate_limited", True, "alice")


async def test_an_enforced_policy_is_left_alone() -> None:
    trace = Trace()
    denied = await run("live.test", trace=trace)
    assert (denied.allowed, denied.dry_run, denied.reason) == (False, False, "missing_token")
    assert "mode" not in [step.name for step in trace.steps]
    allowed = await run("live.test", headers=bearer())
    assert (allowed.allowed, allowed.dry_run) == (True, False)
    assert allowed.set_headers == (("x-user", "alice"), ("x-tier", "gold"))


async def test_a_host_without_a_policy_has_no_mode() -> None:
    decision = await run("nobody.test", headers=bearer())
    assert (decision.reason, decision.dry_run, decision.policy) == ("no_policy", False, None)
