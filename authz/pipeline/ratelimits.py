"""The rate-limit step: after the scopes, only for requests that would otherwise be allowed.

Each limit of the matched rule gets its bucket from the request (claim value, header value,
client address, or the one global bucket; a missing value is a bucket of its own) and the
limiter answers for all of them at once. Allowed responses carry RateLimit-Limit /
RateLimit-Remaining / RateLimit-Reset of the tightest limit (fewest remaining; on a tie the later
reset); a denial is 429 with Retry-After (when every limit would admit the request again) and
the RateLimit-* headers of the limit that holds it back longest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from authz.pipeline import decision as d
from authz.pipeline.claims import claim_at
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.model import CompiledPolicy, Rule
from authz.policy.traffic import IPAddress
from authz.ratelimit import keys
from authz.ratelimit.limiter import (
    SOURCE_CLOSED,
    SOURCE_OPEN,
    Hit,
    Limiter,
    Outcome,
    Verdict,
)
from authz.ratelimit.spec import KeyKind, LimitSpec

Headers = tuple[tuple[str, str], ...]


def needs_address(rule: Rule) -> bool:
    return any(limit.key.kind is KeyKind.SOURCE_IP for limit in rule.rate_limits)


def _value(
    limit: LimitSpec,
    *,
    claims: Mapping[str, Any],
    headers: Mapping[str, str],
    address: IPAddress | None,
) -> str | None:
    kind = limit.key.kind
    if kind is KeyKind.CLAIM:
        return keys.claim_text(claim_at(claims, limit.key.claim))
    if kind is KeyKind.HEADER:
        return headers.get(limit.key.header)
    return str(address) if address is not None else None


def hits_for(
    rule: Rule,
    *,
    claims: Mapping[str, Any],
    request: CheckInput,
    address: IPAddress | None,
) -> list[Hit]:
    out: list[Hit] = []
    for limit in rule.rate_limits:
        if limit.key.kind is KeyKind.GLOBAL:
            out.append(Hit(limit, limit.prefix + keys.GLOBAL))
            continue
        value = _value(limit, claims=claims, headers=request.headers, address=address)
        out.append(Hit(limit, keys.bucket(limit.prefix, value)))
    return out


def _seconds(ms: int) -> int:
    return max(0, math.ceil(ms / 1000))


def _headers(limit: LimitSpec, verdict: Verdict) -> Headers:
    return (
        ("ratelimit-limit", str(limit.requests)),
        ("ratelimit-remaining", str(verdict.remaining)),
        ("ratelimit-reset", str(_seconds(verdict.reset_ms))),
    )


def _describe(hits: Sequence[Hit], outcome: Outcome) -> str:
    parts = []
    for hit, verdict in zip(hits, outcome.verdicts, strict=True):
        limit = hit.limit
        state = (
            f"{verdict.remaining} remaining"
            if verdict.allowed
            else f"exceeded, retry in {_seconds(verdict.retry_ms)} s"
        )
        parts.append(
            f"{limit.name} ({limit.key.text}, {limit.algorithm.value} "
            f"{limit.requests}/{limit.window_text}): {state}, resets in {_seconds(verdict.reset_ms)} s"
        )
    return "; ".join(parts) + f" [{outcome.source}]"


async def apply_rate_limits(
    policy: CompiledPolicy,
    rule: Rule,
    hits: Sequence[Hit],
    *,
    limiter: Limiter,
    now: float,
    consume: bool,
    trace: Trace | None,
) -> Decision | Headers:
    """A denial, or the headers for the allowed response."""
    outcome = await limiter.check(
        hits, now=now, consume=consume, failure_mode=policy.rate_limit_failure_mode
    )
    if outcome.source == SOURCE_CLOSED:
        if trace is not None:
            trace.add(
                "ratelimit",
                "fail",
                "the shared rate-limit backend is unavailable and rateLimitFailureMode is closed",
            )
        return d.ratelimit_unavailable()
    if outcome.source == SOURCE_OPEN:
        if trace is not None:
            trace.add(
                "ratelimit",
                "skip",
                "the shared rate-limit backend is unavailable and rateLimitFailureMode is open",
            )
        return ()
    if not outcome.allowed:
        if trace is not None:
            trace.add("ratelimit", "fail", _describe(hits, outcome))
        worst = max(
            (pair for pair in zip(hits, outcome.verdicts, strict=True) if not pair[1].allowed),
            key=lambda pair: pair[1].retry_ms,
        )
        limit, verdict = worst[0].limit, worst[1]
        return d.rate_limited(
            description=f"rate limit {limit.name!r} ({limit.requests} per {limit.window_text}) exceeded",
            retry_after=max(1, _seconds(verdict.retry_ms)),
            headers=_headers(limit, verdict),
        )
    if trace is not None:
        trace.add("ratelimit", "pass", _describe(hits, outcome))
    best = min(
        zip(hits, outcome.verdicts, strict=True),
        key=lambda pair: (pair[1].remaining, -pair[1].reset_ms),
    )
    return _headers(best[0].limit, best[1])
