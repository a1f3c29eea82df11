"""Decision: the pipeline's answer, and the denials it can give (status, reason, headers).

Reasons are the stable codes of authz.errors. WWW-Authenticate follows RFC 6750 section 3: no
error code when credentials are missing, `invalid_token` when they are bad, `insufficient_scope`
with the scopes the rule needs. A sender-constrained (DPoP-bound) token is refused with the
`DPoP` scheme of RFC 9449 section 7.1 instead, naming the proof algorithms accepted (`algs`):
`invalid_dpop_proof` when the proof fails, `invalid_token` when the token is presented wrongly.

A Decision is a NamedTuple rather than a frozen dataclass: one is built on every check, often
copied on its way out (a denial located, a dryRun decision marked) and hashed to find its cached
allow answer (see server.convert), and a frozen dataclass sets each of its fields through
object.__setattr__. A tuple is built, copied and hashed in one step, and is as immutable.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from authz import errors

_REALM_UNSAFE = re.compile(r"[^a-z0-9.\-:\[\]*]")


class Decision(NamedTuple):
    allowed: bool
    reason: str
    #: HTTP status of a denial (200 for an allow).
    status: int
    description: str = ""
    policy: str | None = None
    rule: str | None = None
    subject: str | None = None
    #: Allow: headers set on the upstream request (overwriting client-sent ones).
    set_headers: tuple[tuple[str, str], ...] = ()
    #: Allow: headers removed from the upstream request.
    remove_headers: tuple[str, ...] = ()
    #: Headers on the response to the client (denials: WWW-Authenticate; allows: none yet).
    response_headers: tuple[tuple[str, str], ...] = ()
    decision_id: str = ""
    #: Allow: query parameters set (encoded name, encoded value) and removed (keys as sent).
    set_query: tuple[tuple[str, str], ...] = ()
    remove_query: tuple[str, ...] = ()
    #: Allow on a rule that redacts response fields: the waiving scopes the token grants
    #: (Envoy's dynamic metadata takes them to the response filter, see server.extproc).
    scopes: tuple[str, ...] = ()
    #: Allow: the response must go through the ext_proc service (a redaction applies).
    redacts: bool = False
    #: The policy is in dryRun mode: `allowed`/`reason` are the would-be decision, and Envoy
    #: is told to allow (see pipeline.steps.mode).
    dry_run: bool = False
    #: condition_failed: the index of the rule's `when` condition that did not hold.
    condition: int | None = None

    def located(self, *, policy: str | None, rule: str | None, subject: str | None) -> Decision:
        """This denial, saying where it happened and whose (verified) token it was."""
        return self._replace(policy=policy, rule=rule, subject=subject)


def _realm(host: str) -> str:
    return _REALM_UNSAFE.sub("", host)[:253]


def deny(status: int, reason: str, description: str, **extra: object) -> Decision:
    return Decision(False, reason, status, description, **extra)  # type: ignore[arg-type]


def no_policy(host: str) -> Decision:
    return deny(403, errors.NO_POLICY, "no policy protects this host")


def invalid_path(description: str) -> Decision:
    return deny(400, errors.INVALID_PATH, description)


def access_denied() -> Decision:
    return deny(403, errors.ACCESS_DENIED, "no rule of the policy allows this request")


def missing_token(host: str) -> Decision:
    challenge = f'Bearer realm="{_realm(host)}"'
    return deny(
        401,
        errors.MISSING_TOKEN,
        "a bearer token is required",
        response_headers=(("www-authenticate", challenge),),
    )


def invalid_token(host: str, description: str) -> Decision:
    safe = description.replace("\\", "").replace('"', "'")
    challenge = f'Bearer realm="{_realm(host)}", error="invalid_token", error_description="{safe}"'
    return deny(
        401, errors.INVALID_TOKEN, description, response_headers=(("www-authenticate", challenge),)
    )


def sender_denial(host: str, *, proof: bool, description: str, algs: str) -> Decision:
    """401 for a sender-constrained token: a bad proof (`proof`) or a token presented wrongly."""
    code = errors.INVALID_DPOP_PROOF if proof else errors.INVALID_TOKEN
    safe = description.replace("\\", "").replace('"', "'")
    challenge = (
        f'DPoP realm="{_realm(host)}", error="{code}", error_description="{safe}", algs="{algs}"'
    )
    return deny(401, code, description, response_headers=(("www-authenticate", challenge),))


def insufficient_scope(host: str, scope_text: str) -> Decision:
    challenge = f'Bearer realm="{_realm(host)}", error="insufficient_scope", scope="{scope_text}"'
    return deny(
        403,
        errors.INSUFFICIENT_SCOPE,
        "the token does not grant the scopes this request needs",
        response_headers=(("www-authenticate", challenge),),
    )


def condition_failed(rule: str, index: int) -> Decision:
    """403 naming the rule and the condition - never the values compared (they are token data)."""
    return deny(
        403,
        errors.CONDITION_FAILED,
        f"condition when[{index}] of rule {rule!r} does not hold for this request",
        condition=index,
    )


def issuer_unavailable(description: str) -> Decision:
    return deny(
        503, errors.ISSUER_UNAVAILABLE, description, response_headers=(("retry-after", "5"),)
    )


def use_dpop_nonce(host: str, *, nonce: str, algs: str) -> Decision:
    """401 asking the client to retry with the nonce in `DPoP-Nonce` (RFC 9449 section 9)."""
    description = "a DPoP proof with the server's nonce is required"
    challenge = (
        f'DPoP realm="{_realm(host)}", error="{errors.USE_DPOP_NONCE}", '
        f'error_description="{description}", algs="{algs}"'
    )
    return deny(
        401,
        errors.USE_DPOP_NONCE,
        description,
        response_headers=(("www-authenticate", challenge), ("dpop-nonce", nonce)),
    )


def replay_cache_full() -> Decision:
    """503: the DPoP replay cache is full of live proofs; forgetting one would allow its replay."""
    return deny(
        503,
        errors.INTERNAL_ERROR,
        "too many recent DPoP proofs to check this one for replay; retry later",
        response_headers=(("retry-after", "1"),),
    )


def internal_error() -> Decision:
    return deny(
        503, errors.INTERNAL_ERROR, "the authorization service failed; the request was denied"
    )


def ip_denied(description: str) -> Decision:
    return deny(403, errors.IP_DENIED, description)


def rate_limited(
    *, description: str, retry_after: int, headers: tuple[tuple[str, str], ...]
) -> Decision:
    """429 with Retry-After (seconds) and the RateLimit-* headers of the limit that was hit."""
    return deny(
        429,
        errors.RATE_LIMITED,
        description,
        response_headers=(("retry-after", str(retry_after)), *headers),
    )


def ratelimit_unavailable() -> Decision:
    return deny(
        503,
        errors.RATELIMIT_UNAVAILABLE,
        "rate limits cannot be checked right now; the request was denied",
        response_headers=(("retry-after", "1"),),
    )


def blocked(*, protection: str, retry_after: int) -> Decision:
    """403 blocked: the client failed authentication too often; Retry-After is the block's rest."""
    return deny(
        403,
        errors.BLOCKED,
        f"too many failed authentications ({protection}); try again later",
        response_headers=(("retry-after", str(retry_after)),),
    )
