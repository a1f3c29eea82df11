"""The gRPC server: ext_authz Check plus the standard grpc.health.v1.Health service.

Health reports SERVING only once policies have loaded and NOT_SERVING from the moment a
shutdown begins, so gRPC health checks (Envoy's or a kubelet's) drain traffic first.
`extra` handlers share the listener (ext_proc's Process, see server.extproc); ExtProcServer
serves Process alone on a listener of its own, for the h2 engine, which answers unary calls
(and server-streaming health Watch) only.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from authz.errors import ConfigError
from authz.server.extproc import SERVICE as EXT_PROC_SERVICE
from authz.server.extproc import ExtProcServicer
from authz.server.health import set_serving
from authz.server.listen import ListenAddress, check_free, remove_stale_socket
from authz.server.servicer import SERVICE, AuthorizationServicer
from authz.server.tls import ServerTls

MAX_MESSAGE_BYTES = 1024 * 1024
#: Tuned for one Envoy holding a few long-lived HTTP/2 connections with many streams.
SERVER_OPTIONS = [
    ("grpc.max_concurrent_streams", 1000),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
]
#: Room for a Process message around the largest response body it may carry.
_ENVELOPE_BYTES = 64 * 1024


def bind(
    server: grpc.aio.Server, address: ListenAddress, *, flag: str, tls: ServerTls | None
) -> ListenAddress:
    """Listen on `address` (named by `flag` when it cannot), over TLS when `tls` is given; the
    address bound, with the port the system chose for port 0."""
    remove_stale_socket(address)
    try:
        if tls is None:
            port: int = server.add_insecure_port(address.grpc_target)
        else:
            port = server.add_secure_port(address.grpc_target, tls.grpc_credentials())
    except RuntimeError as exc:
        raise ConfigError(f"{flag}: cannot listen on {address}: {exc}") from None
    return address if address.path is not None else ListenAddress(host=address.host, port=port)


def _options(max_message_bytes: int) -> list[tuple[str, int]]:
    limit = max(MAX_MESSAGE_BYTES, max_message_bytes + _ENVELOPE_BYTES)
    return [(k, limit if k == "grpc.max_receive_message_length" else v) for k, v in SERVER_OPTIONS]


class _Server:
    """A grpcio server with health, bound at construction to `address` (named by `flag`)."""

    def __init__(
        self,
        handlers: Sequence[grpc.GenericRpcHandler],
        address: ListenAddress,
        *,
        services: tuple[str, ...],
        flag: str,
        max_message_bytes: int,
        tls: ServerTls | None = None,
    ) -> None:
        self._services = services
        self.health = health_aio.HealthServicer()
        self._server = grpc.aio.server(options=_options(max_message_bytes))
        self._server.add_generic_rpc_handlers(list(handlers))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        check_free(address, flag=flag)
        self.address = bind(self._server, address, flag=flag, tls=tls)

    async def start(self) -> None:
        await self.set_serving(False)
        await self._server.start()

    async def set_serving(self, serving: bool) -> None:
        await set_serving(self.health, services=self._services, serving=serving)

    async def stop(self, grace: float) -> None:
        """Stop accepting new RPCs and give in-flight ones `grace` seconds to finish."""
        await self.set_serving(False)
        await self._server.stop(grace)


class GrpcServer(_Server):
    """The check server on the grpcio engine; `extra` handlers share its listener."""

    def __init__(
        self,
        servicer: AuthorizationServicer,
        address: ListenAddress,
        *,
        extra: Sequence[grpc.GenericRpcHandler] = (),
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        tls: ServerTls | None = None,
    ) -> None:
        super().__init__(
            [servicer.handler(), *extra],
            address,
            services=(SERVICE,),
            flag="--grpc-listen",
            max_message_bytes=max_message_bytes,
            tls=tls,
        )


class ExtProcServer(_Server):
    """ext_proc's Process alone, on --ext-proc-listen (grpcio: Process is a bidirectional
    stream, which the h2 engine does not serve)."""

    def __init__(
        self, servicer: ExtProcServicer, address: ListenAddress, *, max_message_bytes: int
    ) -> None:
        super().__init__(
            [servicer.handler()],
            address,
            services=(EXT_PROC_SERVICE,),
            flag="--ext-proc-listen",
            max_message_bytes=max_message_bytes,
        )
