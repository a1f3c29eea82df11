"""The Redis round trip: all limits of one check in one EVALSHA of check.lua.

One call per check, atomic in Redis, so two replicas never race between check and count. After a
Redis restart or failover the script cache is empty: the NOSCRIPT reply is answered with one EVAL
(which caches it again). Every call is bounded by `timeout`; any failure raises and is the
caller's (shared.py) to turn into the policy's failure mode. At most `max_in_flight` calls run
at once (the connection pool's size); more wait for a turn - at most `timeout` too - instead of
failing with "too many connections" under a burst. A check that gets no turn in time raises
BackendBusy: it is answered by the failure mode, but it says nothing about Redis's health, so it
does not count towards opening the circuit. Worst case per check: twice the timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Sequence
from importlib import resources
from typing import Any, Final, Protocol

from redis.exceptions import NoScriptError, RedisError

from authz.ratelimit.limiter import Hit, Verdict
from authz.ratelimit.spec import ALGORITHM_CODE
from authz.telemetry import tracing

SCRIPT: Final = resources.files("authz.ratelimit").joinpath("check.lua").read_text("utf-8")
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
#: The span around each round trip (OpenTelemetry database conventions); free with tracing off.
SPAN = "ratelimit redis"
_SPAN_ATTRIBUTES: Final = {"db.system": "redis", "db.operation": "EVALSHA"}

log = logging.getLogger(__name__)


class BackendBusy(Exception):
    """Every connection was busy for the whole timeout: local overload, not a Redis failure."""


class ScriptClient(Protocol):
    """The part of a redis.asyncio client (standalone, cluster or sentinel master) we use."""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...

    def ping(self) -> Awaitable[Any]: ...

    def script_load(self, script: str) -> Awaitable[Any]: ...

    def aclose(self) -> Awaitable[None]: ...


class RedisBackend:
    def __init__(
        self,
        client: ScriptClient,
        *,
        timeout: float,
        description: str,
        max_in_flight: int = 64,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._turns = asyncio.Semaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        #: Where Redis is, without credentials (for logs).
        self.description = description

    async def run(self, hits: Sequence[Hit], *, now_ms: int, consume: bool) -> tuple[Verdict, ...]:
        args: list[str | int] = [h.bucket for h in hits]
        args += [now_ms, 1 if consume else 0]
        for hit in hits:
            limit = hit.limit
            args += [ALGORITHM_CODE[limit.algorithm], limit.requests, limit.window_ms]
        try:
            async with asyncio.timeout(self._timeout):
                await self._turns.acquire()
        except TimeoutError:
            raise BackendBusy(f"no free Redis connection within {self._timeout:g}s") from None
        try:
            with tracing.span(SPAN, _SPAN_ATTRIBUTES):
                async with asyncio.timeout(self._timeout):
                    try:
                        raw = await self._client.evalsha(SCRIPT_SHA, len(hits), *args)
                    except NoScriptError:
                        raw = await self._client.eval(SCRIPT, len(hits), *args)
        finally:
            self._turns.release()
        if not isinstance(raw, list) or len(raw) != 4 * len(hits):
            raise ValueError(f"unexpected reply from the rate-limit script: {raw!r}")
        return tuple(
            Verdict(raw[i] == 1, int(raw[i + 1]), int(raw[i + 2]), int(raw[i + 3]))
            for i in range(0, len(raw), 4)
        )

    async def ready(self) -> None:
        """Raise unless Redis answers; then load the script and open every pooled connection, so
        the first burst of checks after a (re)start neither meets NOSCRIPT nor waits for connects
        inside its per-call timeout. Off the check path (startup and the breaker's probe)."""
        warm = self._max_in_flight
        async with asyncio.timeout(max(self._timeout, 1.0)):
            await self._client.ping()
            await self._client.script_load(SCRIPT)
            await asyncio.gather(*(self._client.ping() for _ in range(max(0, warm - 1))))

    async def close(self) -> None:
        """Close the pool. Shutting down must not fail because Redis is dead or slow: closing a
        connection to a killed server can time out, and there is nothing left to do about it."""
        try:
            await self._client.aclose()
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("closing the Redis client: %s", exc)
