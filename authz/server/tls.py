"""TLS for the listeners: the certificate, key and client CA read, checked, served and renewed.

`ServerTls.load` reads the files named by --tls-cert, --tls-key and --tls-client-ca and refuses
what it cannot use with a message naming the flag (exit 2 before anything listens). Both
engines get their TLS from it:

- the h2 engine (and any asyncio server) an `ssl.SSLContext`: TLS 1.2 or later, ALPN `h2`,
  TLS 1.2 cipher suites HTTP/2 allows, no renegotiation, and with a client CA a client
  certificate required during the handshake;
- grpcio (the grpcio engine, the admin API) dynamic server credentials.

Renewal without a restart: cert-manager and the kubelet replace a Secret's files in place (a
symlink swap), so `watch` re-reads the files every poll interval and, when their bytes change
and the new set is usable, makes it current. Each new handshake takes the current one: the
SSLContext given to the server picks it in its SNI callback (called on every ClientHello, with
or without a server name), grpcio asks its certificate fetcher before each handshake.
Connections already open keep the keys they agreed on, so no check in flight is dropped. A set
that is not usable (a half-written renewal, a key that does not match) is logged and the last
good one keeps serving.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from authz.errors import ConfigError
from authz.settings.listen import ListenAddress
from authz.settings.tls import TlsSettings

log = logging.getLogger(__name__)

#: TLS 1.2 suites HTTP/2 accepts (RFC 9113 section 9.2.2: AEAD with ephemeral key exchange);
#: TLS 1.3 suites are all fine and are not affected by this list.
_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
ALPN = "h2"
#: A certificate bundle or key file larger than this is refused unread: none is near it, and a
#: wrong path (a log, a device) must not be read into memory.
MAX_FILE_BYTES = 1024 * 1024


#: authz_tls_reloads_total results.
RELOADED: Final = "reloaded"
REFUSED: Final = "refused"


class TlsObserver(Protocol):
    """Told what is served (metrics): the certificate's expiry, each reload or refusal."""

    def tls_certificate(self, not_after: float) -> None: ...

    def tls_reload(self, result: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Material:
    """The bytes of the files, as read together."""

    cert: bytes
    key: bytes
    client_ca: bytes | None


def _read(path: Path, *, flag: str) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{flag}: {path} is larger than {MAX_FILE_BYTES // 1024} KiB: not a PEM file"
        )
    return data


def _pair(settings: TlsSettings) -> tuple[Path, Path]:
    """The certificate and key files (TlsSettings holds both or neither)."""
    if settings.cert is None or settings.key is None:
        raise ConfigError("--tls-cert and --tls-key are both needed")
    return settings.cert, settings.key


def read_material(settings: TlsSettings) -> Material:
    cert, key = _pair(settings)
    return Material(
        cert=_read(cert, flag="--tls-cert"),
        key=_read(key, flag="--tls-key"),
        client_ca=(
            _read(settings.client_ca, flag="--tls-client-ca")
            if settings.client_ca is not None
            else None
        ),
    )


def _certificates(data: bytes, *, flag: str, path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(
            f"{flag}: {path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
        ) from None


def check_material(settings: TlsSettings, material: Material) -> x509.Certificate:
    """The server certificate, once every file is known to be usable; ConfigError otherwise."""
    cert, key = _pair(settings)
    leaf = _certificates(material.cert, flag="--tls-cert", path=cert)[0]
    try:
        load_pem_private_key(material.key, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"--tls-key: {key} holds no unencrypted PEM private key (expected "
            "-----BEGIN PRIVATE KEY----- or an RSA/EC key without a passphrase)"
        ) from None
    if material.client_ca is not None:
        assert settings.client_ca is not None
        _certificates(material.client_ca, flag="--tls-client-ca", path=settings.client_ca)
    return leaf


def ssl_context(settings: TlsSettings, material: Material) -> ssl.SSLContext:
    """A server context for `material` (checked by check_material)."""
    cert, key = _pair(settings)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_CIPHERS)
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols([ALPN])
    try:
        # The ssl module loads a chain from files only; the bytes are compared afterwards.
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"--tls-key: {key} is not the private key of the certificate in "
            f"--tls-cert {cert} ({exc.reason or exc})"
        ) from None
    if material.client_ca is not None:
        context.load_verify_locations(cadata=material.client_ca.decode("ascii", "replace"))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _describe(leaf: x509.Certificate) -> str:
    return (
        f"{leaf.subject.rfc4514_string()}, valid until {leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z"
    )


@dataclass(frozen=True, slots=True)
class _Current:
    material: Material
    context: ssl.SSLContext
    leaf: x509.Certificate


class ServerTls:
    """The listeners' TLS: the current certificate set, renewed by `watch`."""

    def __init__(
        self, settings: TlsSettings, current: _Current, *, observer: TlsObserver | None = None
    ) -> None:
        self.settings = settings
        self._current = current
        self._observer = observer
        #: How many times a renewed set was taken into use (tests and logs).
        self.reloads = 0
        #: The last refusal (files read, or None when unreadable; the reason), logged once.
        self._refused: tuple[Material | None, str] | None = None
        self._served(current)

    @classmethod
    def load(cls, settings: TlsSettings, *, observer: TlsObserver | None = None) -> ServerTls:
        """Read and check the files now; ConfigError naming the flag of a file not usable."""
        return cls(settings, _build(settings, read_material(settings)), observer=observer)

    def _served(self, current: _Current) -> None:
        if self._observer is not None:
            self._observer.tls_certificate(current.leaf.not_valid_after_utc.timestamp())

    @property
    def mutual(self) -> bool:
        return self.settings.client_ca is not None

    def describe(self) -> str:
        """For the startup log: what is served, and whether clients must present a certificate."""
        client = "client certificates required" if self.mutual else "no client certificate"
        return f"TLS ({_describe(self._current.leaf)}; {client})"

    def server_context(self) -> ssl.SSLContext:
        """The context to give an asyncio server: each handshake switches to the current one."""
        base = ssl_context(self.settings, self._current.material)

        def select(connection: ssl.SSLObject, _name: str | None, given: ssl.SSLContext) -> None:
            current = self._current.context
            if current is not given:
                connection.context = current

        base.sni_callback = select
        return base

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """grpcio server credentials that take a renewed set at the next handshake."""
        served = self._current

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            nonlocal served  # called by grpcio's threads before each handshake
            current = self._current
            if current is served:
                return None
            served = current
            return _grpc_configuration(current.material)

        return grpc.dynamic_ssl_server_credentials(
            _grpc_configuration(served.material),
            fetch,
            require_client_authentication=self.mutual,
        )

    async def refresh(self) -> bool:
        """Re-read the files; True when a changed, usable set became current."""
        try:
            material = await asyncio.to_thread(read_material, self.settings)
        except ConfigError as exc:  # a file briefly missing during a swap: try again later
            self._refuse(None, str(exc))
            return False
        if material == self._current.material:
            self._refused = None
            return False
        if self._refused is not None and material == self._refused[0]:
            return False
        try:
            current = await asyncio.to_thread(_build, self.settings, material)
        except ConfigError as exc:
            self._refuse(material, str(exc))
            return False
        self._current, self._refused = current, None
        self.reloads += 1
        log.info("TLS certificate reloaded: %s", _describe(current.leaf))
        self._served(current)
        if self._observer is not None:
            self._observer.tls_reload(RELOADED)
        return True

    def _refuse(self, material: Material | None, reason: str) -> None:
        """Log and count a refusal once, not at every poll while the files stay as they are."""
        if self._refused != (material, reason):
            log.warning("TLS files changed but are not usable, keeping the previous: %s", reason)
            if self._observer is not None:
                self._observer.tls_reload(REFUSED)
        self._refused = (material, reason)

    async def watch(self) -> None:
        """Poll the files for renewals, for as long as the process runs (a background task)."""
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            await self.refresh()


def _build(settings: TlsSettings, material: Material) -> _Current:
    leaf = check_material(settings, material)
    context = ssl_context(settings, material)
    if read_material(settings) != material:
        raise ConfigError("the files changed while they were read")
    return _Current(material, context, leaf)


def _grpc_configuration(material: Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key, material.cert)], root_certificates=material.client_ca
    )


def admin_uses_tls(address: ListenAddress) -> bool:
    """The admin API takes the check listener's TLS unless it is reachable from inside the pod
    only (loopback, a Unix socket), where `authz explain` calls it without a certificate."""
    if address.path is not None or address.host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(address.host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return True
