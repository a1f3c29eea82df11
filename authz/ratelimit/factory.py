"""Build the limiter `authz serve` uses from its settings: memory by default, Redis when asked.

Redis clients retry once, at once, without back-off (a pooled connection that died with a
restarted Redis fails once); beyond that a failed call fails and the circuit breaker in
shared.py decides what happens next, so a dead Redis never adds retry back-offs to a check.
Credentials in the URL are used, never logged (see `describe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from authz.errors import ConfigError
from authz.ratelimit.limiter import BackendObserver, Limiter
from authz.ratelimit.memory import MemoryLimiter
from authz.ratelimit.redisbackend import RedisBackend, ScriptClient
from authz.ratelimit.shared import SharedLimiter
from authz.settings import RateLimitSettings

MODES: Final = ("standalone", "cluster", "sentinel")
SCHEMES: Final = ("redis", "rediss")
DEFAULT_PORT: Final = 6379
DEFAULT_SENTINEL_PORT: Final = 26379


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """A parsed --redis-url: hosts, credentials, database and TLS."""

    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    db: int
    tls: bool

    def describe(self, mode: str) -> str:
        where = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"Redis {mode} at {'rediss' if self.tls else 'redis'}://{where}"


def parse_redis_url(url: str, *, mode: str) -> RedisAddress:
    """redis[s]://[user[:password]@]host[:port][,host[:port]...][/db]. Raises ConfigError.

    Several hosts are allowed for sentinel mode (the sentinels) and cluster mode (startup nodes).
    """
    if mode not in MODES:
        raise ConfigError(f"--redis-mode: expected one of {', '.join(MODES)}, got {mode!r}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ConfigError("--redis-url: must start with redis:// or rediss:// (TLS)")
    netloc, _, path = rest.partition("/")
    path = path.partition("?")[0]
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # redis://secret@host is the common password-only form
            username, password = None, unquote(user)
    default_port = DEFAULT_SENTINEL_PORT if mode == "sentinel" else DEFAULT_PORT
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        try:
            parsed = urlsplit(f"//{item}")
            host, port = parsed.hostname, parsed.port or default_port
        except ValueError as exc:
            raise ConfigError(f"--redis-url: bad host {item!r}: {exc}") from None
        if not host:
            raise ConfigError("--redis-url: a host is required")
        hosts.append((host, port))
    if len(hosts) > 1 and mode == "standalone":
        raise ConfigError("--redis-url: several hosts need --redis-mode cluster or sentinel")
    try:
        db = int(path) if path else 0
    except ValueError:
        raise ConfigError(
            f"--redis-url: the path must be a database number, not {path!r}"
        ) from None
    if db and mode == "cluster":
        raise ConfigError("--redis-url: Redis Cluster has only database 0")
    return RedisAddress(tuple(hosts), username, password, db, scheme == "rediss")


def _client(address: RedisAddress, settings: RateLimitSettings) -> ScriptClient:
    common: dict[str, Any] = {
        "username": address.username,
        "password": address.password,
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        # One immediate retry, on a fresh connection: after Redis restarts, every pooled
        # connection is dead and fails once. The per-call timeout still bounds the whole call.
        "retry": Retry(NoBackoff(), 1),
        "ssl": address.tls,
        "max_connections": settings.redis_max_connections,
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


def build_limiter(
    settings: RateLimitSettings, *, observers: tuple[BackendObserver, ...] = ()
) -> Limiter:
    """The in-memory limiter, or (with a Redis URL) the shared one falling back to memory."""
    memory = MemoryLimiter(max_buckets=settings.max_buckets)
    if settings.redis_url is None:
        return memory
    address = parse_redis_url(settings.redis_url, mode=settings.redis_mode)
    backend = RedisBackend(
        _client(address, settings),
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
