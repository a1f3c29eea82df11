"""The rate-limit and client-address flags: parsing, environment, and refusals (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz import cli
from authz.errors import ConfigError
from authz.ratelimit.factory import RedisAddress, parse_redis_url
from authz.settings import ClientSettings, RateLimitSettings

POLICIES = str(Path(__file__).resolve().parents[2] / "examples" / "reference")


def settings(*flags: str) -> tuple[RateLimitSettings, ClientSettings]:
    args = cli._build_parser().parse_args(["serve", "--policies", POLICIES, *flags])
    built = cli.serve_settings(args)
    return built.ratelimit, built.client


def test_defaults_are_memory_and_the_peer_address() -> None:
    ratelimit, client = settings()
    assert ratelimit == RateLimitSettings()
    assert client == ClientSettings(trusted_proxy_hops=0)


def test_flags_reach_the_settings() -> None:
    ratelimit, client = settings(
        "--redis-url",
        "rediss://u:p@r1:7000,r2:7001",
        "--redis-mode",
        "cluster",
        "--redis-timeout-ms",
        "25",
        "--ratelimit-max-buckets",
        "5000",
        "--trusted-proxy-hops",
        "2",
    )
    assert ratelimit == RateLimitSettings(
        redis_url="rediss://u:p@r1:7000,r2:7001",
        redis_mode="cluster",
        redis_timeout=0.025,
        max_buckets=5000,
    )
    assert client == ClientSettings(trusted_proxy_hops=2)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--redis-url", "http://x"], "--redis-url: must start with redis:// or rediss://"),
        (["--redis-mode", "cluster"], "--redis-mode cluster needs --redis-url"),
        (["--redis-url", "redis://a,b"], "--redis-url: several hosts need --redis-mode"),
        (["--redis-url", "redis://a/x"], "--redis-url: the path must be a database number"),
        (["--redis-url", "redis://a:99999"], "--redis-url: bad host"),
        (["--redis-timeout-ms", "0"], "--redis-timeout-ms: expected a whole number from 1"),
        (["--trusted-proxy-hops", "-1"], "--trusted-proxy-hops: expected a whole number from 0"),
        (["--ratelimit-max-buckets", "lots"], "--ratelimit-max-buckets: expected"),
    ],
)
def test_bad_values_are_refused_naming_the_flag(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(*flags)
    assert str(raised.value).startswith(message)


def test_environment_variables_set_the_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTHZ_TRUSTED_PROXY_HOPS", "x")
    assert cli.main(["serve", "--policies", POLICIES]) == 2
    assert "--trusted-proxy-hops: expected a whole number" in capsys.readouterr().err


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
