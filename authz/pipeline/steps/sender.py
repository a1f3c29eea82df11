"""The sender step: a sender-constrained token is accepted only from the client it was issued to.

A verified token whose `cnf` names a key (`jkt`, RFC 9449 DPoP) must come as
`Authorization: DPoP` with one `DPoP` proof signed by that key for this very request (method,
URL without query and fragment, a fresh `iat`, an unused `jti`, `ath` = hash of the token). A
token whose `cnf` names a certificate (`x5t#S256`, RFC 8705) must come over a connection whose
client certificate, as Envoy forwards it, has that thumbprint. A token whose binding cannot be
checked (an unknown confirmation method, a malformed `cnf`) is refused, never treated as a plain
bearer token, and so is a DPoP-bound token sent as `Bearer` - the downgrade a thief would try.
An issuer with `requireBoundTokens` has its unbound tokens refused too.

The step runs right after `token`, before anything trusts the claims: a copied token fails
before its scopes are considered. Unbound bearer tokens (the common case) cost one dict lookup.

The proof's URL is compared in a normal form: scheme and host lower-cased, default ports
dropped, the path normalized like the request's (see steps.path) and compared with it. The
scheme is the one Envoy saw, or with --trusted-proxy-hops N the first X-Forwarded-Proto value
(a TLS terminator in front of Envoy).
"""

from __future__ import annotations

import urllib.parse

from authz.errors import PathError, ProofError, TokenError
from authz.jwt.certbound import certificate_thumbprint
from authz.jwt.dpop import Proof, read_proof
from authz.jwt.extract import DPOP, credentials
from authz.jwt.replay import SharedReplay, Use, proof_key
from authz.jwt.verify import IssuerSpec
from authz.pipeline import decision as d
from authz.pipeline.context import Context, StepResult
from authz.pipeline.decision import Decision
from authz.pipeline.steps.path import normalize_path

_DEFAULT_PORTS = {"http": 80, "https": 443}
X5T_S256 = "x5t#S256"


def check_sender(ctx: Context) -> StepResult:
    token = ctx.token
    if token is None:
        return None
    cnf = token.claims.get("cnf")
    spec = token.issuer
    if cnf is None:
        if spec.require_bound:
            return _fail(ctx, "this issuer's tokens must be sender-constrained")
        if ctx.scheme == DPOP:
            return _wrong_scheme(ctx, spec, "the token is not DPoP-bound")
        return None
    if not isinstance(cnf, dict):
        return _fail(ctx, "token cnf claim is malformed")
    jkt, x5t = cnf.get("jkt"), cnf.get(X5T_S256)
    if jkt is None and x5t is None:
        return _fail(ctx, "the token's binding cannot be checked here")
    if x5t is not None:
        denial = _check_certificate(ctx, x5t)
        if denial is not None:
            return denial
    if jkt is not None:
        return _check_dpop(ctx, spec, jkt)
    if ctx.scheme == DPOP:
        return _wrong_scheme(ctx, spec, "the token is not DPoP-bound")
    return None


def _fail(ctx: Context, description: str) -> Decision:
    ctx.trace.add("sender", "fail", "{}", description)
    return d.invalid_token(ctx.request.host, description)


def _wrong_scheme(ctx: Context, spec: IssuerSpec, description: str) -> Decision:
    ctx.trace.add("sender", "fail", "{}", description)
    return d.sender_denial(ctx.request.host, proof=False, description=description, algs=_algs(spec))


def _algs(spec: IssuerSpec) -> str:
    return " ".join(sorted(spec.dpop_algorithms))


def _check_certificate(ctx: Context, x5t: object) -> Decision | None:
    if not isinstance(x5t, str):
        return _fail(ctx, "token cnf claim is malformed")
    try:
        presented = certificate_thumbprint(ctx.request.peer_certificate)
    except TokenError as exc:
        return _fail(ctx, str(exc))
    if presented != x5t:
        return _fail(ctx, "the client certificate is not the one the token is bound to")
    ctx.trace.add("sender", "pass", "the client certificate matches the token")
    return None


def _check_dpop(ctx: Context, spec: IssuerSpec, jkt: object) -> StepResult:
    if not isinstance(jkt, str):
        return _fail(ctx, "token cnf claim is malformed")
    if ctx.scheme != DPOP:
        return _wrong_scheme(ctx, spec, "a DPoP-bound token must use the DPoP scheme")
    found = credentials(ctx.request.headers)
    value = ctx.request.headers.get("dpop")
    if found is None or value is None:
        return _bad_proof(ctx, spec, "no DPoP proof")
    verifier = ctx.verifier
    try:
        proof = read_proof(
            value,
            access_token=found[1],
            algorithms=spec.dpop_algorithms,
            now=ctx.now,
            window=verifier.dpop_window,
        )
        if proof.thumbprint != jkt:
            raise ProofError("DPoP proof key is not the one the token is bound to")
        if proof.htm != ctx.request.method:
            raise ProofError("DPoP proof htm is not the request method")
        if not _same_url(proof.htu, ctx):
            raise ProofError("DPoP proof htu is not the request URL")
    except ProofError as exc:
        return _bad_proof(ctx, spec, str(exc))
    if spec.dpop_nonce:
        nonce = verifier.nonces.current(ctx.now)
        if not verifier.nonces.valid(proof.nonce, ctx.now):
            ctx.trace.add("sender", "fail", "the DPoP proof has no current nonce")
            return d.use_dpop_nonce(ctx.request.host, nonce=nonce, algs=_algs(spec))
        ctx.response_headers = (*ctx.response_headers, ("dpop-nonce", nonce))
    if not ctx.consume:  # Explain: look, do not use the proof up
        if verifier.replay.seen(proof.thumbprint, proof.jti, now=ctx.now):
            return _bad_proof(ctx, spec, "DPoP proof was already used")
    else:
        use = verifier.replay.use(
            proof.thumbprint, proof.jti, expires=proof.iat + verifier.dpop_window, now=ctx.now
        )
        if use is Use.REPLAY:
            return _bad_proof(ctx, spec, "DPoP proof was already used")
        if use is Use.FULL:
            ctx.trace.add("sender", "fail", "the DPoP replay cache is full")
            return d.replay_cache_full()
        if verifier.shared_replay is not None:
            return _claim_shared(ctx, spec, verifier.shared_replay, proof)
    ctx.trace.add("sender", "pass", "DPoP proof by the token's key for this request")
    return None


async def _claim_shared(
    ctx: Context, spec: IssuerSpec, shared: SharedReplay, proof: Proof
) -> Decision | None:
    """New to this process: claim the proof in the store the replicas share."""
    ttl = proof.iat + ctx.verifier.dpop_window - ctx.now
    first = await shared.first_use(proof_key(proof.thumbprint, proof.jti), ttl=ttl)
    if first is False:
        return _bad_proof(ctx, spec, "DPoP proof was already used")
    ctx.trace.add("sender", "pass", "DPoP proof by the token's key for this request")
    return None


def _bad_proof(ctx: Context, spec: IssuerSpec, description: str) -> Decision:
    ctx.trace.add("sender", "fail", "{}", description)
    return d.sender_denial(ctx.request.host, proof=True, description=description, algs=_algs(spec))


def _origin(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) in normal form; None when the parts do not make a URL origin."""
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{netloc}/")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or "@" in netloc:
        return None
    scheme = scheme.lower()
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return scheme, host.lower().rstrip("."), port


def _request_scheme(ctx: Context) -> str:
    forwarded = ctx.request.headers.get("x-forwarded-proto")
    if ctx.trusted_proxy_hops > 0 and forwarded:
        return forwarded.split(",")[0].strip()
    return ctx.request.scheme


def _same_url(htu: str, ctx: Context) -> bool:
    try:
        claimed = urllib.parse.urlsplit(htu)
    except ValueError:
        return False
    claimed_origin = _origin(claimed.scheme, claimed.netloc)
    request = ctx.request
    actual_origin = _origin(_request_scheme(ctx), request.authority or request.host)
    if claimed_origin is None or actual_origin is None or claimed_origin != actual_origin:
        return False
    try:
        return normalize_path(claimed.path or "/") == ctx.path
    except PathError:
        return False
