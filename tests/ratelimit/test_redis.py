"""The Redis backend against a real redis-server: same answers as memory, atomic, one script."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from authz.ratelimit.factory import build_limiter
from authz.ratelimit.limiter import SOURCE_REDIS, Hit
from authz.ratelimit.memory import MemoryLimiter
from authz.ratelimit.redisbackend import SPAN, RedisBackend
from authz.ratelimit.shared import SharedLimiter
from authz.ratelimit.spec import Algorithm
from authz.settings import RateLimitSettings
from authz.telemetry import tracing
from tests.ratelimit.helpers import hit, limit
from tests.support.otlp import OtlpReceiver
from tests.support.redis import RedisServer
from tests.support.tiers import examples

T0_MS = 1_700_000_000_000
_SEQ = itertools.count()


def backend(server: RedisServer, *, timeout: float = 1.0) -> RedisBackend:
    return RedisBackend(
        Redis(host="127.0.0.1", port=server.port), timeout=timeout, description="test"
    )


@pytest.fixture
async def redis_backend(redis_server: RedisServer) -> AsyncIterator[RedisBackend]:
    b = backend(redis_server)
    yield b
    await b.close()


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    algorithm=st.sampled_from(list(Algorithm)),
    requests=st.integers(1, 8),
    window=st.sampled_from(["1s", "3s", "10s"]),
    steps=st.lists(st.tuples(st.integers(0, 2500), st.booleans()), min_size=1, max_size=40),
)
async def test_redis_answers_exactly_like_memory(
    redis_backend: RedisBackend,
    algorithm: Algorithm,
    requests: int,
    window: str,
    steps: list[tuple[int, bool]],
) -> None:
    """The Lua script and algorithms.py on the same timeline (gaps in ms, count or peek)."""
    spec = limit(requests, window, algorithm, name=f"parity{next(_SEQ)}")
    memory = MemoryLimiter()
    now = T0_MS + 123
    for gap, consume in steps:
        now += gap
        hits = [hit(spec)]
        remote = await redis_backend.run(hits, now_ms=now, consume=consume)
        local = memory.evaluate(hits, now_ms=now, consume=consume, source="memory")
        assert remote == local.verdicts, (now - T0_MS, consume)


async def test_several_limits_in_one_call_count_together_or_not_at_all(
    redis_backend: RedisBackend,
) -> None:
    n = next(_SEQ)
    tight = limit(1, "1m", name=f"tight{n}")
    loose = limit(5, "1m", Algorithm.TOKEN_BUCKET, name=f"loose{n}")
    daily = limit(9, "1d", Algorithm.FIXED_WINDOW, name=f"daily{n}")
    hits = [hit(tight), hit(loose), hit(daily)]
    first = await redis_backend.run(hits, now_ms=T0_MS, consume=True)
    assert [v.allowed for v in first] == [True, True, True]
    for _ in range(3):
        again = await redis_backend.run(hits, now_ms=T0_MS + 10, consume=True)
        assert [v.allowed for v in again] == [False, True, True]
    peek = await redis_backend.run([hit(loose), hit(daily)], now_ms=T0_MS + 10, consume=False)
    assert [v.remaining for v in peek] == [3, 7]  # only the admitted request counted


async def test_script_cache_flush_is_survived(
    redis_backend: RedisBackend, redis_server: RedisServer
) -> None:
    spec = limit(3, "1m", name=f"flush{next(_SEQ)}")
    await redis_backend.run([hit(spec)], now_ms=T0_MS, consume=True)
    redis_server.cli("script", "flush")  # what a restart or failover does to EVALSHA
    verdicts = await redis_backend.run([hit(spec)], now_ms=T0_MS, consume=True)
    assert verdicts[0].remaining == 1


async def test_keys_expire_in_redis(redis_backend: RedisBackend, redis_server: RedisServer) -> None:
    spec = limit(3, "10s", name=f"ttl{next(_SEQ)}")
    await redis_backend.run([hit(spec)], now_ms=T0_MS, consume=True)
    ttl = int(redis_server.cli("pttl", hit(spec).bucket).strip())
    assert 10_000 <= ttl <= 11_000


async def test_two_limiters_on_one_redis_admit_exactly_n_under_concurrency(
    redis_server: RedisServer,
) -> None:
    spec = limit(50, "1m", name=f"race{next(_SEQ)}")
    settings_ = RateLimitSettings(redis_url=redis_server.url, redis_timeout=2.0)
    first, second = build_limiter(settings_), build_limiter(settings_)
    await first.start()
    await second.start()
    try:
        tasks = [
            (first if i % 2 else second).check([hit(spec)], now=T0_MS / 1000) for i in range(400)
        ]
        outcomes = await asyncio.gather(*tasks)
    finally:
        await first.close()
        await second.close()
    assert {o.source for o in outcomes} == {SOURCE_REDIS}
    assert sum(o.allowed for o in outcomes) == 50


async def test_one_rule_shares_one_cluster_slot(redis_server: RedisServer) -> None:
    a = limit(1, "1m", name="a", policy="shop/orders", rule="create-order")
    b = limit(
        1,
        "1h",
        Algorithm.FIXED_WINDOW,
        name="b",
        key="claim:sub",
        policy="shop/orders",
        rule="create-order",
    )
    keys = [Hit(a, a.prefix + "*").bucket, Hit(b, b.prefix + "=alice").bucket]
    slots = {redis_server.cli("cluster", "keyslot", key).strip() for key in keys}
    assert len(slots) == 1
    assert keys[0].startswith("authz:rl:{shop/orders/create-order}:a:sw:60:")


async def test_shared_limiter_reports_redis_mode_to_observers(redis_server: RedisServer) -> None:
    events: list[str] = []

    class Observer:
        def on_backend_error(self, error: BaseException) -> None:
            events.append(f"error {type(error).__name__}")

        def on_mode_change(self, mode: str) -> None:
            events.append(mode)

    limiter = SharedLimiter(backend(redis_server), fallback=MemoryLimiter(), observers=[Observer()])
    await limiter.start()
    await limiter.close()
    assert events == ["redis"]


async def test_each_round_trip_is_a_span_when_tracing_is_on(redis_server: RedisServer) -> None:
    receiver = OtlpReceiver()
    try:
        assert tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        b = backend(redis_server)
        spec = limit(3, "1m", name=f"span{next(_SEQ)}")
        await b.run([hit(spec)], now_ms=T0_MS, consume=True)
        await b.close()
        tracing.force_flush()
        (span,) = receiver.wait_for(lambda s: s.name == SPAN)
        assert span.attributes["db.system"] == "redis"
        assert span.attributes["db.operation"] == "EVALSHA"
    finally:
        tracing.shutdown()
        receiver.stop()
