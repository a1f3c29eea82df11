"""grpc.health.v1.Health for the h2 gRPC server: Check and Watch, per service name.

Semantics follow grpc's own health servicer (grpc_health.v1.health): Check on an unknown service
is NOT_FOUND; Watch on one answers SERVICE_UNKNOWN and keeps watching; every status change is
sent to each watcher, a slow watcher only ever gets the latest status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from grpc_health.v1 import health_pb2

from authz.server.grpcwire import Metadata, RpcError, Status

#: health_pb2.HealthCheckResponse.ServingStatus values (plain ints in protobuf).
_ServingStatus = int
CHECK_PATH = b"/grpc.health.v1.Health/Check"
WATCH_PATH = b"/grpc.health.v1.Health/Watch"


class HealthSetter(Protocol):
    """grpc_health's aio servicer and HealthState both set statuses this way."""

    def set(self, service: str, status: _ServingStatus) -> Awaitable[None]: ...


async def set_serving(health: HealthSetter, *, services: tuple[str, ...], serving: bool) -> None:
    """One place that maps "serving or not" onto the whole server and each named service."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for service in ("", *services):
        await health.set(service, status)


class HealthState:
    """Serving status per service ("" is the whole server)."""

    def __init__(self) -> None:
        self._statuses: dict[str, _ServingStatus] = {}
        #: None in a watcher's queue ends its Watch (the server is stopping).
        self._watchers: dict[str, set[asyncio.Queue[_ServingStatus | None]]] = {}

    async def set(self, service: str, status: _ServingStatus) -> None:
        """Set a status (async like grpc_health's servicer, which this replaces)."""
        self._statuses[service] = status
        for queue in self._watchers.get(service, ()):
            if not queue.empty():
                queue.get_nowait()  # a slow watcher gets the latest status only
            queue.put_nowait(status)

    def get(self, service: str) -> _ServingStatus | None:
        return self._statuses.get(service)

    def close(self) -> None:
        """End every Watch (its last message was the NOT_SERVING of the shutdown)."""
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(None)  # after the status it may still hold

    async def check(self, message: bytes, _metadata: Metadata, _send: object) -> bytes:
        request = _parse(message)
        status = self._statuses.get(request.service)
        if status is None:
            raise RpcError(Status.NOT_FOUND, "unknown service")
        answer: bytes = health_pb2.HealthCheckResponse(status=status).SerializeToString()
        return answer

    async def watch(
        self, message: bytes, _metadata: Metadata, send: Callable[[bytes], None]
    ) -> None:
        service = _parse(message).service
        queue: asyncio.Queue[_ServingStatus | None] = asyncio.Queue(maxsize=2)
        self._watchers.setdefault(service, set()).add(queue)
        try:
            status: _ServingStatus | None = self._statuses.get(
                service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            )
            while status is not None:
                send(health_pb2.HealthCheckResponse(status=status).SerializeToString())
                status = await queue.get()
        finally:
            self._watchers[service].discard(queue)


def _parse(message: bytes) -> health_pb2.HealthCheckRequest:
    try:
        return health_pb2.HealthCheckRequest.FromString(message)
    except Exception:  # DecodeError, or worse on hostile bytes
        raise RpcError(Status.INVALID_ARGUMENT, "malformed HealthCheckRequest") from None
