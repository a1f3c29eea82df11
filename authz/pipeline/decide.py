"""Evaluate one request against one snapshot: the whole decision, start to finish.

The server takes the current snapshot once per check and passes it in, so a decision never
mixes two policy versions. Every failure here is a deny with a stable reason; exceptions that
are not AuthzErrors are the server's to turn into a deny (see server.servicer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from authz import errors
from authz.errors import KeysUnavailable, PathError, TokenError
from authz.jwt.extract import bearer_token
from authz.jwt.verify import VerifiedToken, Verifier
from authz.pipeline import decision as d
from authz.pipeline.claims import claim_at, granted_scopes, header_value
from authz.pipeline.decision import Decision
from authz.pipeline.ipfilter import check_source_ip, client_address
from authz.pipeline.paths import normalize_path
from authz.pipeline.ratelimits import apply_rate_limits, hits_for, needs_address
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.model import CompiledPolicy, Rule
from authz.policy.snapshot import Snapshot
from authz.policy.traffic import IPAddress
from authz.ratelimit.limiter import Limiter


async def decide(
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
    """The decision for one request. `limiter` serves the rules' rate limits (a rule with limits
    and no limiter is denied: internal_error); `consume=False` evaluates them without counting
    (Explain). `trusted_proxy_hops` picks the client address (see pipeline.ipfilter)."""
    policy = snapshot.lookup(request.host)
    if policy is None:
        if trace is not None:
            trace.add("host", "fail", f"no policy claims host {request.host!r}")
        return d.no_policy(request.host)
    if trace is not None:
        trace.add("host", "pass", f"{request.host!r} -> policy {policy.key}")
    address: IPAddress | None = None
    if policy.source_ips is not None:
        address = client_address(request, trusted_proxy_hops=trusted_proxy_hops)
        denied = check_source_ip(
            policy.source_ips, address, trusted_proxy_hops=trusted_proxy_hops, trace=trace
        )
        if denied is not None:
            return denied.located(policy=policy.key, rule=None)
    try:
        path = normalize_path(request.raw_path)
    except PathError as exc:
        if trace is not None:
            trace.add("path", "fail", str(exc))
        return d.invalid_path(str(exc)).located(policy=policy.key, rule=None)
    if trace is not None:
        trace.add("path", "pass", f"normalized to {path!r}")
    rule = _match(policy.rules, request.method, path)
    if rule is None:
        if trace is not None:
            trace.add("rule", "fail", f"no rule matches {request.method} {path}")
        return d.access_denied().located(policy=policy.key, rule=None)
    if trace is not None:
        trace.add("rule", "pass", f"rule {rule.name!r} matches {request.method} {path}")
    result = await _authenticate(policy, rule, request, verifier=verifier, now=now, trace=trace)
    if isinstance(result, Decision):
        return result.located(policy=policy.key, rule=rule.name)
    claims: Mapping[str, Any] = result.claims if result is not None else {}
    scope_claim = result.issuer.scope_claim if result is not None else None
    if rule.all_of or rule.any_of:
        granted = granted_scopes(claims, scope_claim)
        missing = rule.all_of - granted
        if missing or (rule.any_of and not (rule.any_of & granted)):
            if trace is not None:
                trace.add(
                    "scopes",
                    "fail",
                    f"needs {rule.scope_text!r}; token grants {' '.join(sorted(granted))!r}",
                )
            return replace(  # the token was valid: the log may say whose request it was
                d.insufficient_scope(request.host, rule.scope_text), subject=_subject(claims)
            ).located(policy=policy.key, rule=rule.name)
        if trace is not None:
            trace.add("scopes", "pass", f"token grants {rule.scope_text!r}")
    elif trace is not None:
        trace.add("scopes", "skip", "the rule requires no scopes")
    if not rule.rate_limits:  # (no trace step: policies without limits read as before)
        return _allow(policy, rule, claims, trace)
    if limiter is None:
        if trace is not None:
            trace.add("ratelimit", "fail", "the rule has rate limits but no limiter was given")
        return d.internal_error().located(policy=policy.key, rule=rule.name)
    if address is None and needs_address(rule):
        address = client_address(request, trusted_proxy_hops=trusted_proxy_hops)
    hits = hits_for(rule, claims=claims, request=request, address=address)
    limited = await apply_rate_limits(
        policy, rule, hits, limiter=limiter, now=now, consume=consume, trace=trace
    )
    if isinstance(limited, Decision):
        return replace(limited, subject=_subject(claims)).located(policy=policy.key, rule=rule.name)
    return replace(_allow(policy, rule, claims, trace), response_headers=limited)


def _subject(claims: Mapping[str, Any]) -> str | None:
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


def _match(rules: tuple[Rule, ...], method: str, path: str) -> Rule | None:
    for rule in rules:
        if rule.matches(method, path):
            return rule
    return None


async def _authenticate(
    policy: CompiledPolicy,
    rule: Rule,
    request: CheckInput,
    *,
    verifier: Verifier,
    now: float,
    trace: Trace | None,
) -> VerifiedToken | Decision | None:
    """The verified token; None for an anonymous request without one; or a denial."""
    token = bearer_token(request.headers)
    if token is None:
        if rule.anonymous:
            if trace is not None:
                trace.add("token", "skip", "no bearer token; the rule allows anonymous requests")
            return None
        if trace is not None:
            trace.add("token", "fail", "no bearer token in the Authorization header")
        return d.missing_token(request.host)
    try:
        verified = await verifier.verify(token, policy.issuers, now=now)
    except TokenError as exc:
        if trace is not None:
            trace.add("token", "fail", str(exc))
        return d.invalid_token(request.host, str(exc))
    except KeysUnavailable as exc:
        if trace is not None:
            trace.add("token", "fail", str(exc))
        return d.issuer_unavailable(str(exc))
    if trace is not None:
        trace.add("token", "pass", f"valid {verified.alg} token from {verified.issuer.issuer}")
    return verified


def _allow(
    policy: CompiledPolicy, rule: Rule, claims: Mapping[str, Any], trace: Trace | None
) -> Decision:
    set_headers: list[tuple[str, str]] = []
    remove_headers: list[str] = list(policy.remove_headers)
    for template in policy.set_headers:
        value = (
            template.value
            if template.claim is None
            else header_value(claim_at(claims, template.claim))
        )
        if value is None:
            remove_headers.append(template.name)
        else:
            set_headers.append((template.name, value))
    sub = claims.get("sub")
    if trace is not None:
        trace.add(
            "response",
            "info",
            f"set {[n for n, _ in set_headers]}, remove {remove_headers}",
        )
    return Decision(
        True,
        errors.ALLOWED,
        200,
        policy=policy.key,
        rule=rule.name,
        subject=sub if isinstance(sub, str) else None,
        set_headers=tuple(set_headers),
        remove_headers=tuple(remove_headers),
    )
