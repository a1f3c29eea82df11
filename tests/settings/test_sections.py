"""The settings sections validate themselves when built, like httpx's Timeout: a choice no
flag offers or a combination that cannot work is refused, naming the flags; ranges bound what
a user may type and are checked on input only (see test_kinds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.errors import ConfigError
from authz.settings import (
    JwksSettings,
    KubernetesSettings,
    ListenAddress,
    RateLimitSettings,
    ServerSettings,
    Settings,
    TelemetrySettings,
)

SOCKET = ListenAddress(path="/run/authz.sock")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: ServerSettings(grpc_server="nghttp2"),
            "--grpc-server: expected one of h2, grpcio",
        ),
        (
            lambda: ServerSettings(event_loop="trio"),
            "--event-loop: expected one of uvloop, asyncio",
        ),
        (lambda: TelemetrySettings(log_level="trace"), "--log-level: expected one of debug"),
        (lambda: RateLimitSettings(redis_mode="ring"), "--redis-mode: expected one of standalone"),
        (lambda: ServerSettings(workers=2), "--workers 2 needs --grpc-listen unix:PATH"),
        (
            lambda: RateLimitSettings(redis_mode="sentinel"),
            "--redis-mode sentinel needs --redis-url",
        ),
        (lambda: RateLimitSettings(redis_url="http://r"), "--redis-url: must start with redis://"),
        (
            lambda: RateLimitSettings(redis_url="redis://a,b"),
            "--redis-url: several hosts need --redis-mode cluster or sentinel",
        ),
        (lambda: KubernetesSettings(selector="shard=eu"), "--selector needs --kubernetes"),
        (lambda: KubernetesSettings(namespaces=("shop",)), "--namespace needs --kubernetes"),
        (lambda: KubernetesSettings(kubeconfig=Path("k")), "--kubeconfig needs --kubernetes"),
    ],
)
def test_a_section_refuses_what_cannot_work(build: object, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build()  # type: ignore[operator]
    assert str(raised.value).startswith(message)


def test_what_works_is_built() -> None:
    assert ServerSettings(workers=4, grpc_listen=SOCKET).workers == 4
    shared = RateLimitSettings(redis_url="redis://a:1,b:2", redis_mode="cluster")
    assert shared.redis_mode == "cluster"
    assert KubernetesSettings(enabled=True, selector="shard=eu").selector == "shard=eu"
    assert Settings().server.grpc_listen == ListenAddress("127.0.0.1", 9191)


def test_ranges_are_for_what_users_type() -> None:
    """Tests and tools may ask for sub-second timings no operator needs."""
    assert JwksSettings(refresh_interval=0.05).refresh_interval == 0.05
    assert RateLimitSettings(redis_timeout=30.0).redis_timeout == 30.0
