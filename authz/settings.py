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
class ServerSettings:
    """Listeners."""

    #: ext_authz + grpc.health.v1: "HOST:PORT" or "unix:/path/to.sock".
    grpc_listen: str = "127.0.0.1:9191"
    #: /healthz, /readyz (and /metrics): "HOST:PORT".
    http_listen: str = "127.0.0.1:9090"
    #: On SIGTERM, in-flight checks get this long to finish (seconds).
    shutdown_grace: float = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `authz serve` needs."""

    server: ServerSettings = field(default_factory=ServerSettings)
    policies: PolicySettings = field(default_factory=PolicySettings)
    jwks: JwksSettings = field(default_factory=JwksSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    log_level: str = "info"
