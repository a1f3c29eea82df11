"""--redis-url as settings hold it: hosts, credentials, database and TLS, checked when read.

The URL's meaning depends on --redis-mode (several hosts are the startup nodes of a cluster or
the sentinels; a cluster has only database 0), so RateLimitSettings checks the two together.
Credentials are kept for the client and never appear in `describe`, which is what gets logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from authz.errors import ConfigError

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
