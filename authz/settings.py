"""Settings: what the CLI parsed, as frozen dataclasses, one per concern.

The CLI turns flags and AUTHZ_* environment variables into these; everything below the CLI
receives only the part it needs, never argparse namespaces or os.environ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class JwksSettings:
    """How issuer keys are fetched and cached."""

    #: Keys are refetched this often (seconds) even without a cause.
    refresh_interval: float = 300.0
    #: A token naming an unknown kid refetches at most this often per issuer (seconds).
    unknown_kid_min_interval: float = 10.0
    #: One fetch (connect + read) may take at most this long (seconds).
    fetch_timeout: float = 5.0
    #: A JWKS or discovery document larger than this (bytes) is refused.
    max_document_bytes: int = 512 * 1024
    #: After a failed fetch, retry after this delay (seconds), doubling up to refresh_interval.
    retry_initial: float = 1.0


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Bearer-token verification limits."""

    #: Tokens longer than this (bytes) are rejected before parsing.
    max_token_bytes: int = 8 * 1024
    #: Verified tokens remembered (LRU); 0 disables the cache.
    cache_size: int = 10_000


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Where policies come from."""

    #: Files or directories (searched recursively for *.yaml / *.yml / *.json).
    paths: tuple[Path, ...] = ()
    #: How often policy files are checked for changes (seconds).
    poll_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """The Kubernetes policy source (`--kubernetes`): what to watch, and the leader Lease."""

    #: Watch AuthPolicy resources in the cluster.
    enabled: bool = False
    #: A kubeconfig file; None: in-cluster config, then KUBECONFIG (or ~/.kube/config).
    kubeconfig: Path | None = None
    #: Namespaces to watch; empty: all namespaces.
    namespaces: tuple[str, ...] = ()
    #: A label selector (e.g. "shard=eu"); only matching AuthPolicies are served.
    selector: str | None = None
    #: This replica's identity in the leader Lease (POD_NAME); None: hostname and process id.
    identity: str | None = None
    #: The Lease's namespace (POD_NAMESPACE); None: the in-cluster or kubeconfig namespace.
    lease_namespace: str | None = None
    #: The Lease's name; None: derived from namespaces and selector, so shards elect separately.
    lease_name: str | None = None
    #: A leader that has not renewed for this long (seconds) is replaced.
    lease_duration: float = 15.0
    #: A changed resource waits this long (seconds) for more changes before a snapshot is built.
    coalesce_quiet: float = 0.1
    #: ...but never longer than this (seconds) after the first change of a burst.
    coalesce_max: float = 1.0
    #: A watch that delivers nothing, not even a bookmark, for this long (seconds) is restarted.
    stall_timeout: float = 90.0
    #: The server ends each watch after about this long (seconds; timeoutSeconds, jittered).
    watch_timeout: float = 300.0
    #: Reconnect backoff after a failure: first delay and cap (seconds), with jitter.
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Where rate-limit counters live, and how a shared backend's outage is handled."""

    #: None: counters in memory, per process. Else a redis:// or rediss:// (TLS) URL.
    redis_url: str | None = None
    #: "standalone", "cluster" or "sentinel" (the URL then names the sentinels).
    redis_mode: str = "standalone"
    #: The master's name in sentinel mode.
    redis_sentinel_master: str = "mymaster"
    #: One Redis call (one check) may take at most this long (seconds).
    redis_timeout: float = 0.05
    #: Redis calls in flight at most (per node in cluster mode); more wait within the timeout.
    redis_max_connections: int = 64
    #: Consecutive failed calls that open the circuit (stop calling Redis; failure mode applies).
    failure_threshold: int = 3
    #: While the circuit is open, Redis is pinged this often (seconds).
    probe_interval: float = 0.5
    #: The in-memory limiter keeps at most this many buckets (least recently used dropped).
    max_buckets: int = 100_000


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How the client's IP address is found (IP filtering, sourceIP rate-limit keys)."""

    #: 0: the peer address Envoy reports. N > 0: the Nth address from the right of X-Forwarded-For.
    trusted_proxy_hops: int = 0


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Listeners."""

    #: ext_authz + grpc.health.v1: "HOST:PORT" or "unix:/path/to.sock".
    grpc_listen: str = "127.0.0.1:9191"
    #: /healthz, /readyz (and /metrics): "HOST:PORT".
    http_listen: str = "127.0.0.1:9090"
    #: The admin gRPC API (authz.v1.Admin: Explain, ListPolicies): "HOST:PORT" or "unix:/path".
    admin_listen: str = "127.0.0.1:9192"
    #: On SIGTERM, in-flight checks get this long to finish (seconds).
    shutdown_grace: float = 10.0
    #: The check server's engine: "h2" (our HTTP/2 server) or "grpcio" (grpcio's asyncio server).
    grpc_server: str = "h2"
    #: Processes answering checks; with more than one, --grpc-listen must be a unix: path and
    #: each worker listens on its own socket (see authz.workers).
    workers: int = 1
    #: "uvloop" or "asyncio" (see authz.server.eventloop).
    event_loop: str = "uvloop"


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """The decision log (tracing is configured by the standard OTEL_* variables)."""

    #: Fraction of allowed decisions written to the decision log (denials are always written).
    log_allow_sample_rate: float = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `authz serve` needs."""

    server: ServerSettings = field(default_factory=ServerSettings)
    policies: PolicySettings = field(default_factory=PolicySettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    jwks: JwksSettings = field(default_factory=JwksSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    log_level: str = "info"
