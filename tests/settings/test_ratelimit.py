"""--redis-url: hosts, credentials, database and TLS, read according to --redis-mode."""

from __future__ import annotations

import pytest

from authz.errors import ConfigError
from authz.settings.ratelimit import RedisAddress, parse_redis_url


@pytest.mark.parametrize(
    ("url", "mode", "expected"),
    [
        ("redis://h", "standalone", RedisAddress((("h", 6379),), None, None, 0, False)),
        ("rediss://secret@h:1/2", "standalone", RedisAddress((("h", 1),), None, "secret", 2, True)),
        ("redis://u:p%40ss@h", "standalone", RedisAddress((("h", 6379),), "u", "p@ss", 0, False)),
        (
            "redis://:pw@s1,s2:26380/1",
            "sentinel",
            RedisAddress((("s1", 26379), ("s2", 26380)), None, "pw", 1, False),
        ),
        ("redis://[::1]:7000", "cluster", RedisAddress((("::1", 7000),), None, None, 0, False)),
    ],
)
def test_redis_urls(url: str, mode: str, expected: RedisAddress) -> None:
    address = parse_redis_url(url, mode=mode)
    assert address == expected
    if address.password is not None:  # credentials never reach the description that is logged
        assert address.password not in address.describe(mode)


@pytest.mark.parametrize(
    ("url", "mode", "message"),
    [
        ("redis://h/1", "cluster", "--redis-url: Redis Cluster has only database 0"),
        ("redis://", "standalone", "--redis-url: a host is required"),
        ("redis://a,b", "standalone", "--redis-url: several hosts need --redis-mode"),
    ],
)
def test_redis_url_refusals(url: str, mode: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_redis_url(url, mode=mode)
