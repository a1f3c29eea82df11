"""Evaluate one request against one snapshot: the steps in order, then the finishers.

The server takes the current snapshot once per check and passes it in, so a decision never
mixes two policy versions. The host picks the policy; then each step of STEPS either ends the
check with a decision or passes it on, and every decision goes through FINISH (the policy's
mode) on its way out. The servicer, the admin API's Explain and the tests all call `decide`, so
an explanation is always the real decision. Every failure here is a deny with a stable reason;
exceptions that are not AuthzErrors are the server's to turn into a deny (see server.servicer).

Where the steps still to come belong, and why there:

Query-parameter rewrites live in the `allow` step, beside the header rewrites (pipeline.query);
response redaction is not a step: the check only reports the scopes that waive a redaction, and
the response is redacted later by the ext_proc service (server.extproc, pipeline.response).
Brute-force blocking (`blocks`) is both a step right after `source_ip`, before anything that
costs CPU (a blocked client must cost less than an admitted one), and a finisher that counts a
client's 401s, placed before `mode` so it sees the would-be decision of a dryRun policy (which
counts, and whose blocks `mode` turns into allows).

A new step is a module in pipeline.steps and one line in STEPS; state it leaves for later steps
gets a slot in pipeline.context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec

from authz.jwt.verify import Verifier
from authz.pipeline import decision as d
from authz.pipeline.context import Context, Finish, Step
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.steps import (
    allow,
    blocks,
    conditions,
    host,
    mode,
    path,
    ratelimit,
    rule,
    scopes,
    sender,
    source_ip,
    token,
)
from authz.pipeline.trace import NULL_TRACE, Tracer
from authz.policy.snapshot import Snapshot
from authz.ratelimit.blocks import BlockStore
from authz.ratelimit.limiter import Limiter

STEPS: tuple[Step, ...] = (
    source_ip.check_source_ip,
    blocks.check_blocks,
    path.normalize,
    rule.match_rule,
    token.authenticate,
    sender.check_sender,
    scopes.check_scopes,
    conditions.check_conditions,
    ratelimit.apply_rate_limits,
    allow.allow,
)
FINISH: tuple[Finish, ...] = (blocks.count_failures, mode.apply_mode)
P = ParamSpec("P")


def decide_now(
    snapshot: Snapshot,
    request: CheckInput,
    *,
    verifier: Verifier,
    now: float,
    trace: Tracer | None = None,
    limiter: Limiter | None = None,
    trusted_proxy_hops: int = 0,
    consume: bool = True,
    block_store: BlockStore | None = None,
) -> Decision | Awaitable[Decision]:
    """The decision for one request, in the policy's mode - at once when no step has to wait
    (a cached token, counters in memory): the steps run as plain calls, and only a step that
    waits hands the rest of the check to a coroutine, so the server answers such a check
    without a task or a loop turn. `decide` is the same, always awaited.

    `limiter` serves the rules' rate limits (a rule with limits and no limiter is denied:
    internal_error); `consume=False` evaluates them without counting (Explain).
    `trusted_proxy_hops` picks the client address (see pipeline.address). `block_store` holds
    the brute-force blocks (None: policies with `protection.bruteForce` block nobody). `trace`
    records every step (Explain); None records nothing."""
    tracer = NULL_TRACE if trace is None else trace
    policy = host.find_policy(snapshot, request, trace=tracer)
    if isinstance(policy, Decision):
        return policy
    ctx = Context(
        request, policy, verifier, limiter, now, consume, trusted_proxy_hops, tracer, block_store
    )
    return _steps(ctx, 0)


def _steps(ctx: Context, start: int) -> Decision | Awaitable[Decision]:
    """STEPS from `start` on, then FINISH; a step that waits takes the rest with it."""
    for index in range(start, len(STEPS)):
        outcome = STEPS[index](ctx)
        if outcome is None:
            continue
        if isinstance(outcome, Decision):
            return _finish(ctx, _located(ctx, outcome), 0)
        return _after_step(ctx, outcome, index)
    return _finish(ctx, d.internal_error(), 0)  # no step decided (the list lost its allow step)


async def _after_step(ctx: Context, waiting: Awaitable[Decision | None], index: int) -> Decision:
    outcome = await waiting
    result = _steps(ctx, index + 1) if outcome is None else _finish(ctx, _located(ctx, outcome), 0)
    return result if isinstance(result, Decision) else await result


def _located(ctx: Context, decision: Decision) -> Decision:
    if decision.allowed:
        return decision
    return decision.located(policy=ctx.policy.key, rule=ctx.rule_name(), subject=ctx.subject)


def _finish(ctx: Context, decision: Decision, start: int) -> Decision | Awaitable[Decision]:
    """FINISH from `start` on; a finisher that waits takes the rest with it."""
    for index in range(start, len(FINISH)):
        result = FINISH[index](ctx, decision)
        if not isinstance(result, Decision):
            return _after_finish(ctx, result, index)
        decision = result
    return decision


async def _after_finish(ctx: Context, waiting: Awaitable[Decision], index: int) -> Decision:
    result = _finish(ctx, await waiting, index + 1)
    return result if isinstance(result, Decision) else await result


def _settled(
    decide_at_once: Callable[P, Decision | Awaitable[Decision]],
) -> Callable[P, Coroutine[Any, Any, Decision]]:
    async def settled(*args: P.args, **kwargs: P.kwargs) -> Decision:
        result = decide_at_once(*args, **kwargs)
        return result if isinstance(result, Decision) else await result

    return settled


#: decide_now, awaited: what the admin API's Explain, the tools and the tests call.
decide = _settled(decide_now)
