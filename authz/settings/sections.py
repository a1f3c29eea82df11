"""The settings of `authz serve`, one frozen section per concern, each setting declared once.

Settings gathers the sections; the larger ones live in modules of their own (kubernetes,
ratelimit), and a new concern is a new section there plus one field of Settings.

A field declared with `option(...)` is a setting a user can change (flag, environment variable,
kind, help: see authz.settings.declare); a plain field, documented by its comment, is a tuning
knob code sets (tests, benchmarks). The first line of a section's docstring titles its group of
flags in --help.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from authz.errors import ConfigError
from authz.settings.declare import Section, option
from authz.settings.kinds import (
    Amount,
    Count,
    Listen,
    Paths,
    Text,
)
from authz.settings.kubernetes import KubernetesSettings
from authz.settings.listen import ListenAddress
from authz.settings.ratelimit import RateLimitSettings

#: --grpc-server values: our HTTP/2 server (the default), or grpcio's asyncio server.
ENGINES: Final = ("h2", "grpcio")
#: --event-loop values.
EVENT_LOOPS: Final = ("uvloop", "asyncio")
#: --log-level values.
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class PolicySettings(Section):
    """Policy files."""

    paths: tuple[Path, ...] = option(
        (),
        Paths(),
        flag="--policies",
        metavar="PATH",
        shown="no files; `--kubernetes` is then required",
        help="AuthPolicy file or directory (searched recursively for `*.yaml`, `*.yml`, "
        "`*.json`); repeatable; reloaded on change",
    )
    #: How often policy files are checked for changes (seconds).
    poll_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class ServerSettings(Section):
    """Listeners and processes."""

    grpc_listen: ListenAddress = option(
        ListenAddress("127.0.0.1", 9191),
        Listen(),
        flag="--grpc-listen",
        metavar="ADDR",
        help="ext_authz `envoy.service.auth.v3.Authorization/Check` and `grpc.health.v1.Health`: "
        "`HOST:PORT` or `unix:/path/to.sock`",
    )
    http_listen: ListenAddress = option(
        ListenAddress("127.0.0.1", 9090),
        Listen(),
        flag="--http-listen",
        metavar="ADDR",
        help="`GET /healthz` (200 while alive), `GET /readyz` (200 after the first complete "
        "policy load, 503 before and while shutting down) and `GET /metrics`: `HOST:PORT`",
    )
    admin_listen: ListenAddress = option(
        ListenAddress("127.0.0.1", 9192),
        Listen(),
        flag="--admin-listen",
        metavar="ADDR",
        help="the admin gRPC API `authz.v1.Admin` (`Explain`, `ListPolicies`, `ListBlocks`, "
        "`ClearBlocks`; used by `authz explain` and `authz blocks`): `HOST:PORT` or "
        "`unix:/path/to.sock`. Explain receives tokens and ClearBlocks lifts blocks: keep it on "
        "loopback or behind a NetworkPolicy",
        doc="(see [Troubleshooting](#troubleshooting))",
    )
    grpc_server: str = option(
        "h2",
        Text(choices=ENGINES),
        flag="--grpc-server",
        metavar="ENGINE",
        help="the check server's engine: `h2` (built in, faster) or `grpcio` (grpcio's asyncio "
        "server)",
    )
    workers: int = option(
        1,
        Count(1, 64),
        flag="--workers",
        metavar="N",
        help="processes answering checks; more than 1 needs `--grpc-listen unix:PATH`, and "
        "worker i listens on PATH with `-i` before its suffix",
        doc="(see [Performance and workers](#performance-and-workers))",
    )
    event_loop: str = option(
        "uvloop",
        Text(choices=EVENT_LOOPS),
        flag="--event-loop",
        metavar="LOOP",
        help="the event loop: `uvloop` (faster) or `asyncio` (Python's own)",
    )
    #: On SIGTERM, in-flight checks get this long to finish (seconds).
    shutdown_grace: float = 10.0

    def validate(self) -> None:
        if self.workers > 1 and self.grpc_listen.path is None:
            raise ConfigError(
                f"--workers {self.workers} needs --grpc-listen unix:PATH (each worker listens "
                "on its own socket; Envoy balances over them as endpoints of one cluster)"
            )


@dataclass(frozen=True, slots=True)
class JwksSettings(Section):
    """Issuer keys."""

    refresh_interval: float = option(
        300.0,
        Amount(1, 86_400, whole=True),
        flag="--jwks-refresh-interval",
        metavar="SECONDS",
        help="issuer keys are refetched this often even without an unknown `kid`; a key removed "
        "from the issuer's JWKS stops verifying tokens, cached ones included, within this time",
    )
    #: A token naming an unknown kid refetches at most this often per issuer (seconds).
    unknown_kid_min_interval: float = 10.0
    #: One fetch (connect + read) may take at most this long (seconds).
    fetch_timeout: float = 5.0
    #: A JWKS or discovery document larger than this (bytes) is refused.
    max_document_bytes: int = 512 * 1024
    #: After a failed fetch, retry after this delay (seconds), doubling up to refresh_interval.
    retry_initial: float = 1.0


@dataclass(frozen=True, slots=True)
class TokenSettings(Section):
    """Bearer-token verification limits."""

    #: Tokens longer than this (bytes) are rejected before parsing.
    max_token_bytes: int = 8 * 1024
    #: Verified tokens remembered (LRU); 0 disables the cache.
    cache_size: int = 10_000


@dataclass(frozen=True, slots=True)
class TelemetrySettings(Section):
    """Logs: diagnostics on stderr, the decision log on stdout (traces: the OTEL_* variables)."""

    log_level: str = option(
        "info",
        Text(choices=LOG_LEVELS),
        flag="--log-level",
        metavar="LEVEL",
        help="log verbosity; logs go to stderr",
    )
    log_allow_sample_rate: float = option(
        1.0,
        Amount(0, 1),
        flag="--log-allow-sample-rate",
        metavar="RATE",
        help="fraction of allowed decisions written to the decision log on stdout; denials are "
        "always written",
        doc="(see [Decision log](#decision-log))",
    )


@dataclass(frozen=True, slots=True)
class ClientSettings(Section):
    """Client address (IP filtering, sourceIP rate-limit keys)."""

    trusted_proxy_hops: int = option(
        0,
        Count(0, 64),
        flag="--trusted-proxy-hops",
        metavar="N",
        help="`0`: the client address is Envoy's peer address; `N`: the Nth address from the "
        "right of `X-Forwarded-For`. Envoy with `use_remote_address: true` appends its own peer "
        "first, so behind T trusted proxies use T+1 (the Helm chart does this for you)",
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `authz serve` needs, by concern (the order of --help and the README)."""

    policies: PolicySettings = field(default_factory=PolicySettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    jwks: JwksSettings = field(default_factory=JwksSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
