"""Rate limits in the decision: keys, headers on allow and deny, peeking, failure modes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from authz.errors import PolicyError
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.compile import compile_policy
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.limiter import (
    MODE_FALLBACK,
    SOURCE_CLOSED,
    SOURCE_OPEN,
    Hit,
    Limiter,
    Outcome,
)
from authz.ratelimit.memory import MemoryLimiter
from authz.ratelimit.spec import FailureMode
from tests.support.keys import rsa_key
from tests.support.policies import auth_policy, issuer, rule

NOW = 1_800_000_000.0
KEY = rsa_key("k1")
ISSUER = "https://issuer.test"


def policy(rules: Sequence[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return auth_policy(
        "api",
        namespace="t",
        issuers=[issuer(name=ISSUER, audiences=["api"], keys=[KEY])],
        rules=rules,
        **spec,
    )


RULES = [
    rule(
        "create-order",
        methods=["POST"],
        paths=["/orders"],
        scopes=["orders:write"],
        rateLimits=[
            {"name": "per-user", "requests": 3, "window": "1m", "key": "claim:sub"},
            {
                "name": "burst",
                "requests": 5,
                "window": "10s",
                "key": "global",
                "algorithm": "tokenBucket",
            },
        ],
    ),
    rule(
        "by-tenant",
        paths=["/tenant"],
        rateLimits=[
            {
                "name": "t",
                "requests": 2,
                "window": "1h",
                "key": "claim:org.tenant",
                "algorithm": "fixedWindow",
            }
        ],
    ),
    rule(
        "by-key",
        paths=["/keyed"],
        anonymous=True,
        rateLimits=[{"name": "k", "requests": 2, "window": "1m", "key": "header:X-Api-Key"}],
    ),
    rule(
        "by-ip",
        paths=["/ip"],
        anonymous=True,
        rateLimits=[{"name": "ip", "requests": 2, "window": "1m", "key": "sourceIP"}],
    ),
    rule("unlimited", paths=["/free"], anonymous=True),
]


def build(document: dict[str, Any]) -> Snapshot:
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    snapshot = store.update("t", [SourceDocument("p", document)])
    assert [s.state.value for s in snapshot.states] == ["ready"], snapshot.states
    return snapshot


SNAPSHOT = build(policy(RULES))


def token(sub: str | None = "alice", **extra: Any) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "api",
        "exp": NOW + 600,
        "scope": "orders:write",
        "sub": sub,
        **extra,
    }
    return KEY.sign({k: v for k, v in claims.items() if v is not None})


async def run(
    limiter: Any,
    path: str,
    *,
    method: str = "GET",
    bearer: str | None = None,
    headers: dict[str, str] | None = None,
    ip: str = "10.0.0.1",
    now: float = NOW,
    consume: bool = True,
    trace: Trace | None = None,
    snapshot: Snapshot = SNAPSHOT,
) -> Decision:
    all_headers = dict(headers or {})
    if bearer is not None:
        all_headers["authorization"] = f"Bearer {bearer}"
    request = CheckInput(method, "api.test", path, all_headers, source_ip=ip)
    return await decide(
        snapshot,
        request,
        verifier=Verifier(),
        now=now,
        trace=trace,
        limiter=limiter,
        consume=consume,
    )


def headers_of(decision: Decision) -> dict[str, str]:
    return dict(decision.response_headers)


async def test_allowed_responses_carry_the_tightest_limit() -> None:
    limiter = MemoryLimiter()
    seen = []
    for _ in range(3):
        decision = await run(limiter, "/orders", method="POST", bearer=token())
        assert decision.allowed
        seen.append(headers_of(decision))
    # per-user (3/1m) is tighter than burst (5 per 10 s) throughout
    assert seen == [
        {"ratelimit-limit": "3", "ratelimit-remaining": "2", "ratelimit-reset": "66"},
        {"ratelimit-limit": "3", "ratelimit-remaining": "1", "ratelimit-reset": "66"},
        {"ratelimit-limit": "3", "ratelimit-remaining": "0", "ratelimit-reset": "66"},
    ]


async def test_over_the_limit_is_429_with_retry_after_and_ratelimit_headers() -> None:
    limiter = MemoryLimiter()
    for _ in range(3):
        assert (await run(limiter, "/orders", method="POST", bearer=token())).allowed
    trace = Trace()
    denied = await run(limiter, "/orders", method="POST", bearer=token(), trace=trace)
    assert (denied.allowed, denied.status, denied.reason) == (False, 429, "rate_limited")
    assert (denied.policy, denied.rule) == ("t/api", "create-order")
    assert headers_of(denied) == {
        "retry-after": "66",
        "ratelimit-limit": "3",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "66",
    }
    assert denied.description == "rate limit 'per-user' (3 per 1m) exceeded"
    assert (trace.steps[-1].name, trace.steps[-1].outcome) == ("ratelimit", "fail")
    assert "per-user (claim:sub, slidingWindow 3/1m): exceeded" in trace.steps[-1].detail
    # another user has a bucket of its own; the global burst limit still counted only allowed ones
    other = await run(limiter, "/orders", method="POST", bearer=token("bob"))
    assert other.allowed
    assert headers_of(other)["ratelimit-remaining"] == "1"  # burst: 5 - 3 - 1, tighter now


async def test_the_limit_holding_back_longest_sets_retry_after() -> None:
    limiter = MemoryLimiter()
    for i in range(5):  # five users exhaust the global token bucket
        assert (await run(limiter, "/orders", method="POST", bearer=token(f"u{i}"))).allowed
    denied = await run(limiter, "/orders", method="POST", bearer=token("u9"))
    assert headers_of(denied)["retry-after"] == "2"  # one token per 2 s
    assert headers_of(denied)["ratelimit-limit"] == "5"


async def test_denied_requests_are_not_counted() -> None:
    limiter = MemoryLimiter()
    # a request denied before the rate-limit step (missing scope) never counts
    for _ in range(10):
        no_scope = await run(limiter, "/orders", method="POST", bearer=token(scope="other"))
        assert no_scope.reason == "insufficient_scope"
    assert (await run(limiter, "/orders", method="POST", bearer=token())).allowed


async def test_claim_key_with_a_nested_path_and_a_missing_claim_bucket() -> None:
    limiter = MemoryLimiter()
    acme = token(org={"tenant": "acme"})
    none = token()  # no org.tenant claim: the shared "missing" bucket
    assert [(await run(limiter, "/tenant", bearer=acme)).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    other = token(org={"tenant": "globex"})
    assert (await run(limiter, "/tenant", bearer=other)).allowed
    assert [(await run(limiter, "/tenant", bearer=none)).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    # a different user without the claim shares the same missing-value bucket
    assert not (await run(limiter, "/tenant", bearer=token("zed"))).allowed


async def test_header_key_and_missing_header_bucket() -> None:
    limiter = MemoryLimiter()
    one = {"x-api-key": "k-1"}
    assert [(await run(limiter, "/keyed", headers=one)).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert (await run(limiter, "/keyed", headers={"x-api-key": "k-2"})).allowed
    assert [(await run(limiter, "/keyed")).allowed for _ in range(3)] == [True, True, False]
    long_value = {"x-api-key": "v" * 5000}  # hashed into a bounded key, still its own bucket
    assert (await run(limiter, "/keyed", headers=long_value)).allowed


async def test_source_ip_key() -> None:
    limiter = MemoryLimiter()
    assert [(await run(limiter, "/ip", ip="10.0.0.1")).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert (await run(limiter, "/ip", ip="10.0.0.2")).allowed
    assert (await run(limiter, "/ip", ip="2001:db8::1")).allowed
    assert (await run(limiter, "/ip", ip="::ffff:10.0.0.2")).allowed  # same client as 10.0.0.2
    assert not (await run(limiter, "/ip", ip="::ffff:10.0.0.2")).allowed


async def test_rules_without_limits_have_no_headers() -> None:
    decision = await run(MemoryLimiter(), "/free")
    assert decision.allowed
    assert decision.response_headers == ()


async def test_peeking_does_not_consume() -> None:
    limiter = MemoryLimiter()
    for _ in range(10):
        trace = Trace()
        peek = await run(limiter, "/ip", consume=False, trace=trace)
        assert peek.allowed
        assert headers_of(peek)["ratelimit-remaining"] == "1"
        assert (trace.steps[-2].name, trace.steps[-2].outcome) == ("ratelimit", "pass")
    assert len(limiter) == 0


async def test_a_rule_with_limits_and_no_limiter_is_denied() -> None:
    decision = await run(None, "/ip")
    assert (decision.allowed, decision.reason) == (False, "internal_error")


class Unavailable(Limiter):
    """A limiter whose shared backend is away: answers as its failure mode says."""

    mode = MODE_FALLBACK

    def __init__(self) -> None:
        self.modes: list[FailureMode] = []

    async def check_ms(
        self, hits: Sequence[Hit], *, now_ms: int, consume: bool, failure_mode: FailureMode
    ) -> Outcome:
        self.modes.append(failure_mode)
        if failure_mode is FailureMode.CLOSED:
            return Outcome(False, (), SOURCE_CLOSED)
        return Outcome(True, (), SOURCE_OPEN)

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@pytest.mark.parametrize(
    ("mode", "allowed", "reason", "status"),
    [
        ("open", True, "allowed", 200),
        ("closed", False, "ratelimit_unavailable", 503),
    ],
)
async def test_failure_mode_comes_from_the_policy(
    mode: str, allowed: bool, reason: str, status: int
) -> None:
    snapshot = build(policy(RULES, rateLimitFailureMode=mode))
    limiter = Unavailable()
    decision = await run(limiter, "/ip", snapshot=snapshot)
    assert (decision.allowed, decision.reason, decision.status) == (allowed, reason, status)
    assert limiter.modes == [FailureMode(mode)]
    if not allowed:
        assert headers_of(decision) == {"retry-after": "1"}
    else:
        assert decision.response_headers == ()


def test_default_failure_mode_is_fallback() -> None:
    compiled = SNAPSHOT.lookup("api.test")
    assert compiled is not None
    assert compiled.rate_limit_failure_mode is FailureMode.FALLBACK


@pytest.mark.parametrize(
    ("limits", "path", "message"),
    [
        (
            [{"name": "a", "requests": 1, "window": "32d", "key": "global"}],
            "spec.rules[0].rateLimits[0].window",
            "window must be at most 31d",
        ),
        (
            [{"name": "a", "requests": 1, "window": "745h", "key": "global"}],
            "spec.rules[0].rateLimits[0].window",
            "window must be at most 31d",
        ),
        (
            [
                {"name": "a", "requests": 1, "window": "1m", "key": "global"},
                {"name": "a", "requests": 2, "window": "1h", "key": "global"},
            ],
            "spec.rules[0].rateLimits",
            "rate limit names must be unique within a rule",
        ),
        (
            [{"name": "a", "requests": 1, "window": "1m", "key": "claim:a..b"}],
            "spec.rules[0].rateLimits[0].key",
            None,
        ),
        (
            [{"name": "a", "requests": 0, "window": "1m", "key": "global"}],
            "spec.rules[0].rateLimits[0].requests",
            None,
        ),
        (
            [{"name": "a", "requests": 1, "window": "1w", "key": "global"}],
            "spec.rules[0].rateLimits[0].window",
            None,
        ),
        (
            [{"name": "a", "requests": 1, "window": "1m", "key": "cookie:x"}],
            "spec.rules[0].rateLimits[0].key",
            None,
        ),
        (
            [{"name": "a", "requests": 1, "window": "1m", "key": "global", "algorithm": "leaky"}],
            "spec.rules[0].rateLimits[0].algorithm",
            None,
        ),
    ],
)
def test_bad_limits_are_reported_with_their_field_path(
    limits: list[dict[str, Any]], path: str, message: str | None
) -> None:
    document = policy([{**RULES[0], "rateLimits": limits}, *RULES[1:]])
    with pytest.raises(PolicyError) as raised:
        compile_policy(document, bind=offline_provider)
    problems = {p.path: p.message for p in raised.value.problems}
    assert path in problems, problems
    if message is not None:
        assert problems[path] == message


def test_windows_and_keys_are_compiled_once() -> None:
    compiled = SNAPSHOT.lookup("api.test")
    assert compiled is not None
    per_user, burst = compiled.rules[0].rate_limits
    assert (per_user.requests, per_user.window_ms, per_user.key.claim) == (3, 60_000, ("sub",))
    assert per_user.prefix == "authz:rl:{t/api/create-order}:per-user:sw:60:"
    assert (burst.algorithm.value, burst.window_ms) == ("tokenBucket", 10_000)
    assert compiled.rules[2].rate_limits[0].key.header == "x-api-key"
