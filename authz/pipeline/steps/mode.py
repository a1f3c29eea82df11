"""The policy's mode, applied to every decision: enforce (the default) or dryRun.

A dryRun policy is evaluated completely - token, scopes, IP, rate limits - and its would-be
decision is kept in the Decision (so it is logged and counted with dry_run true), but Envoy is
told to allow. The allow must not open a hole: a would-be denial has no verified identity, so
every header the policy would set is stripped from the client's request (a client cannot
smuggle `x-user-id: admin` past a dry-run policy) and the policy's removeHeaders still apply.
"""

from __future__ import annotations

from authz.pipeline.context import Context
from authz.pipeline.decision import Decision


def apply_mode(ctx: Context, decision: Decision) -> Decision:
    policy = ctx.policy
    if not policy.dry_run:
        return decision
    if decision.allowed:
        ctx.trace.add("mode", "info", "dryRun policy: the request is allowed")
        return decision._replace(dry_run=True)
    ctx.trace.add(
        "mode",
        "info",
        "dryRun policy: would deny ({}), allowed instead; headers the policy sets are stripped",
        decision.reason,
    )
    stripped = tuple(dict.fromkeys((*policy.remove_headers, *(t.name for t in policy.set_headers))))
    return decision._replace(dry_run=True, set_headers=(), remove_headers=stripped)
