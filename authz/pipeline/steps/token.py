"""The token step: the access token, verified against the policy's issuers.

The token comes as `Authorization: Bearer` or, for a DPoP-bound token, `Authorization: DPoP`;
this step verifies it the same way either way and leaves the scheme for the sender step, which
checks that the token was presented by its holder.

No token is fine on a rule that allows anonymous requests and 401 missing_token elsewhere; a
token that is present is always verified, even on an anonymous rule - a bad token is refused,
never ignored. A bad token is 401 invalid_token with the reason in the challenge; keys the
issuer has not served yet are 503 issuer_unavailable (the token may be fine: retry), not 401.

The verifier also introspects opaque tokens of issuers that say so, refuses tokens living
longer than their issuer's maxTokenLifetime and revoked ones (jwt.verify): all of it happens
here, before anything trusts the claims, and ends the same way - 401, or 503 when the issuer's
introspection endpoint fails.

Only verification may wait (for keys an issuer has not served yet, an introspection answer), and
only for a token the verifier has not checked before: a cached token is answered synchronously,
and the step hands the loop a coroutine only when there is a signature to check.
"""

from __future__ import annotations

from authz.errors import KeysUnavailable, TokenError
from authz.jwt.extract import credentials
from authz.jwt.verify import VerifiedToken
from authz.pipeline import decision as d
from authz.pipeline.context import Context, StepResult
from authz.pipeline.decision import Decision


def authenticate(ctx: Context) -> StepResult:
    found = credentials(ctx.request.headers)
    if found is not None:
        ctx.scheme = found[0]
        try:
            verified = ctx.verifier.cached(found[1], ctx.policy.issuers, now=ctx.now)
        except TokenError as exc:
            return _refused(ctx, exc)
        if verified is None:
            return _verify(ctx, found[1])
        _accepted(ctx, verified)
        return None
    if ctx.rule.anonymous:
        ctx.trace.add("token", "skip", "no bearer token; the rule allows anonymous requests")
        return None
    ctx.trace.add("token", "fail", "no bearer token in the Authorization header")
    return d.missing_token(ctx.request.host)


async def _verify(ctx: Context, token: str) -> Decision | None:
    try:
        verified = await ctx.verifier.verify(token, ctx.policy.issuers, now=ctx.now)
    except (TokenError, KeysUnavailable) as exc:
        return _refused(ctx, exc)
    _accepted(ctx, verified)
    return None


def _refused(ctx: Context, exc: TokenError | KeysUnavailable) -> Decision:
    ctx.trace.add("token", "fail", "{}", exc)
    if isinstance(exc, KeysUnavailable):
        return d.issuer_unavailable(str(exc))
    return d.invalid_token(ctx.request.host, str(exc))


def _accepted(ctx: Context, verified: VerifiedToken) -> None:
    ctx.token = verified
    ctx.claims = verified.claims
    sub = verified.claims.get("sub")
    ctx.subject = sub if isinstance(sub, str) else None
    ctx.trace.add("token", "pass", "valid {} token from {}", verified.alg, verified.issuer.issuer)
