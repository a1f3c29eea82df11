"""The allow step, last: every check passed; the request goes upstream with header rewrites.

The policy's `setHeaders` overwrite what the client sent (a client cannot pose as another user by sending
`x-user-id` itself); a header whose claim is absent or unsafe to send is removed instead of
sent empty (see pipeline.claims). The rate-limit step's RateLimit-* headers go to the client.
Query parameters are rewritten the same way (see pipeline.query). A rule that redacts response
fields records which of the scopes waiving a redaction the token grants, for the response
filter (see server.extproc).
"""

from __future__ import annotations

from authz import errors
from authz.pipeline.claims import claim_at, granted_scopes, header_value
from authz.pipeline.context import Context
from authz.pipeline.decision import Decision
from authz.pipeline.query import query_rewrites
from authz.policy.redact import ResponseBody


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
    decision = Decision(
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
    if policy.set_query or policy.remove_query or ctx.rule.response_body is not None:
        return _query_and_body(ctx, decision)  # kept out of the common path: most rules have none
    return decision


def _query_and_body(ctx: Context, decision: Decision) -> Decision:
    """The query rewrites, and what the response filter needs to know (see server.extproc)."""
    set_query: tuple[tuple[str, str], ...] = ()
    remove_query: tuple[str, ...] = ()
    if ctx.policy.set_query or ctx.policy.remove_query:
        set_query, remove_query = query_rewrites(ctx)
        ctx.trace.add("query", "info", _rewrites, list(set_query), list(remove_query))
    scopes: tuple[str, ...] = ()
    redacts = False
    body = ctx.rule.response_body
    if body is not None:
        token = ctx.token
        granted = granted_scopes(ctx.claims, token.issuer.scope_claim if token else None)
        scopes = tuple(sorted(body.scopes & granted))
        redacts = bool(body.redactions_for(granted))
        ctx.trace.add("redact", "info", _redactions, body, granted)
    return decision._replace(
        set_query=set_query, remove_query=remove_query, scopes=scopes, redacts=redacts
    )


def _redactions(body: ResponseBody, granted: frozenset[str]) -> str:
    """Which response fields this token would see redacted (Explain)."""
    applied = body.redactions_for(granted)
    if not applied:
        return "response fields: none redacted (the token grants every waiving scope)"
    parts = [
        f"{'remove' if r.remove else 'mask'} {', '.join(p.text for p in r.paths)}" for r in applied
    ]
    return "response fields: " + "; ".join(parts)
