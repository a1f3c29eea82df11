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
from authz.settings.connections import ConnectionSettings
from authz.settings.declare import Section, option
from authz.settings.kinds import (
    Amount,
    Count,
    Directory,
    ExistingFile,
    Listen,
    OptionalListen,
    OptionalText,
    Paths,
    Text,
)
from authz.settings.kubernetes import KubernetesSettings
from authz.settings.listen import ListenAddress
from authz.settings.ratelimit import RateLimitSettings
from authz.settings.tls import TlsSettings

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
        shown="no files; `--kubernetes` is then required",
        help="AuthPolicy file or directory (searched recursively for `*.yaml`, `*.yml`, "
        "`*.json`); repeatable; reloaded on change",
    )
    allowed_hosts: Path | None = option(
        None,
        ExistingFile(),
        flag="--allowed-hosts",
        shown="no restriction: a policy may claim any host",
        help="YAML mapping of namespace to the host patterns its AuthPolicies may claim, e.g. "
        '`{shop: [orders.example.com, "*.shop.example.com"]}`; `"*"` grants every host. A '
        "policy with a host outside its namespace's grants is not served (`HostNotAllowed`); "
        "reloaded on change",
        doc="(see [Host ownership](#host-ownership))",
    )
    #: How often policy files (and the --allowed-hosts file) are checked for changes (seconds).
    poll_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class ServerSettings(Section):
    """Listeners and processes."""

    grpc_listen: ListenAddress = option(
        ListenAddress("127.0.0.1", 9191),
        Listen(),
        flag="--grpc-listen",
        help="ext_authz `envoy.service.auth.v3.Authorization/Check` and `grpc.health.v1.Health`: "
        "`HOST:PORT` or `unix:/path/to.sock`",
    )
    http_listen: ListenAddress = option(
        ListenAddress("127.0.0.1", 9090),
        Listen(),
        flag="--http-listen",
        help="`GET /healthz` (200 while alive), `GET /readyz` (200 after the first complete "
        "policy load, 503 before and while shutting down) and `GET /metrics`: `HOST:PORT`",
    )
    admin_listen: ListenAddress = option(
        ListenAddress("127.0.0.1", 9192),
        Listen(),
        flag="--admin-listen",
        help="the admin gRPC API `authz.v1.Admin` (`Explain`, `ListPolicies`, `Revoke`, "
        "`ListRevocations`, `ListBlocks`, `ClearBlocks`; used by `authz explain`, `authz revoke` "
        "and `authz blocks`): `HOST:PORT` or `unix:/path/to.sock`. Explain receives tokens, "
        "Revoke refuses them and ClearBlocks lifts blocks: keep it on "
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
    """Token verification: limits, and DPoP proofs of sender-constrained tokens."""

    dpop_proof_window: float = option(
        60.0,
        Amount(1, 600, whole=True),
        flag="--dpop-proof-window",
        metavar="SECONDS",
        help="a DPoP proof is accepted while its `iat` is at most this far from now (either "
        "way), and its `jti` is remembered that long to refuse a replay",
        doc="(see [Sender-constrained tokens](#sender-constrained-tokens-dpop-and-mtls))",
    )
    dpop_replay_cache_size: int = option(
        100_000,
        Count(1, 10_000_000),
        flag="--dpop-replay-cache-size",
        help="DPoP proofs remembered per process for replay detection; when it is full of "
        "proofs younger than the window, new proofs are refused (503) rather than forgetting one",
    )
    dpop_nonce_secret: str | None = option(
        None,
        OptionalText(),
        env="AUTHZ_DPOP_NONCE_SECRET",
        shown="random per start",
        help="the key of the DPoP nonces handed out for issuers with `dpopNonce: true`; replicas "
        "that serve the same clients need the same value (`--workers N` share one by themselves)",
    )
    #: Tokens longer than this (bytes) are rejected before parsing.
    max_token_bytes: int = 8 * 1024
    #: Verified tokens remembered (LRU); 0 disables the cache.
    cache_size: int = 10_000


@dataclass(frozen=True, slots=True)
class IntrospectionSettings(Section):
    """Opaque tokens (introspection) and revocation."""

    secrets_dir: Path = option(
        Path("/etc/authz/secrets"),
        Directory(),
        flag="--secrets-dir",
        help="client secrets of `issuers[].introspection.clientSecretRef` are read from "
        "`DIR/<namespace>/<name>/<key>`, the layout of a mounted Secret",
        doc="(see [Opaque tokens and revocation](#opaque-tokens-and-revocation))",
    )
    #: One introspection call (connect, send, answer) may take at most this long (seconds).
    timeout: float = 2.0
    #: An introspection answer larger than this (bytes) is refused.
    max_response_bytes: int = 64 * 1024
    #: Active introspection answers remembered (LRU).
    cache_size: int = 10_000
    #: Inactive answers remembered (an LRU of their own).
    negative_cache_size: int = 10_000
    #: A larger answer is used but not cached (bounds the cache's memory with cache_size).
    max_cached_answer_bytes: int = 8 * 1024
    #: An inactive answer is remembered at most this long (seconds), within cacheSeconds.
    negative_cache_seconds: float = 5.0
    #: Calls to introspection endpoints in flight at once, all endpoints together.
    max_concurrent_calls: int = 32
    #: Distinct tokens waiting for an answer at once; beyond that, new ones get 503 at once.
    max_pending: int = 1024
    #: Calls per second per endpoint (a token bucket of `call_burst`), so a flood of made-up
    #: tokens cannot be relayed to the issuer.
    call_rate: float = 100.0
    call_burst: int = 200
    #: After this many failed calls in a row an endpoint is not called for `breaker_open`
    #: seconds (cached answers keep serving), then one call probes it.
    breaker_threshold: int = 5
    breaker_open: float = 5.0
    #: Revocations kept at most (a Revoke beyond that is refused).
    max_revocations: int = 100_000


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
class ResponseSettings(Section):
    """Response protection (Envoy's ext_proc filter: responseBody redactions)."""

    ext_proc_listen: ListenAddress | None = option(
        None,
        OptionalListen(),
        flag="--ext-proc-listen",
        shown="off; with `--grpc-server grpcio` the check listener serves it too",
        help="a separate listener (grpcio) for `envoy.service.ext_proc.v3.ExternalProcessor/"
        "Process`, needed with the `h2` engine, which serves unary calls only: `HOST:PORT` or "
        "`unix:/path/to.sock`",
        doc="(see [Response protection](#response-protection))",
    )
    body_max_bytes: int = option(
        1024 * 1024,
        Count(1024, 64 * 1024 * 1024),
        flag="--response-body-max-bytes",
        metavar="BYTES",
        help="a response body on a rule with `responseBody` larger than this cannot be redacted: "
        "502, unless the rule says `onUnparseable: passThrough`",
    )


@dataclass(frozen=True, slots=True)
class ClientSettings(Section):
    """Client address (IP filtering, sourceIP rate-limit keys)."""

    trusted_proxy_hops: int = option(
        0,
        Count(0, 64),
        flag="--trusted-proxy-hops",
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
    connections: ConnectionSettings = field(default_factory=ConnectionSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    jwks: JwksSettings = field(default_factory=JwksSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    introspection: IntrospectionSettings = field(default_factory=IntrospectionSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    response: ResponseSettings = field(default_factory=ResponseSettings)
    client: ClientSettings = field(default_factory=ClientSettings)

    def __post_init__(self) -> None:
        """Checks across sections (each section checks its own fields)."""
        if self.tls.enabled and self.server.grpc_listen.path is not None:
            raise ConfigError(
                f"--tls-cert needs a HOST:PORT --grpc-listen, not {self.server.grpc_listen}: a "
                "Unix socket is reached from inside the pod only, where TLS adds nothing (drop "
                "--tls-cert, or listen on e.g. 0.0.0.0:9191 for clients across the network)"
            )
