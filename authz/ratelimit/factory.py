"""Build the limiter `authz serve` uses from its settings: memory by default, Redis when asked.

Redis clients retry once, at once, without back-off (a pooled connection that died with a
restarted Redis fails once); beyond that a failed call fails and the circuit breaker in
shared.py decides what happens next, so a dead Redis never adds retry back-offs to a check.
Credentials in the URL are used, never logged (see RedisAddress.describe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authz.ratelimit.blockmemory import MemoryBlocks
from authz.ratelimit.blocks import BlockStore
from authz.ratelimit.limiter import BackendObserver, Limiter
from authz.ratelimit.memory import MemoryLimiter
from authz.settings import RateLimitSettings
from authz.settings.ratelimit import RedisAddress, parse_redis_url

if TYPE_CHECKING:
    from authz.ratelimit.redisbackend import ScriptClient

#: Brute-force counting has a pool of its own (failures only: a few connections), so a flood of
#: 401s never takes the connections the rate limits need.
BLOCKS_CONNECTIONS = 8


def redis_client(
    address: RedisAddress, settings: RateLimitSettings, *, connections: int | None = None
) -> ScriptClient:
    # Imported here: the Redis client library is slow to import, and most replicas never use it.
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff

    common: dict[str, Any] = {
        "username": address.username,
        "password": address.password,
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        # One immediate retry, on a fresh connection: after Redis restarts, every pooled
        # connection is dead and fails once. The per-call timeout still bounds the whole call.
        "retry": Retry(NoBackoff(), 1),
        "ssl": address.tls,
        "max_connections": connections or settings.redis_max_connections,
    }
    mode = settings.redis_mode
    if mode == "cluster":
        from redis.asyncio.cluster import ClusterNode

        nodes = [ClusterNode(host, port) for host, port in address.hosts]
        cluster: ScriptClient = RedisCluster(startup_nodes=nodes, **common)
        return cluster
    if mode == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(address.hosts),
            sentinel_kwargs={
                "socket_timeout": settings.redis_timeout,
                "socket_connect_timeout": settings.redis_timeout,
                "ssl": address.tls,
            },
            **common,
        )
        master: ScriptClient = sentinel.master_for(settings.redis_sentinel_master, db=address.db)
        return master
    host, port = address.hosts[0]
    standalone: ScriptClient = Redis(host=host, port=port, db=address.db, **common)
    return standalone


def shared_client(settings: RateLimitSettings) -> tuple[Any, str] | None:
    """A Redis client of its own on --redis-url, for other state the replicas share (the DPoP
    replay store), and its description for logs; None without a URL."""
    if settings.redis_url is None:
        return None
    address = parse_redis_url(settings.redis_url, mode=settings.redis_mode)
    return redis_client(address, settings), address.describe(settings.redis_mode)


def build_limiter(
    settings: RateLimitSettings, *, observers: tuple[BackendObserver, ...] = ()
) -> Limiter:
    """The in-memory limiter, or (with a Redis URL) the shared one falling back to memory."""
    memory = MemoryLimiter(max_buckets=settings.max_buckets)
    if settings.redis_url is None:
        return memory
    from authz.ratelimit.redisbackend import RedisBackend
    from authz.ratelimit.shared import SharedLimiter

    address = parse_redis_url(settings.redis_url, mode=settings.redis_mode)
    backend = RedisBackend(
        redis_client(address, settings),
        timeout=settings.redis_timeout,
        description=address.describe(settings.redis_mode),
        max_in_flight=settings.redis_max_connections,
    )
    return SharedLimiter(
        backend,
        fallback=memory,
        failure_threshold=settings.failure_threshold,
        probe_interval=settings.probe_interval,
        observers=observers,
    )


def build_blocks(settings: RateLimitSettings) -> BlockStore:
    """The brute-force block store: in memory, or (with a Redis URL) shared through Redis."""
    if settings.redis_url is None:
        return MemoryBlocks(max_keys=settings.bruteforce_max_keys)
    from authz.ratelimit.blockredis import RedisBlocks

    address = parse_redis_url(settings.redis_url, mode=settings.redis_mode)
    return RedisBlocks(
        redis_client(address, settings, connections=BLOCKS_CONNECTIONS),
        timeout=settings.redis_timeout,
        description=address.describe(settings.redis_mode),
        max_keys=settings.bruteforce_max_keys,
        failure_threshold=settings.failure_threshold,
        refresh_interval=settings.blocks_refresh_interval,
        max_in_flight=BLOCKS_CONNECTIONS,
    )
