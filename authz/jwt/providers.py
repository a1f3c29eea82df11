"""Key providers: keep each issuer's current keys in memory, fetched off the check path.

The check path only reads `provider.keys` (never blocks on I/O), with one exception that makes
key rotation work without a restart: a token naming a kid the provider does not know triggers
one refetch (single-flight, at most once per `unknown_kid_min_interval` per source) that the
check may await briefly. A failed fetch keeps the last good keys; before the first success
`keys` is None and checks needing them answer 503, not 401 - the token may be fine.

`KeyRegistry` shares one provider per `KeySource` across policies and snapshots and stops the
ones no snapshot uses any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Protocol

import aiohttp

from authz.jwt.keys import KeySet, parse_jwks
from authz.jwt.sources import (
    KeySource,
    KeySourceKind,
    check_fetch_url,
    discovery_url,
    read_answer,
)
from authz.lifecycle import Background, Guarded
from authz.settings import JwksSettings
from authz.telemetry import labels, tracing

log = logging.getLogger(__name__)

#: Told about every JWKS fetch: (issuer or JWKS URL, labels.FETCH_OK | labels.FETCH_ERROR).
FetchObserver = Callable[[str, str], None]


class KeyProvider(Protocol):
    """What the verifier needs from an issuer's key source."""

    source: KeySource

    @property
    def keys(self) -> KeySet | None:
        """The current keys, or None before the first successful load."""

    @property
    def version(self) -> int:
        """Increases whenever the usable keys change (cached verifications become stale)."""

    @property
    def last_error(self) -> str | None:
        """Why the last load failed, if it did."""

    async def refresh_for_unknown_kid(self) -> None:
        """Refetch now if allowed (single-flight, rate-limited); return when done or skipped."""


#: Parsed inline key sets by their canonical JSON, while any provider holds them: policies
#: (and binders) naming the same inline JWKS share one KeySet instead of parsing it again.
_inline_key_sets: weakref.WeakValueDictionary[str, KeySet] = weakref.WeakValueDictionary()
_inline_lock = threading.Lock()


def _inline_keys(location: str) -> KeySet:
    with _inline_lock:
        found = _inline_key_sets.get(location)
    if found is None:
        found = parse_jwks(json.loads(location))
        with _inline_lock:
            found = _inline_key_sets.setdefault(location, found)
    return found


class StaticKeys:
    """Keys given inline in a policy. Parsing errors surface at policy compile time."""

    def __init__(self, source: KeySource) -> None:
        self.source = source
        self._keys = _inline_keys(source.location)

    @property
    def keys(self) -> KeySet | None:
        return self._keys

    @property
    def version(self) -> int:
        return 1

    @property
    def last_error(self) -> str | None:
        return None

    async def refresh_for_unknown_kid(self) -> None:
        return None

    def close(self) -> None:
        return None


class FetchError(Exception):
    pass


class RemoteKeys:
    """Keys fetched from a JWKS URL (directly or found through OIDC discovery)."""

    def __init__(
        self,
        source: KeySource,
        *,
        session: aiohttp.ClientSession,
        settings: JwksSettings,
        background: Background,
        on_fetch: FetchObserver | None = None,
    ) -> None:
        self.source = source
        self._background = background
        self._loop = background.loop  # fetches run there, whichever thread compiled the policy
        self._on_fetch = on_fetch
        self._session = session
        self._settings = settings
        self._keys: KeySet | None = None
        self._fingerprint = ""
        self._version = 0
        self._last_error: str | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._last_unknown_kid_fetch = float("-inf")
        self._refresher: Guarded | None = None
        #: Set once the first fetch finished, successfully or not.
        self.first_attempt = asyncio.Event()

    @property
    def keys(self) -> KeySet | None:
        return self._keys

    @property
    def version(self) -> int:
        return self._version

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def start(self) -> None:
        """Start the background refresh; callable from any thread (policies compile off the loop)."""
        self._loop.call_soon_threadsafe(self._start_on_loop)

    def _start_on_loop(self) -> None:
        self._refresher = self._background.task(
            f"JWKS refresher for {self.source.describe()}", self._refresh_loop
        )

    def close(self) -> None:
        """Stop fetching; callable from any thread."""
        self._loop.call_soon_threadsafe(self._cancel_on_loop)

    def _cancel_on_loop(self) -> None:
        if self._refresher is not None:
            self._refresher.stop()
        if self._inflight is not None:
            self._inflight.cancel()

    async def refresh_for_unknown_kid(self) -> None:
        now = time.monotonic()
        if self._inflight is None:
            if now - self._last_unknown_kid_fetch < self._settings.unknown_kid_min_interval:
                return
            self._last_unknown_kid_fetch = now
            log.info("token names an unknown kid; refetching keys from %s", self.source.describe())
        await self.refresh()

    async def refresh(self) -> None:
        """Fetch once; concurrent callers share the same fetch. Never raises."""
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch_and_store())
            self._inflight.add_done_callback(self._clear_inflight)
        inflight = self._inflight
        try:
            await asyncio.shield(inflight)
        except asyncio.CancelledError:
            # close() cancelled the shared fetch, not this caller: its waiters (checks awaiting
            # an unknown kid) carry on with the keys they have instead of being cancelled.
            current = asyncio.current_task()
            if inflight.cancelled() and (current is None or not current.cancelling()):
                return
            raise

    def _clear_inflight(self, _task: asyncio.Task[None]) -> None:
        self._inflight = None

    async def _refresh_loop(self) -> None:
        delay = self._settings.retry_initial
        while True:
            await self.refresh()
            if self._last_error is None:
                delay = self._settings.retry_initial
                await asyncio.sleep(self._settings.refresh_interval)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.refresh_interval)

    async def _fetch_and_store(self) -> None:
        try:
            with tracing.span("jwks.fetch", {"authz.jwks.source": self.source.describe()}):
                await self._fetch_and_store_once()
        finally:
            self.first_attempt.set()

    def _report(self, result: str) -> None:
        if self._on_fetch is not None:
            self._on_fetch(self.source.location, result)

    async def _fetch_and_store_once(self) -> None:
        try:
            keys = parse_jwks(await self._fetch_jwks())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure keeps the last good keys
            self._last_error = str(exc) or type(exc).__name__
            self._report(labels.FETCH_ERROR)
            tracing.mark_error(self._last_error)
            kept = "keeping the last good keys" if self._keys else "no keys yet"
            log.warning(
                "fetching keys from %s failed: %s (%s)",
                self.source.describe(),
                self._last_error,
                kept,
            )
            return
        self._last_error = None
        self._report(labels.FETCH_OK)
        for reason in keys.skipped:
            log.warning("JWKS from %s: %s", self.source.describe(), reason)
        fingerprint = keys.fingerprint()
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self._keys = keys
            self._version += 1
            log.info("loaded %d key(s) from %s", len(keys.keys), self.source.describe())

    async def _fetch_jwks(self) -> object:
        if self.source.kind is KeySourceKind.DISCOVERY:
            issuer = self.source.location
            config = await self._get_json(discovery_url(issuer))
            if not isinstance(config, dict):
                raise FetchError("discovery document is not a JSON object")
            if config.get("issuer") != issuer:
                raise FetchError(
                    f"discovery document names issuer {config.get('issuer')!r}, expected {issuer!r}"
                )
            jwks_uri = config.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise FetchError("discovery document has no jwks_uri")
            return await self._get_json(jwks_uri)
        return await self._get_json(self.source.location)

    async def _get_json(self, url: str) -> object:
        refusal = check_fetch_url(url)
        if refusal:
            raise FetchError(f"refusing to fetch {url}: {refusal}")
        limit = self._settings.max_document_bytes
        timeout = aiohttp.ClientTimeout(total=self._settings.fetch_timeout)
        async with self._session.get(
            url, timeout=timeout, allow_redirects=False, headers={"accept": "application/json"}
        ) as response:
            body = await read_answer(response, limit=limit, what=f"GET {url}", error=FetchError)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise FetchError(f"GET {url} did not return JSON: {exc}") from None


class KeyRegistry:
    """One provider per key source, shared by every policy that names it.

    Thread-safe: policies may compile in a worker thread while checks run on the event loop.
    Create it on the event loop that will run the fetches; the refreshers run as `background`
    work (one of their own when none is given).
    """

    def __init__(
        self,
        *,
        settings: JwksSettings,
        session: aiohttp.ClientSession,
        on_fetch: FetchObserver | None = None,
        background: Background | None = None,
    ) -> None:
        self._settings = settings
        self._session = session
        self._on_fetch = on_fetch
        self._background = background if background is not None else Background()
        self._lock = threading.Lock()
        self._providers: dict[KeySource, StaticKeys | RemoteKeys] = {}

    def provider(self, source: KeySource) -> KeyProvider:
        """Return the provider for `source`, creating (and starting) it on first use.

        Inline keys are parsed here, so a bad inline JWKS raises ValueError at compile time.
        """
        with self._lock:
            existing = self._providers.get(source)
            if existing is not None:
                return existing
            created: StaticKeys | RemoteKeys
            if source.kind is KeySourceKind.INLINE:
                created = StaticKeys(source)
            else:
                created = RemoteKeys(
                    source,
                    session=self._session,
                    settings=self._settings,
                    background=self._background,
                    on_fetch=self._on_fetch,
                )
                created.start()
            self._providers[source] = created
            return created

    def retain(self, sources: Iterable[KeySource]) -> None:
        """Stop providers that no current policy uses."""
        keep = set(sources)
        with self._lock:
            for source in [s for s in self._providers if s not in keep]:
                self._providers.pop(source).close()

    async def first_attempts(self, within: float) -> None:
        """Wait (at most `within` s) until every remote source has tried its first fetch, so a
        replica turns ready with keys in hand instead of answering 503 to its first requests."""
        with self._lock:
            events = [
                p.first_attempt for p in self._providers.values() if isinstance(p, RemoteKeys)
            ]
        if events:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), within)

    def providers(self) -> list[KeyProvider]:
        with self._lock:
            return list(self._providers.values())

    async def close(self) -> None:
        self.retain(())
        await asyncio.sleep(0)  # let the cancellations run


class UnfetchedKeys:
    """A provider that never fetches: used by `authz validate`, which must work offline."""

    def __init__(self, source: KeySource) -> None:
        self.source = source

    @property
    def keys(self) -> KeySet | None:
        return None

    @property
    def version(self) -> int:
        return 0

    @property
    def last_error(self) -> str | None:
        return "keys are not fetched in offline validation"

    async def refresh_for_unknown_kid(self) -> None:
        return None


def offline_provider(source: KeySource) -> KeyProvider:
    """Bind key sources without network access: inline keys are parsed, remote ones never fetched."""
    if source.kind is KeySourceKind.INLINE:
        return StaticKeys(source)
    return UnfetchedKeys(source)
