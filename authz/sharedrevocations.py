"""Revocations shared by every replica through Redis, kept locally for the check path.

With --redis-url the revocation list lives in one Redis hash (field: kind, issuer and value;
value: revoked_at and until as JSON) next to a version stamp, both under one hash tag so a
Redis Cluster keeps them on one node. A Revoke writes the field, then stamps a new version. Every
process (each worker too) polls the version once a second and reloads the hash when it moved,
plus every 30 s regardless - so the check path reads only its in-memory replica (no Redis round
trip per request) and a revocation reaches every replica within about a second and survives
restarts. Entries whose `until` has passed are deleted from Redis by whoever notices.

When Redis is away the local list keeps enforcing what it had; a Revoke made meanwhile applies
to this replica at once and is written to Redis by the next poll that reaches it (until then
the admin answer says `shared: false`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from authz.jwt.revocation import Revocation, Revocations
from authz.lifecycle import Background, Guarded

log = logging.getLogger(__name__)

KEY = "{authz:revocations}"
VERSION = "{authz:revocations}:version"
#: Polls between full reloads, even when the version did not move (a lost version bump).
_FULL_EVERY = 30


def _field(entry: Revocation) -> str:
    return json.dumps([entry.kind, entry.issuer, entry.value], separators=(",", ":"))


def _entry(field: bytes | str, value: bytes | str) -> Revocation | None:
    try:
        kind, issuer, subject = json.loads(field)
        times = json.loads(value)
        return Revocation(
            str(kind), str(subject), str(issuer), float(times["at"]), float(times["until"])
        )
    except (ValueError, TypeError, KeyError):
        return None  # written by something else: ignored rather than trusted


class SharedRevocations:
    def __init__(
        self,
        client: Any,
        local: Revocations,
        *,
        timeout: float,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._local = local
        self._timeout = max(timeout, 0.5)  # a poll is off the check path: no need to be tight
        self._interval = interval
        self._clock = clock
        self._version: bytes | None = None
        self._polls = 0
        #: Entries revoked here that Redis has not taken yet.
        self._pending: dict[str, Revocation] = {}
        self._poller: Guarded | None = None
        local.publish = self.publish

    async def publish(self, entry: Revocation) -> bool:
        """Write one entry to Redis (called by the admin API after the local revoke)."""
        self._pending[_field(entry)] = entry
        try:
            await self._flush()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("revocation kept locally until Redis answers: %s", type(exc).__name__)
            return False
        return True

    async def _flush(self) -> None:
        async with asyncio.timeout(self._timeout):
            for field, entry in list(self._pending.items()):
                value = json.dumps({"at": entry.revoked_at, "until": entry.until})
                await self._client.hset(KEY, field, value)
                del self._pending[field]
            # A fresh random version, not a counter: a Redis restarted without its data would
            # count from zero again and repeat a version a replica has already seen.
            await self._client.set(VERSION, secrets.token_hex(8))

    async def poll(self) -> None:
        """Publish what is pending, then reload the list if it changed. Raises RedisError."""
        now = self._clock()
        if self._pending:
            await self._flush()
        async with asyncio.timeout(self._timeout):
            version = await self._client.get(VERSION)
            self._polls += 1
            if version == self._version and self._polls % _FULL_EVERY:
                return
            raw = await self._client.hgetall(KEY)
        entries, expired = [], []
        for field, value in raw.items():
            entry = _entry(field, value)
            if entry is None or entry.until <= now:
                expired.append(field)
            else:
                entries.append(entry)
        self._local.replace([*entries, *self._pending.values()], now)
        self._version = version
        if expired:
            async with asyncio.timeout(self._timeout):
                await self._client.hdel(KEY, *expired)

    async def start(self, background: Background) -> None:
        """Load the shared list once (best effort), then poll in the background."""
        try:
            await self.poll()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("revocations: Redis unreachable at start (%s)", type(exc).__name__)
        self._poller = background.task("revocation list poller", self._run)

    async def _run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll()
            except (RedisError, OSError, TimeoutError) as exc:
                if not failing:
                    log.warning(
                        "revocations: Redis unreachable (%s); enforcing the local copy",
                        type(exc).__name__,
                    )
                failing = True
                continue
            if failing:
                log.info("revocations: Redis reachable again")
            failing = False

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.stop()
        try:
            await self._client.aclose()
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("closing the revocation Redis client: %s", exc)
