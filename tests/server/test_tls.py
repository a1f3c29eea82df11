"""TLS and mutual TLS on the check listener (both engines) and the admin API, in process.

Clients are grpcio's secure channels (as Envoy would call over TLS) and, where a call must stay
open across a certificate renewal, raw HTTP/2 frames over an asyncio TLS stream. Renewals are
made as the kubelet makes them (tests.support.certs: one rename of `..data`), and picked up by
the server's own watcher; the tests wait for its reload counter, never for a guessed time.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import hpack
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz._gen.authz.v1 import admin_pb2 as apb
from authz.errors import ConfigError
from authz.jwt.verify import Verifier
from authz.policy.snapshot import EMPTY
from authz.ratelimit.memory import MemoryLimiter
from authz.server.admin import AdminServer, AdminServicer
from authz.server.grpcwire import frame
from authz.server.h2frames import PREFACE, Flag, Type, settings
from authz.server.h2frames import frame as h2frame
from authz.server.h2server import CHECK, CheckServer, build_check_server
from authz.server.listen import ListenAddress
from authz.server.servicer import AuthorizationServicer
from authz.server.tls import MAX_FILE_BYTES, ServerTls, admin_uses_tls
from authz.settings import TlsSettings
from authz.telemetry.metrics import Metrics
from tests.support.certs import Authority, Issued, SecretVolume, secret_volume
from tests.support.grpcclient import check_request
from tests.support.wait import until

LOOPBACK = ListenAddress(host="127.0.0.1", port=0)
ENGINES = ("h2", "grpcio")


@dataclass(frozen=True)
class Pki:
    ca: Authority
    client: Issued
    #: A client certificate from a CA the server does not trust.
    stranger: Issued
    volume: SecretVolume


@pytest.fixture(scope="module")
def authorities() -> tuple[Authority, Authority]:
    return Authority.create("test-ca"), Authority.create("other-ca")


@pytest.fixture
def pki(tmp_path: Path, authorities: tuple[Authority, Authority]) -> Pki:
    ca, other = authorities
    volume = secret_volume(tmp_path / "secret", ca.issue("authz-1"), ca=ca.cert)
    return Pki(ca, ca.issue("envoy", client=True), other.issue("envoy", client=True), volume)


def tls_settings(pki: Pki, *, mutual: bool) -> TlsSettings:
    return TlsSettings(
        cert=pki.volume.cert,
        key=pki.volume.key,
        client_ca=pki.volume.ca if mutual else None,
        poll_interval=0.01,
    )


@asynccontextmanager
async def check_server(engine: str, tls: ServerTls) -> AsyncIterator[CheckServer]:
    servicer = AuthorizationServicer(
        snapshot=lambda: EMPTY, limiter=MemoryLimiter(), verifier=Verifier()
    )
    server = build_check_server(engine, servicer, LOOPBACK, tls=tls)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


def secure_channel(
    server: CheckServer, *, ca: Authority, client: Issued | None = None
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return grpc.aio.secure_channel(f"localhost:{server.address.port}", credentials)


async def check(channel: grpc.aio.Channel) -> pb.CheckResponse:
    call = channel.unary_unary(
        CHECK.decode(),
        request_serializer=pb.CheckRequest.SerializeToString,
        response_deserializer=pb.CheckResponse.FromString,
    )
    answer: pb.CheckResponse = await call(check_request(host="nobody.test"), timeout=10)
    return answer


async def handshake(port: int, *, client: Issued | None = None, tmp: Path | None = None) -> str:
    """The common name of the certificate a new TLS connection is shown (no verification)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        tls = writer.get_extra_info("ssl_object")
        assert tls.selected_alpn_protocol() == "h2"
        der = tls.getpeercert(binary_form=True)
        name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    finally:
        writer.close()
    return name


@pytest.mark.parametrize("engine", ENGINES)
async def test_both_engines_answer_checks_over_tls_and_refuse_plaintext(
    engine: str, pki: Pki
) -> None:
    tls = ServerTls.load(tls_settings(pki, mutual=False))
    async with check_server(engine, tls) as server:
        async with secure_channel(server, ca=pki.ca) as channel:
            answer = await check(channel)
        assert answer.denied_response.status.code == 403
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.address.port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await check(plain)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await handshake(server.address.port) == "CN=authz-1"


@pytest.mark.parametrize("engine", ENGINES)
async def test_mutual_tls_needs_a_client_certificate_from_the_ca(engine: str, pki: Pki) -> None:
    tls = ServerTls.load(tls_settings(pki, mutual=True))
    async with check_server(engine, tls) as server:
        async with secure_channel(server, ca=pki.ca, client=pki.client) as channel:
            assert (await check(channel)).denied_response.status.code == 403
        for client in (None, pki.stranger):
            async with secure_channel(server, ca=pki.ca, client=client) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await check(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
async def test_tls_before_1_2_is_refused(pki: Pki) -> None:
    tls = ServerTls.load(tls_settings(pki, mutual=False))
    async with check_server("h2", tls) as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection("127.0.0.1", server.address.port, ssl=context)


# --- renewal ------------------------------------------------------------------------------------

_HEADERS = [
    (":method", "POST"),
    (":scheme", "https"),
    (":path", CHECK.decode()),
    (":authority", "authz"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


async def _answer(reader: asyncio.StreamReader) -> pb.CheckResponse:
    """Read frames until stream 1 ends; its DATA is one gRPC message."""
    body = b""
    while True:
        head = await asyncio.wait_for(reader.readexactly(9), 10)
        high, low, kind, flags, stream = struct.unpack(">BHBBI", head)
        payload = await reader.readexactly(high << 16 | low)
        if stream == 1 and kind == Type.DATA:
            body += payload
        if stream == 1 and flags & Flag.END_STREAM:
            return pb.CheckResponse.FromString(body[5:])


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_renewed_certificate_is_served_without_a_restart_and_open_calls_finish(
    engine: str, pki: Pki, authorities: tuple[Authority, Authority]
) -> None:
    _, other = authorities
    tls = ServerTls.load(tls_settings(pki, mutual=False))
    watcher = asyncio.create_task(tls.watch())
    try:
        async with check_server(engine, tls) as server:
            port = server.address.port
            context = ssl.create_default_context(cadata=pki.ca.cert.decode())
            context.set_alpn_protocols(["h2"])
            reader, writer = await asyncio.open_connection(
                "localhost", port, ssl=context, server_hostname="localhost"
            )
            # A call in flight across the renewal: headers now, its message afterwards.
            encoder = hpack.Encoder()
            writer.write(
                PREFACE
                + settings({})
                + h2frame(Type.HEADERS, Flag.END_HEADERS, 1, encoder.encode(_HEADERS))
            )
            await writer.drain()
            # The renewed certificate comes from another CA: a new connection shows which.
            pki.volume.renew(other.issue("authz-2"), ca=pki.ca.cert)
            await until(lambda: tls.reloads == 1, what="the renewed certificate loaded")
            assert await handshake(port) == "CN=authz-2"
            async with secure_channel(server, ca=other) as channel:
                assert (await check(channel)).denied_response.status.code == 403
            async with secure_channel(server, ca=pki.ca) as channel:
                with pytest.raises(grpc.aio.AioRpcError):
                    await check(channel)
            message = frame(check_request(host="nobody.test").SerializeToString())
            writer.write(h2frame(Type.DATA, Flag.END_STREAM, 1, message))
            answer = await _answer(reader)
            assert answer.denied_response.status.code == 403
            writer.close()
    finally:
        watcher.cancel()


async def test_an_unusable_renewal_keeps_the_last_good_certificate(pki: Pki) -> None:
    metrics = Metrics()

    def reloads(result: str) -> float | None:
        return metrics.registry.get_sample_value("authz_tls_reloads_total", {"result": result})

    def expiry() -> float | None:
        return metrics.registry.get_sample_value("authz_tls_certificate_expiry_timestamp_seconds")

    tls = ServerTls.load(tls_settings(pki, mutual=False), observer=metrics)
    first = x509.load_pem_x509_certificate(pki.volume.cert.read_bytes())
    assert expiry() == first.not_valid_after_utc.timestamp()
    async with check_server("h2", tls) as server:
        mismatched = replace(pki.ca.issue("authz-2"), key=pki.ca.issue("authz-3").key)
        pki.volume.renew(mismatched, ca=pki.ca.cert)
        assert not await tls.refresh()
        assert not await tls.refresh()  # refused once, not retried until the files change
        assert reloads("refused") == 1
        pki.volume.renew(replace(pki.ca.issue("authz-2"), cert=b"not a certificate"))
        assert not await tls.refresh()
        (pki.volume.root / "..data").unlink()  # the files gone for a while: said once
        assert not await tls.refresh()
        assert not await tls.refresh()
        assert reloads("refused") == 3
        assert await handshake(server.address.port) == "CN=authz-1"
        renewed = pki.ca.issue("authz-4")
        pki.volume.renew(renewed, ca=pki.ca.cert)
        assert await tls.refresh()
        assert await handshake(server.address.port) == "CN=authz-4"
        assert (tls.reloads, reloads("reloaded"), reloads("refused")) == (1, 1, 3)
        assert expiry() == renewed.certificate.not_valid_after_utc.timestamp()


async def test_a_renewed_client_ca_is_trusted_for_new_connections(
    pki: Pki, authorities: tuple[Authority, Authority]
) -> None:
    _, other = authorities
    tls = ServerTls.load(tls_settings(pki, mutual=True))
    async with check_server("h2", tls) as server:
        from_other = other.issue("envoy", client=True)
        pki.volume.renew(pki.ca.issue("authz-2"), ca=other.cert)
        assert await tls.refresh()
        async with secure_channel(server, ca=pki.ca, client=from_other) as channel:
            assert (await check(channel)).denied_response.status.code == 403
        async with secure_channel(server, ca=pki.ca, client=pki.client) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await check(channel)


# --- the admin API ------------------------------------------------------------------------------


async def test_the_admin_api_over_mutual_tls(pki: Pki) -> None:
    tls = ServerTls.load(tls_settings(pki, mutual=True))
    servicer = AdminServicer(snapshot=lambda: EMPTY, verifier=Verifier())
    admin = AdminServer(servicer, LOOPBACK, tls=tls)
    await admin.start()
    try:
        for client, works in ((pki.client, True), (None, False), (pki.stranger, False)):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=pki.ca.cert,
                private_key=client.key if client else None,
                certificate_chain=client.cert if client else None,
            )
            target = f"localhost:{admin.address.port}"
            async with grpc.aio.secure_channel(target, credentials) as channel:
                call = channel.unary_unary(
                    "/authz.v1.Admin/ListPolicies",
                    request_serializer=apb.ListPoliciesRequest.SerializeToString,
                    response_deserializer=apb.ListPoliciesResponse.FromString,
                )
                if works:
                    await call(apb.ListPoliciesRequest(), timeout=10)
                else:
                    with pytest.raises(grpc.aio.AioRpcError):
                        await call(apb.ListPoliciesRequest(), timeout=10)
    finally:
        await admin.stop(0)


@pytest.mark.parametrize(
    ("address", "tls"),
    [
        (ListenAddress("127.0.0.1", 9192), False),
        (ListenAddress("::1", 9192), False),
        (ListenAddress("localhost", 9192), False),
        (ListenAddress(path="/run/authz-admin.sock"), False),
        (ListenAddress("0.0.0.0", 9192), True),
        (ListenAddress("10.1.2.3", 9192), True),
        (ListenAddress("admin.example", 9192), True),
    ],
)
def test_the_admin_api_takes_tls_unless_reachable_from_the_pod_only(
    address: ListenAddress, tls: bool
) -> None:
    assert admin_uses_tls(address) is tls


# --- files that cannot be used ----------------------------------------------------------------


def _files(tmp: Path, pki: Pki, **replaced: bytes) -> TlsSettings:
    """The server's files with some replaced by `replaced` (cert, key, ca), as settings."""
    contents = {
        "cert": pki.volume.cert.read_bytes(),
        "key": pki.volume.key.read_bytes(),
        "ca": pki.ca.cert,
        **replaced,
    }
    for name, data in contents.items():
        (tmp / name).write_bytes(data)
    return TlsSettings(cert=tmp / "cert", key=tmp / "key", client_ca=tmp / "ca")


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def _encrypted(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


@pytest.mark.parametrize(
    ("replace_with", "message"),
    [
        (lambda p: {"cert": b""}, "--tls-cert: {cert} holds no PEM certificate"),
        (lambda p: {"cert": _der(p.volume.cert.read_bytes())}, "--tls-cert: {cert} holds no PEM"),
        (lambda p: {"cert": b"x" * (MAX_FILE_BYTES + 1)}, "--tls-cert: {cert} is larger than"),
        (lambda p: {"key": p.volume.cert.read_bytes()}, "--tls-key: {key} holds no unencrypted"),
        (lambda p: {"key": _encrypted(p.volume.key.read_bytes())}, "--tls-key: {key} holds no"),
        (lambda p: {"key": p.ca.issue("x").key}, "--tls-key: {key} is not the private key of"),
        (lambda p: {"ca": b"-----BEGIN CERTIFICATE-----\nAAAA\n"}, "--tls-client-ca: {ca} holds"),
        (lambda p: {"ca": b"\x00" * 64}, "--tls-client-ca: {ca} holds no PEM certificate"),
    ],
    ids=["empty", "der", "oversized", "cert-as-key", "encrypted", "other-key", "cut", "binary"],
)
def test_unusable_files_are_refused_naming_the_flag(
    tmp_path: Path, pki: Pki, replace_with: Any, message: str
) -> None:
    settings = _files(tmp_path, pki, **replace_with(pki))
    with pytest.raises(ConfigError) as refused:
        ServerTls.load(settings)
    paths = {"cert": tmp_path / "cert", "key": tmp_path / "key", "ca": tmp_path / "ca"}
    assert str(refused.value).startswith(message.format(**paths))


def test_a_chain_and_a_bundle_of_several_certificates_are_accepted(
    tmp_path: Path, pki: Pki, authorities: tuple[Authority, Authority]
) -> None:
    _, other = authorities
    chain = pki.volume.cert.read_bytes() + pki.ca.cert
    tls = ServerTls.load(_files(tmp_path, pki, cert=chain, ca=pki.ca.cert + other.cert))
    assert tls.mutual
    assert "CN=authz-1" in tls.describe()
