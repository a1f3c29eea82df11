"""Redis going away and coming back, with real redis-server processes: the circuit breaker,
the per-policy failure modes, nobody waiting on a dead Redis, and shared counting resuming.

"Nobody waits" is proven by counting the calls that reached Redis (each failed one is reported
to the observers), not by timing them: once the circuit is open, no check touches Redis."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable

import pytest

from authz.ratelimit.factory import build_limiter
from authz.ratelimit.limiter import (
    MODE_FALLBACK,
    MODE_REDIS,
    SOURCE_CLOSED,
    SOURCE_FALLBACK,
    SOURCE_OPEN,
    SOURCE_REDIS,
    Outcome,
)
from authz.ratelimit.shared import SharedLimiter
from authz.ratelimit.spec import FailureMode
from authz.settings import RateLimitSettings
from tests.ratelimit.helpers import hit, limit
from tests.support.redis import RedisServer
from tests.support.wait import until


class Recorder:
    def __init__(self) -> None:
        self.modes: list[str] = []
        self.failures: list[BaseException] = []

    @property
    def errors(self) -> int:
        return len(self.failures)

    def on_backend_error(self, error: BaseException) -> None:
        self.failures.append(error)

    def on_mode_change(self, mode: str) -> None:
        self.modes.append(mode)


@pytest.fixture
def killable_redis(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    return RedisServer(tmp_path_factory.mktemp("redis-failover")).start()


def shared(redis: RedisServer, recorder: Recorder, *, timeout: float = 0.05) -> SharedLimiter:
    """The production timeout by default; tests about counting (not about the timeout) pass a
    longer one so a loaded test machine cannot turn a slow answer into a fallback."""
    limiter = build_limiter(
        RateLimitSettings(redis_url=redis.url, redis_timeout=timeout, probe_interval=0.1),
        observers=(recorder,),
    )
    assert isinstance(limiter, SharedLimiter)
    return limiter


@pytest.fixture
async def recorder_and_limiter(
    killable_redis: RedisServer,
) -> AsyncIterator[tuple[Recorder, SharedLimiter]]:
    redis = killable_redis
    recorder = Recorder()
    limiter = shared(redis, recorder)
    await limiter.start()
    yield recorder, limiter
    await limiter.close()
    redis.stop()


async def wait_for_mode(limiter: SharedLimiter, mode: str) -> None:
    await until(lambda: limiter.mode == mode, what=f"the limiter in {mode} mode")


async def test_killed_redis_falls_back_without_waiting_and_recovers(
    killable_redis: RedisServer, recorder_and_limiter: tuple[Recorder, SharedLimiter]
) -> None:
    redis = killable_redis
    recorder, limiter = recorder_and_limiter
    spec = limit(5, "1m", name="kill")

    def check() -> Awaitable[Outcome]:
        return limiter.check([hit(spec)], now=time.time())

    # a loaded machine may miss the startup ping's deadline: the probe then finds Redis soon
    await wait_for_mode(limiter, MODE_REDIS)
    assert (await check()).source == SOURCE_REDIS
    redis.kill()
    # calls fail, the circuit opens after three of them, and from then on nobody waits: no
    # further check reaches Redis
    sources = [(await check()).source for _ in range(200)]
    assert limiter.mode == MODE_FALLBACK
    assert set(sources) == {SOURCE_FALLBACK}
    assert recorder.errors == 3
    # the fallback enforces the same limit in this process: 5 per minute, the rest denied
    fallback_allowed = 0
    spec2 = limit(5, "1m", name="kill2")
    for _ in range(20):
        fallback_allowed += (await limiter.check([hit(spec2)], now=time.time())).allowed
    assert fallback_allowed == 5
    assert recorder.errors == 3
    redis.start()
    await wait_for_mode(limiter, MODE_REDIS)
    assert (await check()).source == SOURCE_REDIS
    assert recorder.modes == [MODE_REDIS, MODE_FALLBACK, MODE_REDIS]
    assert limiter.switches_total == 2


async def test_hung_redis_costs_the_timeout_only_until_the_circuit_opens(
    killable_redis: RedisServer, recorder_and_limiter: tuple[Recorder, SharedLimiter]
) -> None:
    redis = killable_redis
    recorder, limiter = recorder_and_limiter
    spec = limit(100, "1m", name="hang")

    def check() -> Awaitable[Outcome]:
        return limiter.check([hit(spec)], now=time.time())

    assert (await check()).source == SOURCE_REDIS
    assert redis.proc is not None
    redis.proc.popen.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        for _ in range(3):
            assert (await check()).source == SOURCE_FALLBACK
        assert limiter.mode == MODE_FALLBACK
        assert [type(e).__name__ for e in recorder.failures] == ["TimeoutError"] * 3
        for _ in range(50):  # the circuit is open: none of these waits for the timeout
            assert (await check()).source == SOURCE_FALLBACK
        assert recorder.errors == 3
    finally:
        redis.proc.popen.send_signal(signal.SIGCONT)
    await wait_for_mode(limiter, MODE_REDIS)


async def test_failure_modes_open_and_closed(
    killable_redis: RedisServer, recorder_and_limiter: tuple[Recorder, SharedLimiter]
) -> None:
    redis = killable_redis
    _recorder, limiter = recorder_and_limiter
    spec = limit(1, "1m", name="modes")
    redis.kill()
    for _ in range(3):
        await limiter.check([hit(spec)], now=time.time())
    assert limiter.mode == MODE_FALLBACK
    opened = [
        await limiter.check([hit(spec)], now=time.time(), failure_mode=FailureMode.OPEN)
        for _ in range(5)
    ]
    assert all(o.allowed and o.source == SOURCE_OPEN for o in opened)
    closed = await limiter.check([hit(spec)], now=time.time(), failure_mode=FailureMode.CLOSED)
    assert not closed.allowed
    assert closed.source == SOURCE_CLOSED


async def test_starting_without_redis_serves_from_the_fallback_then_switches(
    killable_redis: RedisServer,
) -> None:
    redis = killable_redis
    redis.kill()  # the sidecar starts first; Redis comes up later on the same port
    recorder = Recorder()
    limiter = shared(redis, recorder)
    await limiter.start()
    try:
        assert limiter.mode == MODE_FALLBACK
        spec = limit(2, "1m", name="late")
        assert (await limiter.check([hit(spec)], now=time.time())).source == SOURCE_FALLBACK
        redis.start()
        await wait_for_mode(limiter, MODE_REDIS)
        assert (await limiter.check([hit(spec)], now=time.time())).source == SOURCE_REDIS
    finally:
        await limiter.close()
        redis.stop()
    assert recorder.modes == [MODE_FALLBACK, MODE_REDIS]


async def test_shared_counting_resumes_after_a_restart(
    killable_redis: RedisServer, recorder_and_limiter: tuple[Recorder, SharedLimiter]
) -> None:
    redis = killable_redis
    _recorder, _ = recorder_and_limiter
    first = shared(redis, Recorder(), timeout=1.0)
    second = shared(redis, Recorder(), timeout=1.0)
    await first.start()
    await second.start()
    try:
        redis.kill()
        for limiter in (first, second):
            for _ in range(3):
                await limiter.check([hit(limit(1, "1s", name="warm"))], now=time.time())
        assert first.mode == second.mode == MODE_FALLBACK
        redis.start()
        await wait_for_mode(first, MODE_REDIS)
        await wait_for_mode(second, MODE_REDIS)
        spec = limit(10, "1m", name="resume")
        outcomes = await asyncio.gather(
            *((first if i % 2 else second).check([hit(spec)], now=time.time()) for i in range(60))
        )
        assert {o.source for o in outcomes} == {SOURCE_REDIS}
        assert sum(o.allowed for o in outcomes) == 10  # one shared count again, not 10 each
    finally:
        await first.close()
        await second.close()
