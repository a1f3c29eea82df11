"""The DPoP replay cache shared by every replica, in Redis (with --redis-url).

The in-memory cache (replay.py) catches a proof replayed to the same process; this one catches
it on any other: the first process to see a proof claims its key with `SET key 1 NX PX ttl`, and
every later claim fails, whichever replica makes it. The key is a digest of the proof's key
thumbprint and `jti` (the raw values are never stored) and expires when the proof would be
refused as too old anyway, so Redis holds at most the proofs of one window.

When Redis cannot answer (down, slow, refusing), the check keeps the per-process protection of
the memory cache rather than denying every DPoP request, and says so in the log (at most once
per interval): the same choice as the rate limits' default `fallback` mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "authz:dpop:"
_WARN_INTERVAL = 60.0


class SetClient(Protocol):
    """The part of a redis.asyncio client (standalone, cluster or sentinel master) used here."""

    def set(self, name: str, value: bytes, *, nx: bool, px: int) -> Awaitable[Any]: ...

    def aclose(self) -> Awaitable[None]: ...


class RedisReplay:
    """First use of a proof across replicas: True (first), False (a replay), None (unknown)."""

    def __init__(self, client: SetClient, *, description: str) -> None:
        self._client = client
        self._description = description
        self._last_warning = float("-inf")
        #: Claims that could not be made (Redis unavailable): the memory cache alone decided.
        self.unavailable = 0

    async def first_use(self, key: bytes, *, ttl: float) -> bool | None:
        try:
            claimed = await self._client.set(
                PREFIX + key.hex(), b"1", nx=True, px=max(1, int(ttl * 1000))
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self.unavailable += 1
            now = time.monotonic()
            if now - self._last_warning >= _WARN_INTERVAL:
                self._last_warning = now
                log.warning(
                    "DPoP replay store %s unavailable (%s); replays are caught per process only",
                    self._description,
                    type(exc).__name__,
                )
            return None
        return bool(claimed)

    async def close(self) -> None:
        await self._client.aclose()
