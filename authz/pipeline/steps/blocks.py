"""Brute-force blocking: refuse a blocked client early, and count the 401s that block it.

The step runs right after the client address is checked and before the path, the rules or the
token, so a blocked client costs one dictionary probe per protection and never a signature
check: 403 blocked, with Retry-After saying when the block ends. The block store answers from
local memory even when it is shared through Redis (see authz.ratelimit.blockredis).

The finisher sees every decision before the policy's mode does and counts the 401s
(missing_token, invalid_token) of each protection's key; the failure that completes
`maxFailures` within `window` starts the block. Nothing else is counted - an allowed request,
a 403 or a 429 costs the finisher one comparison. In a dryRun policy failures count and blocks
start, and the block step's denial is what `mode` turns into a logged, would-be decision.

A claim key reads the claim from the token as presented, before it is verified (a 401 has no
verified claims): a forger chooses it, which is why sourceIP is the key to prefer. Header values
are stored hashed. A request without the value is neither counted nor blocked.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable

from authz.errors import TokenError
from authz.jwt.extract import bearer_token
from authz.jwt.token import parse_token
from authz.pipeline import decision as d
from authz.pipeline.claims import claim_at
from authz.pipeline.context import Context
from authz.pipeline.decision import Decision
from authz.policy.traffic import IPAddress
from authz.ratelimit import keys
from authz.ratelimit.blocks import BlockStore, Protection, Strike, block_key
from authz.ratelimit.spec import FailureMode, KeyKind

#: Claims are read from tokens no larger than the verifier accepts.
_MAX_TOKEN_BYTES = 8192
_UNAUTHENTICATED = 401


@functools.lru_cache(maxsize=4096)
def _address_text(address: IPAddress) -> str:
    return str(address)  # the canonical form: one key per address, however it was written


def _claim(ctx: Context, path: tuple[str, ...]) -> str | None:
    if ctx.claims:
        return keys.claim_text(claim_at(ctx.claims, path))
    token = bearer_token(ctx.request.headers)
    if not token:
        return None
    try:
        claims = parse_token(token, max_bytes=_MAX_TOKEN_BYTES).claims
    except TokenError:
        return None
    return keys.claim_text(claim_at(claims, path))


def key_of(protection: Protection, ctx: Context) -> str | None:
    """The block key of this request under `protection`, or None when its value is missing."""
    kind = protection.key.kind
    if kind is KeyKind.SOURCE_IP:  # an address is short, printable text: kept as it is
        address = ctx.address()
        return None if address is None else protection.prefix + "=" + _address_text(address)
    if kind is KeyKind.HEADER:
        value = ctx.request.headers.get(protection.key.header)
    else:
        value = _claim(ctx, protection.key.claim)
    return block_key(protection.prefix, kind, value)


def check_blocks(ctx: Context) -> Decision | None:
    protections = ctx.policy.brute_force
    if not protections:  # (no trace step: policies without protection read as before)
        return None
    store = ctx.blocks
    trace = ctx.trace
    if store is None:
        trace.add("blocks", "skip", "no block store is configured")
        return None
    if not store.available and ctx.policy.rate_limit_failure_mode is FailureMode.CLOSED:
        trace.add("blocks", "fail", "the shared block store is unavailable and the mode is closed")
        return d.ratelimit_unavailable()
    if not store.any_blocked():  # nobody is blocked (the usual case): no key to work out
        trace.add("blocks", "pass", "no client is blocked")
        return None
    now_ms = int(ctx.now * 1000)
    longest, holding = 0, None
    for protection in protections:
        key = key_of(protection, ctx)
        if key is None:
            continue
        left = store.blocked_ms(key, now_ms)
        if left > longest:
            longest, holding = left, protection
    if holding is None:
        trace.add("blocks", "pass", "no block holds this client")
        return None
    seconds = max(1, math.ceil(longest / 1000))
    trace.add("blocks", "fail", "blocked by {!r} for {} s more", holding.name, seconds)
    return d.blocked(protection=holding.name, retry_after=seconds)


def count_failures(ctx: Context, decision: Decision) -> Decision | Awaitable[Decision]:
    if decision.status != _UNAUTHENTICATED or not ctx.policy.brute_force or not ctx.consume:
        return decision
    store = ctx.blocks
    if store is None:
        return decision
    strikes = []
    for protection in ctx.policy.brute_force:
        key = key_of(protection, ctx)
        if key is not None:
            strikes.append(Strike(protection, key))
    if not strikes:
        return decision
    return _count(ctx, store, strikes, decision)


async def _count(
    ctx: Context, store: BlockStore, strikes: list[Strike], decision: Decision
) -> Decision:
    policy = ctx.policy
    await store.failed(
        strikes,
        now_ms=int(ctx.now * 1000),
        failure_mode=policy.rate_limit_failure_mode,
        dry_run=policy.dry_run,
    )
    return decision
