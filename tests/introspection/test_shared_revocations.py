"""Revocations shared through a real redis-server: two replicas, a restart, Redis away and back.

Each "replica" is a Revocations list with its SharedRevocations on its own client; polls are
driven by hand (`poll()`), so nothing here waits for the background interval.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from authz.jwt.revocation import JTI, SUBJECT, Revocations
from authz.lifecycle import Background
from authz.sharedrevocations import KEY, SharedRevocations
from tests.support.redis import RedisServer

NOW = 1_800_000_000.0
ISS = "https://issuer.test"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


class Replica:
    def __init__(self, port: int) -> None:
        self.local = Revocations()
        self.shared = SharedRevocations(
            Redis(host="127.0.0.1", port=port, socket_timeout=0.5, socket_connect_timeout=0.5),
            self.local,
            timeout=0.5,
            clock=lambda: NOW,
        )

    def refuses(self, **claims: object) -> bool:
        return self.local.refuses(claims, ISS, NOW + 1)


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[list[Replica]]:
    redis_server.cli("FLUSHALL")
    made = [Replica(redis_server.port), Replica(redis_server.port)]
    yield made
    for replica in made:
        await replica.shared.close()


async def revoke(replica: Replica, **fields: object) -> bool:
    entry = replica.local.revoke(now=NOW, **fields)  # type: ignore[arg-type]
    assert replica.local.publish is not None
    return await replica.local.publish(entry)


async def test_a_revocation_reaches_the_other_replica_at_its_next_poll(
    replicas: list[Replica],
) -> None:
    a, b = replicas
    await b.shared.poll()
    assert await revoke(a, kind=JTI, value="j1", issuer=ISS)
    assert a.refuses(jti="j1")
    assert not b.refuses(jti="j1")
    await b.shared.poll()
    assert b.refuses(jti="j1")
    assert await revoke(b, kind=SUBJECT, value="mallory")
    await a.shared.poll()
    assert a.refuses(sub="mallory", iat=NOW - 1)
    assert not a.refuses(sub="mallory", iat=NOW + 1)


async def test_a_restarted_replica_loads_the_list(
    replicas: list[Replica], redis_server: RedisServer
) -> None:
    a, _ = replicas
    assert await revoke(a, kind=JTI, value="j1")
    fresh = Replica(redis_server.port)
    background = Background()
    try:
        await fresh.shared.start(background)
        assert fresh.refuses(jti="j1")
    finally:
        await fresh.shared.close()
        await background.close()


async def test_expired_and_foreign_fields_are_dropped(
    replicas: list[Replica], redis_server: RedisServer
) -> None:
    a, b = replicas
    assert await revoke(a, kind=JTI, value="short", until=NOW + 0.5)
    redis_server.cli("HSET", KEY, "not json", "{}")
    redis_server.cli("SET", "{authz:revocations}:version", "changed")
    await b.shared.poll()  # the clock says NOW: "short" is still valid
    assert b.refuses(jti="short") is False  # refuses() asks at NOW + 1: expired by then
    assert redis_server.cli("HLEN", KEY).strip() == "1"  # the foreign field was deleted


async def test_redis_away_keeps_the_local_list_and_publishes_later(
    replicas: list[Replica], redis_server: RedisServer
) -> None:
    a, b = replicas
    assert await revoke(a, kind=JTI, value="before")
    await b.shared.poll()
    redis_server.kill()
    try:
        assert not await revoke(a, kind=JTI, value="during")  # not shared: the answer says so
        assert a.refuses(jti="during")
        with pytest.raises((RedisError, OSError, TimeoutError)):
            await b.shared.poll()
        assert b.refuses(jti="before")  # the local copy keeps enforcing
    finally:
        redis_server.start()
    await a.shared.poll()  # publishes what was pending
    await b.shared.poll()
    assert b.refuses(jti="during")
