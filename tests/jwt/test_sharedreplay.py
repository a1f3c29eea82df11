"""The DPoP replay store shared through a real Redis: a proof's first claim wins everywhere, the
claim expires with the proof, and an unreachable Redis answers "unknown" instead of failing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from authz.jwt.replay import proof_key
from authz.jwt.sharedreplay import PREFIX, RedisReplay
from authz.ratelimit.factory import shared_client
from authz.settings import RateLimitSettings
from tests.support.procs import free_port
from tests.support.redis import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[RedisReplay, RedisReplay]]:
    """Two replicas' stores, each with its own client, as two sidecar processes would have."""
    port = redis_server.port
    a = RedisReplay(Redis(host="127.0.0.1", port=port), description="a")
    b = RedisReplay(Redis(host="127.0.0.1", port=port), description="b")
    yield a, b
    await a.close()
    await b.close()


async def test_the_first_claim_wins_across_replicas(
    replicas: tuple[RedisReplay, RedisReplay], redis_server: RedisServer
) -> None:
    a, b = replicas
    key = proof_key("thumbprint", "jti-1")
    assert await a.first_use(key, ttl=60) is True
    assert await b.first_use(key, ttl=60) is False
    assert await a.first_use(key, ttl=60) is False
    assert await b.first_use(proof_key("another-key", "jti-1"), ttl=60) is True
    # Only a digest is stored, and it expires with the proof.
    ttl_ms = int(redis_server.cli("PTTL", PREFIX + key.hex()))
    assert 0 < ttl_ms <= 60_000
    assert "jti-1" not in redis_server.cli("KEYS", "*")


async def test_an_unreachable_redis_is_unknown_not_an_error(tmp_path: Path) -> None:
    # The client `authz serve` builds (retries at once, no back-off), not redis-py's default.
    shared = shared_client(
        RateLimitSettings(redis_url=f"redis://127.0.0.1:{free_port()}", redis_timeout=0.5)
    )
    assert shared is not None
    dead = RedisReplay(shared[0], description="dead")
    assert await dead.first_use(proof_key("k", "j"), ttl=60) is None
    assert await dead.first_use(proof_key("k", "j"), ttl=60) is None
    assert dead.unavailable == 2
    await dead.close()
