"""Redis Cluster mode against a real 3-node cluster started here (redis-server --cluster-enabled)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from authz.ratelimit.factory import build_limiter
from authz.ratelimit.limiter import MODE_REDIS, SOURCE_REDIS, Limiter
from authz.ratelimit.spec import Algorithm
from authz.settings import RateLimitSettings
from tests.ratelimit.helpers import hit, limit
from tests.support.redis import RedisCluster


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    started = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield started
    started.stop()


@pytest.fixture
async def limiter(redis_cluster: RedisCluster) -> AsyncIterator[Limiter]:
    built = build_limiter(
        RateLimitSettings(redis_url=redis_cluster.url, redis_mode="cluster", redis_timeout=1.0)
    )
    await built.start()
    yield built
    await built.close()


async def test_limits_are_enforced_through_the_cluster(limiter: Limiter) -> None:
    assert limiter.mode == MODE_REDIS
    spec = limit(7, "1m", name="c1")
    outcomes = await asyncio.gather(
        *(limiter.check([hit(spec)], now=time.time()) for _ in range(30))
    )
    assert {o.source for o in outcomes} == {SOURCE_REDIS}
    assert sum(o.allowed for o in outcomes) == 7


async def test_rules_spread_over_nodes_and_each_rule_stays_on_one_slot(
    limiter: Limiter, redis_cluster: RedisCluster
) -> None:
    owners = set()
    for rule in range(12):
        per_user = limit(2, "1m", name="u", key="claim:sub", rule=f"rule-{rule}")
        daily = limit(3, "1d", Algorithm.FIXED_WINDOW, name="d", key="global", rule=f"rule-{rule}")
        burst = limit(4, "10s", Algorithm.TOKEN_BUCKET, name="b", rule=f"rule-{rule}")
        hits = [hit(per_user, "=alice"), hit(daily), hit(burst)]
        # all three limits of a rule in one script call: only possible on one slot
        first = await limiter.check(hits, now=time.time())
        assert first.source == SOURCE_REDIS
        assert [v.remaining for v in first.verdicts] == [1, 2, 3]
        slots = {redis_cluster.nodes[0].cli("cluster", "keyslot", h.bucket).strip() for h in hits}
        assert len(slots) == 1
        owners.add(redis_cluster.node_for(hits[0].bucket).port)
        # the counters really live on the owning node
        assert redis_cluster.node_for(hits[0].bucket).cli("exists", hits[1].bucket).strip() == "1"
    assert len(owners) > 1  # different rules land on different nodes


async def test_a_dead_node_degrades_only_through_the_breaker(redis_cluster: RedisCluster) -> None:
    limiter = build_limiter(
        RateLimitSettings(
            redis_url=redis_cluster.url, redis_mode="cluster", redis_timeout=0.2, probe_interval=0.1
        )
    )
    await limiter.start()
    try:
        spec = limit(3, "1m", name="dead", rule="victim")
        victim = redis_cluster.node_for(hit(spec).bucket)
        assert (await limiter.check([hit(spec)], now=time.time())).source == SOURCE_REDIS
        victim.kill()
        outcomes = [await limiter.check([hit(spec)], now=time.time()) for _ in range(10)]
        assert outcomes[-1].source == "fallback"
        assert sum(o.allowed for o in outcomes) == 3  # the fallback still enforces the limit
    finally:
        await limiter.close()
