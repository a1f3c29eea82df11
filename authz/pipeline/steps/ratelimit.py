"""The rate-limit step: after the scopes, only for requests that would otherwise be allowed.

Each limit of the matched rule gets its bucket from the request (claim value, header value,
client address, or the one global bucket; a missing value is a bucket of its own) and the
limiter answers for all of them at once. Allowed responses carry RateLimit-Limit /
RateLimit-Remaining / RateLimit-Reset of the tightest limit (fewest remaining; on a tie the later
reset); a denial is 429 with Retry-After (when every limit would admit the request again) and
the RateLimit-* headers of the limit that holds it back longest.

Rules without limits skip the step without a trace line (their explanations read as before)
and without a coroutine (most rules have no limits; their checks should not pay for the step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from authz.pipeline import decision as d
from authz.pipeline.claims import claim_at
from authz.pipeline.context import Context, StepResult
from authz.pipeline.decision import Decision
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


def _value(limit: LimitSpec, ctx: Context) -> str | None:
    kind = limit.key.kind
    if kind is KeyKind.CLAIM:
        return keys.claim_text(claim_at(ctx.claims, limit.key.claim))
    if kind is KeyKind.HEADER:
        return ctx.request.headers.get(limit.key.header)
    address = ctx.address()
    return str(address) if address is not None else None


def hits_for(ctx: Context) -> list[Hit]:
    out: list[Hit] = []
    for limit in ctx.rule.rate_limits:
        if limit.key.kind is KeyKind.GLOBAL:
            out.append(Hit(limit, limit.prefix + keys.GLOBAL))
        else:
            out.append(Hit(limit, keys.bucket(limit.prefix, _value(limit, ctx))))
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


def apply_rate_limits(ctx: Context) -> StepResult:
    if not ctx.rule.rate_limits:
        return None
    limiter = ctx.limiter
    if limiter is None:
        ctx.trace.add("ratelimit", "fail", "the rule has rate limits but no limiter was given")
        return d.internal_error()
    return _check(ctx, limiter, hits_for(ctx))


async def _check(ctx: Context, limiter: Limiter, hits: Sequence[Hit]) -> Decision | None:
    """A denial, or None with the headers for the allowed response in the context."""
    outcome = await limiter.check(
        hits, now=ctx.now, consume=ctx.consume, failure_mode=ctx.policy.rate_limit_failure_mode
    )
    trace = ctx.trace
    if outcome.source == SOURCE_CLOSED:
        trace.add(
            "ratelimit",
            "fail",
            "the shared rate-limit backend is unavailable and rateLimitFailureMode is closed",
        )
        return d.ratelimit_unavailable()
    if outcome.source == SOURCE_OPEN:
        trace.add(
            "ratelimit",
            "skip",
            "the shared rate-limit backend is unavailable and rateLimitFailureMode is open",
        )
        return None
    if not outcome.allowed:
        trace.add("ratelimit", "fail", _describe, hits, outcome)
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
    trace.add("ratelimit", "pass", _describe, hits, outcome)
    best = min(
        zip(hits, outcome.verdicts, strict=True),
        key=lambda pair: (pair[1].remaining, -pair[1].reset_ms),
    )
    ctx.response_headers = (*ctx.response_headers, *_headers(best[0].limit, best[1]))
    return None
