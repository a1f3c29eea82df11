"""Rate-limit settings: where counters live, and --redis-url read according to --redis-mode.

The URL's meaning depends on the mode (several hosts are the startup nodes of a cluster or the
sentinels; a cluster has only database 0), so RateLimitSettings checks the two together when it
is built. Credentials are kept for the client and never appear in `describe`, which is what
gets logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from authz.errors import ConfigError
from authz.settings.declare import Section, option
from authz.settings.kinds import Amount, Count, OptionalText, Text

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


@dataclass(frozen=True, slots=True)
class RateLimitSettings(Section):
    """Rate limits: where counters live, and how a shared backend's outage is handled."""

    redis_url: str | None = option(
        None,
        OptionalText(),
        flag="--redis-url",
        metavar="URL",
        shown="no Redis: counters and revocations in memory, per process",
        help="share rate-limit counters and revocations between replicas through Redis: "
        "`redis://[user:password@]host[:port][/db]`, `rediss://` for TLS; several "
        "comma-separated hosts in cluster and sentinel mode",
        doc="(see [Rate limits and IP filtering](#rate-limits-and-ip-filtering) and "
        "[Opaque tokens and revocation](#opaque-tokens-and-revocation))",
    )
    redis_mode: str = option(
        "standalone",
        Text(choices=MODES),
        flag="--redis-mode",
        metavar="MODE",
        help="`standalone`; `cluster` (the URL names startup nodes); `sentinel` (the URL names "
        "the sentinels)",
    )
    redis_sentinel_master: str = option(
        "mymaster",
        Text(),
        flag="--redis-sentinel-master",
        metavar="NAME",
        help="the master's name in sentinel mode",
    )
    redis_timeout: float = option(
        0.05,
        Amount(1, 10_000, whole=True, scale=0.001),
        flag="--redis-timeout-ms",
        metavar="MS",
        help="each Redis call may take at most this long; slower counts as a failure",
    )
    max_buckets: int = option(
        100_000,
        Count(1, 100_000_000),
        flag="--ratelimit-max-buckets",
        help="rate-limit buckets kept in memory at most (least recently used dropped first)",
    )
    bruteforce_max_keys: int = option(
        100_000,
        Count(1, 100_000_000),
        flag="--bruteforce-max-keys",
        help="brute-force failure counters, and blocks, kept at most (each; the oldest dropped "
        "first)",
        doc="(see [Brute-force blocking](#brute-force-blocking))",
    )
    #: Redis calls in flight at most (per node in cluster mode); more wait within the timeout.
    redis_max_connections: int = 64
    #: Consecutive failed calls that open the circuit (stop calling Redis; failure mode applies).
    failure_threshold: int = 3
    #: While the circuit is open, Redis is pinged this often (seconds).
    probe_interval: float = 0.5
    #: Each replica re-reads the shared brute-force blocks this often (seconds).
    blocks_refresh_interval: float = 1.0

    def validate(self) -> None:
        if self.redis_url is not None:
            parse_redis_url(self.redis_url, mode=self.redis_mode)  # refused now: exit 2
        elif self.redis_mode != "standalone":
            raise ConfigError(f"--redis-mode {self.redis_mode} needs --redis-url")
