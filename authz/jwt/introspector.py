"""Introspect opaque tokens without making the issuer part of every request.

Per token (keyed by a SHA-256 digest, never the token itself):

- answers are cached in bounded LRUs: an active one for the policy's cacheSeconds and never
  past the token's `exp`, an inactive one briefly and in an LRU of its own (a flood of made-up
  tokens neither reaches the issuer twice per token nor evicts the active answers); an answer
  too large to keep many of is used once and not cached, so the cache's memory is bounded too;
- one call at a time (single flight): concurrent checks with the same token share the answer.

Per endpoint: a token bucket bounds the call rate, and a circuit breaker stops calling after a
run of failures (a dead issuer costs no latency per request) and probes again later. Across
endpoints: a bound on calls in flight and on distinct tokens waiting. Every refusal of these
bounds, a timeout and any failure of the endpoint is IntrospectionUnavailable - 503
issuer_unavailable, fail closed - while cached answers keep serving until they expire.

Time is the check's `now` (wall-clock seconds), so tests drive expiry and the breaker by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from authz.errors import TokenError
from authz.jwt.introspection import (
    IntrospectionSpec,
    IntrospectionUnavailable,
    discover_endpoint,
    introspect,
)
from authz.jwt.secrets import SecretReader, SecretUnavailable
from authz.settings import IntrospectionSettings
from authz.telemetry import tracing

log = logging.getLogger(__name__)

#: Told about every outcome: ("active" | "inactive" | "error" | "cached" | "shed").
IntrospectionObserver = Callable[[str], None]

INACTIVE = "token is not active"
#: How long a discovered introspection endpoint is trusted before it is looked up again.
_DISCOVERY_TTL = 300.0


@dataclass(slots=True)
class _Entry:
    key: bytes
    until: float
    #: The active answer's members; None for an inactive token.
    claims: Mapping[str, Any] | None


@dataclass(slots=True)
class _Endpoint:
    """Rate budget and breaker state of one endpoint."""

    tokens: float
    refilled: float
    failures: int = 0
    open_until: float = float("-inf")
    last_error: str | None = None


def _exp(answer: Mapping[str, Any]) -> float | None:
    exp = answer.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


class Introspector:
    """One per process, shared by every policy; lives on the event loop that answers checks."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        secrets: SecretReader,
        settings: IntrospectionSettings,
        observe: IntrospectionObserver | None = None,
    ) -> None:
        self._session = session
        self._secrets = secrets
        self._settings = settings
        self._observe = observe or (lambda _result: None)
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        #: Inactive answers apart: a flood of made-up tokens must not evict the active ones.
        self._negative: OrderedDict[bytes, _Entry] = OrderedDict()
        #: Keyed by endpoint and token: two issuers' answers about one token are never shared.
        self._inflight: dict[tuple[bytes, bytes], asyncio.Task[Mapping[str, Any] | None]] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._discovered: dict[str, tuple[float, str]] = {}
        self._calls = asyncio.Semaphore(settings.max_concurrent_calls)

    async def claims(
        self, token: str, digest: bytes, spec: IntrospectionSpec, *, now: float
    ) -> Mapping[str, Any]:
        """The active token's members, or TokenError (inactive) / IntrospectionUnavailable."""
        entry = self._cache.get(digest)
        if entry is not None and entry.key == spec.cache_key and entry.until > now:
            self._cache.move_to_end(digest)
            self._observe("cached")
            assert entry.claims is not None
            return entry.claims
        entry = self._negative.get(digest)
        if entry is not None and entry.key == spec.cache_key and entry.until > now:
            self._observe("cached")
            raise TokenError(INACTIVE)
        key = (spec.cache_key, digest)
        flight = self._inflight.get(key)
        if flight is None:
            self._admit(spec, now)
            flight = asyncio.ensure_future(self._call(token, digest, spec, now))
            self._inflight[key] = flight
            flight.add_done_callback(lambda task: self._landed(key, task))
        # Shielded: a check that gives up (Envoy's timeout) leaves the call to the others.
        answer = await asyncio.shield(flight)
        if answer is None:
            raise TokenError(INACTIVE)
        return answer

    def _landed(
        self, key: tuple[bytes, bytes], task: asyncio.Task[Mapping[str, Any] | None]
    ) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up meanwhile

    def _admit(self, spec: IntrospectionSpec, now: float) -> None:
        """Refuse a new call that a bound forbids (raises IntrospectionUnavailable)."""
        settings = self._settings
        if len(self._inflight) >= settings.max_pending:
            self._observe("shed")
            raise IntrospectionUnavailable("too many tokens are waiting for introspection")
        state = self._endpoint(spec.breaker_key, now)
        if state.open_until > now:
            self._observe("shed")
            raise IntrospectionUnavailable(
                f"introspection at {spec.breaker_key} is failing: {state.last_error}"
            )
        elapsed = max(0.0, now - state.refilled)  # a clock stepped back refills nothing
        state.tokens = min(float(settings.call_burst), state.tokens + elapsed * settings.call_rate)
        state.refilled = max(now, state.refilled)
        if state.tokens < 1:
            self._observe("shed")
            raise IntrospectionUnavailable(f"introspection at {spec.breaker_key} is rate-limited")
        state.tokens -= 1

    def _endpoint(self, key: str, now: float) -> _Endpoint:
        state = self._endpoints.get(key)
        if state is None:
            if len(self._endpoints) >= 4096:  # endpoints come from policies; bounded anyway
                self._endpoints.clear()
            state = self._endpoints[key] = _Endpoint(float(self._settings.call_burst), now)
        return state

    async def _call(
        self, token: str, digest: bytes, spec: IntrospectionSpec, now: float
    ) -> Mapping[str, Any] | None:
        state = self._endpoint(spec.breaker_key, now)
        # The span names the endpoint only: never the token, the secret or the answer.
        with tracing.span("introspection", {"authz.introspection.endpoint": spec.breaker_key}):
            return await self._call_traced(token, digest, spec, now, state)

    async def _call_traced(
        self, token: str, digest: bytes, spec: IntrospectionSpec, now: float, state: _Endpoint
    ) -> Mapping[str, Any] | None:
        settings = self._settings
        try:
            async with asyncio.timeout(settings.timeout), self._calls:
                secret = await self._secrets.read(spec.secret, now=now)
                endpoint = spec.endpoint or await self._discover(spec.issuer, now)
                answer, size = await introspect(
                    self._session,
                    endpoint,
                    token,
                    client_id=spec.client_id,
                    secret=secret,
                    limit=settings.max_response_bytes,
                )
        except Exception as exc:
            self._failed(spec, state, now, exc)
            tracing.mark_error(state.last_error or "introspection failed")
            raise IntrospectionUnavailable(state.last_error or "introspection failed") from None
        state.failures = 0
        active = answer.get("active") is True
        self._observe("active" if active else "inactive")
        if size <= settings.max_cached_answer_bytes:
            self._remember(digest, spec, answer if active else None, now)
        return answer if active else None

    def _failed(
        self, spec: IntrospectionSpec, state: _Endpoint, now: float, exc: Exception
    ) -> None:
        if isinstance(exc, IntrospectionUnavailable | SecretUnavailable):
            error = str(exc)
        elif isinstance(exc, TimeoutError):
            error = (
                f"introspection at {spec.breaker_key} took longer than {self._settings.timeout}s"
            )
        else:  # connection errors: their text names the host, never the request body
            error = f"introspection at {spec.breaker_key} failed: {type(exc).__name__}"
        self._observe("error")
        if error != state.last_error:
            log.warning("%s (answering 503 issuer_unavailable)", error)
        state.last_error = error
        state.failures += 1
        if state.failures >= self._settings.breaker_threshold:
            state.open_until = now + self._settings.breaker_open
            state.failures = 0

    def _remember(
        self, digest: bytes, spec: IntrospectionSpec, claims: Mapping[str, Any] | None, now: float
    ) -> None:
        ttl = spec.cache_seconds
        if claims is None:
            ttl = min(ttl, self._settings.negative_cache_seconds)
        until = now + ttl
        exp = _exp(claims) if claims is not None else None
        if exp is not None:
            until = min(until, exp)
        if until <= now or self._settings.cache_size <= 0:
            return
        cache, size, other = self._cache, self._settings.cache_size, self._negative
        if claims is None:
            cache, size, other = self._negative, self._settings.negative_cache_size, self._cache
        other.pop(digest, None)  # the newer answer replaces an older one of the other kind
        cache[digest] = _Entry(spec.cache_key, until, claims)
        cache.move_to_end(digest)
        while len(cache) > size:
            cache.popitem(last=False)

    async def _discover(self, issuer: str, now: float) -> str:
        known = self._discovered.get(issuer)
        if known is not None and known[0] > now:
            return known[1]
        endpoint = await discover_endpoint(
            self._session,
            issuer,
            limit=self._settings.max_response_bytes,
        )
        if len(self._discovered) >= 4096:
            self._discovered.clear()
        self._discovered[issuer] = (now + _DISCOVERY_TTL, endpoint)
        return endpoint

    def forget(self) -> None:
        """Drop every cached answer (tests, and a revocation that must bite at once)."""
        self._cache.clear()
        self._negative.clear()

    @property
    def cached(self) -> int:
        return len(self._cache) + len(self._negative)
