"""TLS on the listeners: a certificate and key, and optionally the CA that client certificates
must chain to (mutual TLS).

Off by default: next to Envoy in one pod the sidecar listens on loopback or a Unix socket, and
encryption there buys nothing. Standalone mode, where Envoy, Envoy Gateway or Istio reach the
sidecar across the network, turns it on. The files are only named here (and must exist); their
contents are read, checked and watched for renewal by the server side (authz.server.tls), which
names the flag of a file it cannot use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from authz.errors import ConfigError
from authz.settings.declare import Section, option
from authz.settings.kinds import ExistingFile


@dataclass(frozen=True, slots=True)
class TlsSettings(Section):
    """TLS on the check and admin listeners."""

    cert: Path | None = option(
        None,
        ExistingFile(),
        flag="--tls-cert",
        shown="off: plaintext",
        help="serve checks over TLS (ALPN `h2`, TLS 1.2 or later) with this PEM certificate chain "
        "(server certificate first); also the admin API when `--admin-listen` is neither loopback "
        "nor a Unix socket. Needs `--tls-key` and a `HOST:PORT` `--grpc-listen`. Reloaded when the "
        "file changes (a renewed Secret), without dropping connections",
        doc="(see [TLS](#tls))",
    )
    key: Path | None = option(
        None,
        ExistingFile(),
        flag="--tls-key",
        shown="—",
        help="the PEM private key of `--tls-cert` (unencrypted); reloaded with it",
    )
    client_ca: Path | None = option(
        None,
        ExistingFile(),
        flag="--tls-client-ca",
        shown="no client certificate asked for",
        help="mutual TLS: require a client certificate issued by one of the CA certificates in "
        "this PEM file; a client without one is refused during the handshake. Reloaded on change",
    )
    #: How often the files are checked for changes (seconds).
    poll_interval: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.cert is not None

    def validate(self) -> None:
        if self.cert is not None and self.key is None:
            raise ConfigError("--tls-cert needs --tls-key: the private key of the certificate")
        if self.key is not None and self.cert is None:
            raise ConfigError("--tls-key needs --tls-cert: the certificate of the key")
        if self.client_ca is not None and self.cert is None:
            raise ConfigError(
                "--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS with a "
                "client certificate required"
            )
