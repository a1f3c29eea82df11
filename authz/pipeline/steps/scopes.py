"""The scopes step: the token must grant every scope of `allOf` and one of `anyOf`.

Scopes come from the issuer's `scopeClaim`, else `scope` (space-separated), then `scp` (see
pipeline.claims). A token that lacks them is valid but not enough: 403 insufficient_scope, with
the scopes the rule needs in the challenge (RFC 6750 section 3.1) so a client can ask for them.
"""

from __future__ import annotations

from authz.pipeline import decision as d
from authz.pipeline.claims import granted_scopes
from authz.pipeline.context import Context
from authz.pipeline.decision import Decision


def _refusal(needed: str, granted: frozenset[str]) -> str:
    return f"needs {needed!r}; token grants {' '.join(sorted(granted))!r}"


def check_scopes(ctx: Context) -> Decision | None:
    rule = ctx.rule
    if not (rule.all_of or rule.any_of):
        ctx.trace.add("scopes", "skip", "the rule requires no scopes")
        return None
    token = ctx.token
    granted = granted_scopes(ctx.claims, token.issuer.scope_claim if token is not None else None)
    if rule.all_of <= granted and (not rule.any_of or not rule.any_of.isdisjoint(granted)):
        ctx.trace.add("scopes", "pass", "token grants {!r}", rule.scope_text)
        return None
    ctx.trace.add("scopes", "fail", _refusal, rule.scope_text, granted)
    return d.insufficient_scope(ctx.request.host, rule.scope_text)
