"""The check server on the h2 engine: ext_authz Check and grpc.health.v1 over our own HTTP/2.

The default engine of `authz serve` (--grpc-server h2): it answers the same methods as the grpcio
server (authz.server.grpc_server, kept as --grpc-server grpcio) with less than half the CPU per
check on the measured machine, because no thread sits between the socket and the decision
(see authz.server.h2conn and docs/performance.md). Interface and behaviour match GrpcServer:
the listen address is bound at construction (a taken port is a configuration error before any
policy loads), health says NOT_SERVING until `set_serving(True)`, and `stop(grace)` turns
health NOT_SERVING, stops accepting connections, sends each connection a GOAWAY and lets the
checks already received finish for up to `grace` seconds.

Each peer is held to authz.server.h2limits.H2Limits: past `max_connections` a new connection is
closed at once, and one timer per server (not one per connection or stream) advances the
shared clock and applies every connection's deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Protocol

from authz.errors import ConfigError
from authz.server.grpc_server import GrpcServer
from authz.server.h2conn import Connection, Handler
from authz.server.h2limits import DEFAULTS, Clock, H2Limits
from authz.server.health import CHECK_PATH, WATCH_PATH, HealthState, set_serving
from authz.server.listen import ListenAddress, bind
from authz.server.servicer import METHOD, SERVICE, AuthorizationServicer
from authz.server.tls import ServerTls
from authz.settings.sections import ENGINES

CHECK = f"/{SERVICE}/{METHOD}".encode()
#: A client that connects but does not finish the TLS handshake is cut off after this (seconds).
TLS_HANDSHAKE_TIMEOUT = 10.0


class CheckServer(Protocol):
    """What the service needs of a check server, whichever engine runs it."""

    address: ListenAddress

    async def start(self) -> None: ...

    async def set_serving(self, serving: bool) -> None: ...

    async def stop(self, grace: float) -> None: ...


class H2Server:
    """gRPC methods (`routes`: path -> handler) served on the h2 engine at one address."""

    def __init__(
        self,
        routes: dict[bytes, Handler],
        address: ListenAddress,
        *,
        limits: H2Limits = DEFAULTS,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._routes = routes
        self._limits = limits
        self._clock = Clock()
        self._ticker: asyncio.Task[None] | None = None
        self._tls = tls
        self._sock = bind(address, flag="--grpc-listen")
        self.address = (
            address
            if address.path is not None
            else ListenAddress(host=address.host, port=int(self._sock.getsockname()[1]))
        )
        self._connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._idle = asyncio.Event()

    def _connection(self) -> asyncio.Protocol:
        if len(self._connections) >= self._limits.max_connections:
            return _Refused()
        connection = Connection(
            self._routes,
            limits=self._limits,
            clock=self._clock,
            on_close=self._closed,
            on_idle=self._idle.set,
        )
        self._connections.add(connection)
        return connection

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._limits.tick)
            self._clock.now = now = loop.time()
            for connection in list(self._connections):
                connection.tick(now)

    def _closed(self, connection: Connection) -> None:
        self._connections.discard(connection)
        self._idle.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._clock.now = loop.time()
        self._ticker = loop.create_task(self._tick(), name="h2 deadlines")
        if self.address.path is not None:
            self._server = await loop.create_unix_server(self._connection, sock=self._sock)
        elif self._tls is not None:
            self._server = await loop.create_server(
                self._connection,
                sock=self._sock,
                ssl=self._tls,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        else:
            self._server = await loop.create_server(self._connection, sock=self._sock)

    def stop_accepting(self) -> None:
        """Close the listening socket and send every connection a GOAWAY."""
        if self._server is None:
            self._sock.close()
            return
        self._server.close()
        for connection in list(self._connections):
            connection.goaway()

    async def stop(self, grace: float) -> None:
        """Stop accepting; calls already received get `grace` seconds, then are cancelled."""
        self.stop_accepting()
        deadline = time.monotonic() + grace
        while not all(c.idle for c in self._connections):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), remaining)
        for connection in list(self._connections):
            connection.close()
            connection.drop()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None


class _Refused(asyncio.Protocol):
    """A connection past the cap: closed as soon as it is made, before anything is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class H2GrpcServer:
    """ext_authz Check and grpc.health.v1 on the h2 engine (the interface of GrpcServer)."""

    def __init__(
        self,
        servicer: AuthorizationServicer,
        address: ListenAddress,
        *,
        limits: H2Limits = DEFAULTS,
        tls: ServerTls | None = None,
    ) -> None:
        self.health = HealthState()
        self._server = H2Server(
            {
                CHECK: servicer.check_wire,
                CHECK_PATH: self.health.check,
                WATCH_PATH: self.health.watch,
            },
            address,
            limits=limits,
            tls=tls.server_context() if tls is not None else None,
        )
        self.address = self._server.address

    async def start(self) -> None:
        await self.set_serving(False)
        await self._server.start()

    async def set_serving(self, serving: bool) -> None:
        await set_serving(self.health, services=(SERVICE,), serving=serving)

    async def stop(self, grace: float) -> None:
        """Stop accepting new checks and give in-flight ones `grace` seconds to finish."""
        await self.set_serving(False)
        self.health.close()  # a Watch would keep its connection busy until the grace ends
        await self._server.stop(grace)


def build_check_server(
    engine: str,
    servicer: AuthorizationServicer,
    address: ListenAddress,
    *,
    limits: H2Limits = DEFAULTS,
    tls: ServerTls | None = None,
) -> CheckServer:
    """The check server of `engine` (one of ENGINES), bound to `address`, over `tls` if given;
    the h2 engine applies `limits` (grpcio its own)."""
    if engine == "grpcio":
        return GrpcServer(servicer, address, tls=tls)
    if engine == "h2":
        return H2GrpcServer(servicer, address, limits=limits, tls=tls)
    raise ConfigError(f"--grpc-server: expected one of {', '.join(ENGINES)}, got {engine!r}")
