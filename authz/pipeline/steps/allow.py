"""The allow step, last: every check passed; the request goes upstream with header rewrites.

The policy's `setHeaders` overwrite what the client sent (a client cannot pose as another user by sending
`x-user-id` itself); a header whose claim is absent or unsafe to send is removed instead of
sent empty (see pipeline.claims). The rate-limit step's RateLimit-* headers go to the client.
"""

from __future__ import annotations

from authz import errors
from authz.pipeline.claims import claim_at, header_value
from authz.pipeline.context import Context
from authz.pipeline.decision import Decision


def _rewrites(set_headers: list[tuple[str, str]], remove_headers: list[str]) -> str:
    return f"set {[name for name, _ in set_headers]}, remove {remove_headers}"


def allow(ctx: Context) -> Decision:
    policy = ctx.policy
    set_headers: list[tuple[str, str]] = []
    remove_headers = list(policy.remove_headers)
    for template in policy.set_headers:
        value = (
            template.value
            if template.claim is None
            else header_value(claim_at(ctx.claims, template.claim))
        )
        if value is None:
            remove_headers.append(template.name)
        else:
            set_headers.append((template.name, value))
    ctx.trace.add("response", "info", _rewrites, set_headers, remove_headers)
    return Decision(
        True,
        errors.ALLOWED,
        200,
        policy=policy.key,
        rule=ctx.rule.name,
        subject=ctx.subject,
        set_headers=tuple(set_headers),
        remove_headers=tuple(remove_headers),
        response_headers=ctx.response_headers,
    )
