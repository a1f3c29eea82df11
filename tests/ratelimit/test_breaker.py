"""The circuit breaker's bookkeeping, through the RemoteBackend seam (no Redis needed here)."""

from __future__ import annotations

from collections.abc import Sequence

from authz.ratelimit.limiter import (
    MODE_FALLBACK,
    MODE_REDIS,
    SOURCE_FALLBACK,
    SOURCE_REDIS,
    Hit,
    Verdict,
)
from authz.ratelimit.memory import MemoryLimiter
from authz.ratelimit.redisbackend import BackendBusy
from authz.ratelimit.shared import SharedLimiter
from tests.ratelimit.helpers import hit, limit
from tests.support.wait import until

T0 = 1_700_000_000.0


class Scripted:
    """A backend that raises what it is told to, then answers."""

    description = "scripted backend"

    def __init__(self) -> None:
        self.failures: list[BaseException] = []
        self.healthy = True
        self.calls = 0

    async def run(self, hits: Sequence[Hit], *, now_ms: int, consume: bool) -> tuple[Verdict, ...]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return tuple(Verdict(True, 1, 1000, 0) for _ in hits)

    async def ready(self) -> None:
        if not self.healthy:
            raise ConnectionError("still down")

    async def close(self) -> None:
        return None


async def test_busy_is_answered_by_the_fallback_but_never_opens_the_circuit() -> None:
    backend = Scripted()
    backend.failures = [BackendBusy("busy") for _ in range(10)]
    limiter = SharedLimiter(backend, fallback=MemoryLimiter(), failure_threshold=3)
    for _ in range(10):
        outcome = await limiter.check([hit(limit(5, "1m"))], now=T0)
        assert outcome.source == SOURCE_FALLBACK
    assert limiter.mode == MODE_REDIS
    assert (limiter.busy_total, limiter.errors_total) == (10, 0)
    assert (await limiter.check([hit(limit(5, "1m"))], now=T0)).source == SOURCE_REDIS


async def test_only_consecutive_failures_open_the_circuit() -> None:
    backend = Scripted()
    backend.failures = [ConnectionError("x"), ConnectionError("y")]
    limiter = SharedLimiter(backend, fallback=MemoryLimiter(), failure_threshold=3)
    for _ in range(3):
        await limiter.check([hit(limit(5, "1m"))], now=T0)
    backend.failures = [ConnectionError("z"), ConnectionError("z")]
    for _ in range(3):
        await limiter.check([hit(limit(5, "1m"))], now=T0)
    assert limiter.mode == MODE_REDIS  # a success in between reset the count
    assert limiter.errors_total == 4


async def test_open_circuit_makes_no_backend_calls_and_the_probe_closes_it() -> None:
    backend = Scripted()
    backend.failures = [TimeoutError() for _ in range(3)]
    backend.healthy = False
    limiter = SharedLimiter(
        backend, fallback=MemoryLimiter(), failure_threshold=3, probe_interval=0.01
    )
    for _ in range(3):
        await limiter.check([hit(limit(5, "1m"))], now=T0)
    assert limiter.mode == MODE_FALLBACK
    calls = backend.calls
    for _ in range(20):
        await limiter.check([hit(limit(5, "1m"))], now=T0)
    assert backend.calls == calls  # nobody waits on a dead backend
    backend.healthy = True
    await until(lambda: limiter.mode == MODE_REDIS, what="the probe closing the circuit")
    assert (await limiter.check([hit(limit(5, "1m"))], now=T0)).source == SOURCE_REDIS
    await limiter.close()


async def test_no_hits_cost_nothing() -> None:
    backend = Scripted()
    limiter = SharedLimiter(backend, fallback=MemoryLimiter())
    outcome = await limiter.check([], now=T0)
    assert outcome.allowed
    assert backend.calls == 0
