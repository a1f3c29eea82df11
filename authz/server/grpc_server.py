"""The gRPC server: ext_authz Check plus the standard grpc.health.v1.Health service.

Health reports SERVING only once policies have loaded and NOT_SERVING from the moment a
shutdown begins, so gRPC health checks (Envoy's or a kubelet's) drain traffic first.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from authz.errors import ConfigError
from authz.server.health import set_serving
from authz.server.listen import ListenAddress, check_free, remove_stale_socket
from authz.server.servicer import SERVICE, AuthorizationServicer
from authz.server.tls import ServerTls

#: Tuned for one Envoy holding a few long-lived HTTP/2 connections with many streams.
SERVER_OPTIONS = [
    ("grpc.max_concurrent_streams", 1000),
    ("grpc.max_receive_message_length", 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
]


def add_port(server: grpc.aio.Server, address: ListenAddress, *, tls: ServerTls | None) -> int:
    """Listen on `address`, over TLS when `tls` is given; the port bound."""
    if tls is None:
        port: int = server.add_insecure_port(address.grpc_target)
    else:
        port = server.add_secure_port(address.grpc_target, tls.grpc_credentials())
    return port


class GrpcServer:
    def __init__(
        self,
        servicer: AuthorizationServicer,
        address: ListenAddress,
        *,
        tls: ServerTls | None = None,
    ) -> None:
        self.address = address
        self.health = health_aio.HealthServicer()
        self._server = grpc.aio.server(options=SERVER_OPTIONS)
        self._server.add_generic_rpc_handlers([servicer.handler()])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        check_free(address, flag="--grpc-listen")
        remove_stale_socket(address)
        try:
            bound = add_port(self._server, address, tls=tls)
        except RuntimeError as exc:
            raise ConfigError(f"--grpc-listen: cannot listen on {address}: {exc}") from None
        if address.path is None:
            self.address = ListenAddress(host=address.host, port=bound)

    async def start(self) -> None:
        await self.set_serving(False)
        await self._server.start()

    async def set_serving(self, serving: bool) -> None:
        await set_serving(self.health, services=(SERVICE,), serving=serving)

    async def stop(self, grace: float) -> None:
        """Stop accepting new RPCs and give in-flight ones `grace` seconds to finish."""
        await self.set_serving(False)
        await self._server.stop(grace)
