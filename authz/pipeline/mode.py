"""Policy modes: enforce (the default) and dryRun, applied around the decision.

A dryRun policy is evaluated completely - token, scopes, IP, rate limits - and its would-be
decision is kept in the Decision (so it is logged and counted with dry_run true), but Envoy is
told to allow. The allow must not open a hole: a would-be denial has no verified identity, so
every header the policy would set is stripped from the client's request (a client cannot
smuggle `x-user-id: admin` past a dry-run policy) and the policy's removeHeaders still apply.
"""

from __future__ import annotations

from dataclasses import replace

from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.model import CompiledPolicy
from authz.policy.snapshot import Snapshot
from authz.ratelimit.limiter import Limiter


def dry_run(decision: Decision, policy: CompiledPolicy, trace: Trace | None = None) -> Decision:
    """The decision of a dryRun policy: the would-be outcome, marked, with safe headers."""
    if decision.allowed:
        if trace is not None:
            trace.add("mode", "info", "dryRun policy: the request is allowed")
        return replace(decision, dry_run=True)
    if trace is not None:
        trace.add(
            "mode",
            "info",
            f"dryRun policy: would deny ({decision.reason}), allowed instead; "
            "headers the policy sets are stripped",
        )
    stripped = tuple(dict.fromkeys((*policy.remove_headers, *(t.name for t in policy.set_headers))))
    return replace(decision, dry_run=True, set_headers=(), remove_headers=stripped)


async def decide_in_mode(
    snapshot: Snapshot,
    request: CheckInput,
    *,
    verifier: Verifier,
    now: float,
    trace: Trace | None = None,
    limiter: Limiter | None = None,
    trusted_proxy_hops: int = 0,
    consume: bool = True,
) -> Decision:
    """`decide` (same arguments), then the policy's mode."""
    decision = await decide(
        snapshot,
        request,
        verifier=verifier,
        now=now,
        trace=trace,
        limiter=limiter,
        trusted_proxy_hops=trusted_proxy_hops,
        consume=consume,
    )
    if decision.policy is None:
        return decision
    policy = snapshot.lookup(request.host)
    if policy is None or not policy.dry_run:
        return decision
    return dry_run(decision, policy, trace)
