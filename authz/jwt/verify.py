"""Verify a bearer JWT against the issuers a policy trusts.

The signature check is the only expensive step, so its result is cached: an LRU keyed by a
digest of the token (the raw token is never kept), valid only while the issuer's key set is the
one that verified it - a rotated or revoked key invalidates every entry at once through the
provider's `version`. Claim checks (alg allowlist, iss, aud, exp, nbf, iat) are cheap, but a warm
check repeats them for every request of a token: the entry remembers the issuer it last passed
them for and the time window that leaves (from nbf/iat to exp, leeway included), so the next
request for that issuer compares two numbers. A cached token still expires on time, and one
policy's cache entry never satisfies another policy's audience: another issuer, or the window
passed, and the checks run in full again (their error messages come from there).

Tokens that are not a compact JWS ("opaque") are introspected instead when the policy names
an issuer with `introspection` (see jwt.introspector), keyed by the same digest; their answer
goes through the same claim checks. Both kinds then meet the revocation list (jwt.revocation).

Error messages are constants: nothing from the token is echoed to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jwt.algorithms import get_default_algorithms

from authz.errors import KeysUnavailable, TokenError
from authz.jwt.introspection import IntrospectionSpec, IntrospectionUnavailable
from authz.jwt.introspector import INACTIVE, Introspector
from authz.jwt.keys import SUPPORTED_ALGORITHMS, KeySet, VerificationKey
from authz.jwt.nonce import Nonces
from authz.jwt.providers import KeyProvider
from authz.jwt.replay import ReplayCache, SharedReplay
from authz.jwt.revocation import REVOKED, Revocations
from authz.jwt.token import UnverifiedToken, parse_token

_ALGORITHMS = get_default_algorithms()


@dataclass(frozen=True, slots=True)
class IssuerSpec:
    """An issuer as one policy trusts it."""

    issuer: str
    audiences: frozenset[str]
    algorithms: frozenset[str]
    leeway: float
    provider: KeyProvider = field(compare=False, repr=False)
    #: Dotted path of the claim with granted scopes; None = "scope", then "scp".
    scope_claim: tuple[str, ...] | None = None
    #: maxTokenLifetime (seconds): a longer exp - iat, or no iat, is refused.
    max_lifetime: float | None = None
    #: How opaque tokens of this issuer are introspected; None: they are refused.
    introspection: IntrospectionSpec | None = None
    #: requireBoundTokens: a token without `cnf` (neither DPoP- nor certificate-bound) is refused.
    require_bound: bool = False
    #: Algorithms accepted for the DPoP proofs sent with this issuer's tokens.
    dpop_algorithms: frozenset[str] = SUPPORTED_ALGORITHMS
    #: dpopNonce: proofs must carry a nonce the sidecar handed out (RFC 9449 section 9).
    dpop_nonce: bool = False


#: VerifiedToken.alg of a token the issuer vouched for by introspection.
INTROSPECTED = "introspected"


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    claims: Mapping[str, Any]
    issuer: IssuerSpec
    alg: str


@dataclass(slots=True)
class _Entry:
    claims: Mapping[str, Any]
    iss: str
    alg: str
    provider: KeyProvider
    version: int
    #: The last issuer the claims passed every check for, the answer, and from when until
    #: when that answer holds (only exp, nbf and iat depend on the time).
    checked: IssuerSpec | None = None
    verified: VerifiedToken | None = None
    valid_from: float = 0.0
    valid_until: float = 0.0

    def check(self, spec: IssuerSpec, now: float) -> VerifiedToken:
        verified = self.verified
        if spec is self.checked and self.valid_from <= now <= self.valid_until:
            assert verified is not None
            return verified
        verified = _check_claims(self.claims, spec, self.alg, now)
        self.checked, self.verified = spec, verified
        self.valid_from, self.valid_until = _window(self.claims, spec)
        return verified


class Verifier:
    """Checks tokens; one per process, shared by every policy. It also holds what checking a
    sender-constrained token needs across requests: the DPoP proof window, the replay cache and,
    with Redis, the replay store shared by the replicas (see authz.jwt.dpop, replay, sharedreplay)."""

    def __init__(
        self,
        *,
        max_token_bytes: int = 8192,
        cache_size: int = 10_000,
        unknown_kid_wait: float = 2.0,
        introspector: Introspector | None = None,
        revocations: Revocations | None = None,
        dpop_window: float = 60.0,
        replay_cache_size: int = 100_000,
        shared_replay: SharedReplay | None = None,
        nonce_secret: bytes | None = None,
    ) -> None:
        self._introspector = introspector
        self.revocations = revocations if revocations is not None else Revocations()
        self.dpop_window = dpop_window
        self.nonces = Nonces(nonce_secret or secrets.token_bytes(32), lifetime=dpop_window)
        self.replay = ReplayCache(size=replay_cache_size)
        self.shared_replay = shared_replay
        self._max_bytes = max_token_bytes
        self._cache_size = cache_size
        self._unknown_kid_wait = unknown_kid_wait
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()

    def cached(
        self, token: str, issuers: Mapping[str, IssuerSpec], *, now: float
    ) -> VerifiedToken | None:
        """The verified token when its signature was checked before (the cache), at once;
        None when it has to be checked (or introspected) first: `verify` does that. Raises
        TokenError as `verify` does."""
        return self._from_cache(self._digest(token), issuers, now)

    async def verify(
        self, token: str, issuers: Mapping[str, IssuerSpec], *, now: float
    ) -> VerifiedToken:
        """Return the verified token, or raise TokenError (401) / KeysUnavailable (503)."""
        digest = self._digest(token)
        verified = self._from_cache(digest, issuers, now)
        if verified is not None:
            return verified
        if self._introspector is not None and token.count(".") != 2:
            introspected = [s for s in issuers.values() if s.introspection is not None]
            if introspected:
                return await self._introspect(token, digest, introspected, now)
        parsed = parse_token(token, max_bytes=self._max_bytes)
        iss = parsed.claims.get("iss")
        spec = issuers.get(iss) if isinstance(iss, str) else None
        if spec is None:
            raise TokenError("token issuer is not trusted here")
        if parsed.alg not in spec.algorithms:
            raise TokenError("token algorithm is not allowed")
        version = spec.provider.version
        key = await self._find_key(parsed, spec.provider)
        if parsed.alg not in key.algorithms:
            raise TokenError("token algorithm does not fit the signing key")
        if not _signature_ok(parsed, key):
            raise TokenError("token signature is invalid")
        entry = _Entry(parsed.claims, spec.issuer, parsed.alg, spec.provider, version)
        verified = entry.check(spec, now)
        if self._cache_size > 0:
            self._cache[digest] = entry
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if self.revocations.active:
            self._check_revoked(verified, now)
        return verified

    def _digest(self, token: str) -> bytes:
        if len(token) > self._max_bytes:
            raise TokenError(f"token is larger than {self._max_bytes} bytes")
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def _from_cache(
        self, digest: bytes, issuers: Mapping[str, IssuerSpec], now: float
    ) -> VerifiedToken | None:
        entry = self._cache.get(digest)
        if entry is None:
            return None
        spec = issuers.get(entry.iss)
        if spec is None:
            raise TokenError("token issuer is not trusted here")
        if spec.provider is not entry.provider or spec.provider.version != entry.version:
            return None
        self._cache.move_to_end(digest)
        verified = entry.check(spec, now)
        if self.revocations.active:
            self._check_revoked(verified, now)
        return verified

    def _check_revoked(self, verified: VerifiedToken, now: float) -> None:
        if self.revocations.refuses(verified.claims, verified.issuer.issuer, now):
            raise TokenError(REVOKED)

    async def _introspect(
        self, token: str, digest: bytes, specs: list[IssuerSpec], now: float
    ) -> VerifiedToken:
        """Ask each issuer that introspects, in the policy's order, until one says active."""
        assert self._introspector is not None
        unavailable: IntrospectionUnavailable | None = None
        for spec in specs:
            assert spec.introspection is not None
            try:
                claims = await self._introspector.claims(token, digest, spec.introspection, now=now)
            except IntrospectionUnavailable as exc:
                unavailable = exc
                continue
            except TokenError:
                continue
            iss = claims.get("iss", spec.issuer)
            if iss != spec.issuer:
                raise TokenError("token issuer is not trusted here")
            verified = _check_standard(claims, spec, INTROSPECTED, now)
            if self.revocations.active:
                self._check_revoked(verified, now)
            return verified
        if unavailable is not None:
            raise unavailable
        raise TokenError(INACTIVE)

    async def _find_key(self, token: UnverifiedToken, provider: KeyProvider) -> VerificationKey:
        keys = provider.keys
        if keys is None:
            # A policy that just appeared has its first fetch running (a few ms): join it,
            # bounded like an unknown kid's refetch, instead of answering 503 meanwhile.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(provider.refresh_for_unknown_kid(), self._unknown_kid_wait)
            keys = provider.keys
        if keys is None:
            raise KeysUnavailable("the issuer's signing keys are not available yet")
        kid = token.kid
        if kid is None:
            fitting = [k for k in keys.keys if token.alg in k.algorithms]
            if len(fitting) != 1:
                raise TokenError(
                    "token has no kid and the issuer has no single key for its algorithm"
                )
            return fitting[0]
        key = _with_kid(keys, kid, token.alg)
        if key is None:
            # Possibly a rotation we have not seen yet: refetch (single-flight, rate-limited).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(provider.refresh_for_unknown_kid(), self._unknown_kid_wait)
            refreshed = provider.keys
            key = _with_kid(refreshed, kid, token.alg) if refreshed is not None else None
        if key is None:
            raise TokenError("no signing key of the issuer matches the token's kid")
        return key

    def clear(self) -> None:
        self._cache.clear()


def _with_kid(keys: KeySet, kid: str, alg: str) -> VerificationKey | None:
    """The key with this kid; when several share it (e.g. an RSA and an EC key during a
    migration), the one that fits the token's algorithm."""
    first = keys.by_kid.get(kid)
    if first is None or alg in first.algorithms:
        return first
    for key in keys.keys:
        if key.kid == kid and alg in key.algorithms:
            return key
    return first


def _signature_ok(token: UnverifiedToken, key: VerificationKey) -> bool:
    try:
        return bool(_ALGORITHMS[token.alg].verify(token.signing_input, key.key, token.signature))
    except Exception:  # malformed signatures raise inside cryptography; all mean "invalid"
        return False


def _number(value: object) -> float | None:
    """A claim as a finite float; None when it is not a number or no float can hold it
    (JSON integers are unbounded: 10**400 is valid JSON, and float() of it overflows)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _window(claims: Mapping[str, Any], spec: IssuerSpec) -> tuple[float, float]:
    """From when until when claims that just passed `_check_standard` for `spec` still pass."""
    start = -math.inf
    for name in ("nbf", "iat"):
        value = _number(claims.get(name))
        if value is not None:
            start = max(start, value - spec.leeway)
    exp = _number(claims.get("exp"))
    return start, (exp + spec.leeway if exp is not None else -math.inf)


def _check_claims(
    claims: Mapping[str, Any], spec: IssuerSpec, alg: str, now: float
) -> VerifiedToken:
    if alg not in spec.algorithms:
        raise TokenError("token algorithm is not allowed")
    return _check_standard(claims, spec, alg, now)


def _check_standard(
    claims: Mapping[str, Any], spec: IssuerSpec, alg: str, now: float
) -> VerifiedToken:
    """exp, nbf, iat, the lifetime bound and aud: the same for JWTs and introspected tokens."""
    if "exp" not in claims:
        raise TokenError("token has no exp claim")
    exp = _number(claims["exp"])
    if exp is None:
        raise TokenError("token exp claim is not a number")
    if now > exp + spec.leeway:
        raise TokenError("token has expired")
    for name, message in (
        ("nbf", "token is not valid yet"),
        ("iat", "token was issued in the future"),
    ):
        if name in claims:
            value = _number(claims[name])
            if value is None:
                raise TokenError(f"token {name} claim is not a number")
            if value > now + spec.leeway:
                raise TokenError(message)
    if spec.max_lifetime is not None:
        iat = _number(claims.get("iat"))
        if iat is None:
            raise TokenError("token has no iat claim, and the issuer's tokens must be short-lived")
        if exp - iat > spec.max_lifetime:
            raise TokenError("token lifetime is longer than the issuer's maxTokenLifetime")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(a, str) and a in spec.audiences for a in audiences):
        raise TokenError("token audience is not accepted here")
    return VerifiedToken(claims=claims, issuer=spec, alg=alg)
