"""The shared block store with real redis-server processes: replicas adding up each other's
failures, learning and lifting blocks, bounded keys, and Redis dying during a block.

Replicas are two stores on one Redis; a replica "learns" by its refresh, called here directly
instead of waiting for the background one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from authz import errors
from authz.ratelimit.blockredis import BLOCKS_KEY, COUNTER_PREFIX, RedisBlocks
from authz.ratelimit.blocks import (
    COUNTED_LOCAL,
    COUNTED_NOWHERE,
    COUNTED_SHARED,
    Protection,
    Started,
    Strike,
)
from authz.ratelimit.factory import build_blocks
from authz.ratelimit.spec import FailureMode
from authz.settings import RateLimitSettings
from tests.bruteforce.support import NOW, build, check, forged, policy, token
from tests.support.redis import RedisServer
from tests.support.wait import until

NOW_MS = int(NOW * 1000)
SNAPSHOT = build(policy())
PROTECTION = SNAPSHOT.policies[0].brute_force[0]


class Seen:
    def __init__(self) -> None:
        self.blocks: list[Started] = []
        self.failures = 0
        self.errors: list[BaseException] = []

    def on_failure(self, protection: Protection) -> None:
        self.failures += 1

    def on_block(self, started: Started, *, dry_run: bool) -> None:
        self.blocks.append(started)

    def on_backend_error(self, error: BaseException) -> None:
        self.errors.append(error)


def store(redis: RedisServer, *, max_keys: int = 1000, timeout: float = 1.0) -> RedisBlocks:
    built = build_blocks(
        RateLimitSettings(redis_url=redis.url, redis_timeout=timeout, bruteforce_max_keys=max_keys)
    )
    assert isinstance(built, RedisBlocks)
    return built


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBlocks, RedisBlocks]]:
    redis_server.cli("FLUSHALL")
    a, b = store(redis_server), store(redis_server)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


def strike(value: str) -> list[Strike]:
    return [Strike(PROTECTION, f"{PROTECTION.prefix}={value}")]


async def test_failures_on_two_replicas_add_up_and_both_enforce_the_block(
    replicas: tuple[RedisBlocks, RedisBlocks],
) -> None:
    a, b = replicas
    seen = Seen()
    b.add_observer(seen)
    for i in range(2):
        assert (await check(SNAPSHOT, a, bearer=forged(), now=NOW + i)).status == 401
    assert (await check(SNAPSHOT, b, bearer=forged(), now=NOW + 2)).status == 401  # the third
    assert [s.strike.key for s in seen.blocks] == ["t/api:per-ip=10.0.0.1"]
    assert (await check(SNAPSHOT, b, bearer=token(), now=NOW + 3)).reason == errors.BLOCKED
    # Replica a learns of the block from its next refresh.
    assert (await check(SNAPSHOT, a, bearer=token(), now=NOW + 3)).allowed
    await a.refresh(NOW_MS + 3000)
    blocked = await check(SNAPSHOT, a, bearer=token(), now=NOW + 3)
    assert blocked.reason == errors.BLOCKED
    assert dict(blocked.response_headers)["retry-after"] == str(15 * 60 - 1)


async def test_a_block_cleared_on_one_replica_is_lifted_on_every_replica(
    replicas: tuple[RedisBlocks, RedisBlocks],
) -> None:
    a, b = replicas
    for i in range(3):
        await a.failed(
            strike("10.0.0.7"), now_ms=NOW_MS + i, failure_mode=FailureMode.FALLBACK, dry_run=False
        )
    await b.refresh(NOW_MS)
    assert b.blocked_ms("t/api:per-ip=10.0.0.7", NOW_MS) > 0
    assert [blk.key for blk in await b.blocks(NOW_MS)] == ["t/api:per-ip=10.0.0.7"]
    assert await b.clear("10.0.0.7") == 1
    assert b.blocked_ms("t/api:per-ip=10.0.0.7", NOW_MS) == 0
    await a.refresh(NOW_MS)
    assert a.blocked_ms("t/api:per-ip=10.0.0.7", NOW_MS) == 0
    assert await a.blocks(NOW_MS) == []


async def test_counters_expire_and_hold_no_raw_header_values(
    redis_server: RedisServer, replicas: tuple[RedisBlocks, RedisBlocks]
) -> None:
    a, _ = replicas
    snapshot = build(policy([{**PROTECTION_RAW, "key": "header:x-api-key"}]))
    secret = "sk_live_very_secret"
    await check(snapshot, a, bearer=forged(), headers={"x-api-key": secret}, now=NOW)
    keys = redis_server.cli("--scan", "--pattern", "authz:bf:*").split()
    assert keys, "the failure was counted in Redis"
    assert not any(secret in key for key in keys)
    (counter,) = [k for k in keys if k.startswith(COUNTER_PREFIX)]
    assert 0 < int(redis_server.cli("PTTL", counter)) <= 60_000


PROTECTION_RAW = {"name": "per-ip", "maxFailures": 3, "window": "60s", "blockFor": "15m"}


async def test_shared_blocks_stay_bounded(redis_server: RedisServer) -> None:
    redis_server.cli("FLUSHALL")
    small = store(redis_server, max_keys=10)
    await small.start()
    try:
        for n in range(40):
            for i in range(3):
                await small.failed(
                    strike(f"10.1.0.{n}"),
                    now_ms=NOW_MS + i,
                    failure_mode=FailureMode.FALLBACK,
                    dry_run=False,
                )
        assert int(redis_server.cli("ZCARD", BLOCKS_KEY)) == 10
        await small.refresh(NOW_MS)
        assert len(await small.blocks(NOW_MS)) == 10
    finally:
        await small.close()


async def _until_away(blocks: RedisBlocks, fail: Callable[[], Awaitable[object]]) -> None:
    for _ in range(10):
        if not blocks.available:
            return
        await fail()
    raise AssertionError("the store never noticed Redis was gone")


async def test_redis_dying_during_a_block_keeps_the_block_and_follows_the_failure_mode(
    killable_redis: RedisServer,
) -> None:
    blocks = store(killable_redis, timeout=0.2)
    seen = Seen()
    blocks.add_observer(seen)
    await blocks.start()
    try:
        for i in range(3):
            await check(SNAPSHOT, blocks, bearer=forged(), ip="10.0.0.1", now=NOW + i)
        killable_redis.kill()
        # The known block holds while Redis is gone: no call is needed to enforce it.
        assert (await check(SNAPSHOT, blocks, bearer=token(), now=NOW + 5)).reason == errors.BLOCKED

        async def one_failure() -> str:
            return await blocks.failed(
                strike("10.0.0.2"), now_ms=NOW_MS, failure_mode=FailureMode.FALLBACK, dry_run=False
            )

        await _until_away(blocks, one_failure)
        assert seen.errors, "the failed calls were reported"
        errors_before = len(seen.errors)
        # fallback: counted in this process; open: not counted; closed: the step denies.
        assert await one_failure() == COUNTED_LOCAL
        open_mode = await blocks.failed(
            strike("10.0.0.3"), now_ms=NOW_MS, failure_mode=FailureMode.OPEN, dry_run=False
        )
        assert open_mode == COUNTED_NOWHERE
        assert len(seen.errors) == errors_before  # away: no check waits on Redis any more
        closed = build(policy(name="closed", rateLimitFailureMode="closed"))
        refused = await check(closed, blocks, host="closed.test", bearer=token(), ip="10.9.9.9")
        assert refused.reason == errors.RATELIMIT_UNAVAILABLE
        # Back: the next refresh finds Redis, and counting is shared again.
        killable_redis.start()
        await blocks.refresh(NOW_MS)
        assert blocks.available
        assert await one_failure() == COUNTED_SHARED
    finally:
        await blocks.close()


async def test_an_unused_store_never_calls_redis(redis_server: RedisServer) -> None:
    blocks = store(redis_server)
    await blocks.start()
    try:
        plain = build(policy([], name="plain"))
        for i in range(5):
            await check(plain, blocks, host="plain.test", bearer=forged(), now=NOW + i)
        assert blocks.refreshes == 0
        await check(SNAPSHOT, blocks, bearer=token())  # a protected policy: the copy is kept
        await until(lambda: blocks.refreshes, what="the first refresh")
    finally:
        await blocks.close()


async def test_starting_while_redis_is_down_is_allowed(killable_redis: RedisServer) -> None:
    killable_redis.kill()
    blocks = store(killable_redis, timeout=0.1)
    await blocks.start()
    try:
        assert (await check(SNAPSHOT, blocks, bearer=token())).allowed
        await until(lambda: not blocks.available, what="the store away after its first refresh")
        assert (await check(SNAPSHOT, blocks, bearer=token())).allowed  # fallback carries on
        assert (await check(SNAPSHOT, blocks, bearer=forged())).status == 401
    finally:
        await blocks.close()
