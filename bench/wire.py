"""The h2 engine in-process: HTTP/2 frames in, frames out, no socket (a micro scenario).

`EngineCall` plays Envoy's side of one connection: it sends each check as Envoy does (a
HEADERS frame whose block the sidecar has seen before, then a DATA frame with the message)
to the sidecar's Connection and waits for the answer's frames, which a stand-in transport
collects. What it measures is everything the sidecar does per check but the system calls.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hpack

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.server.grpcwire import PREFIX_BYTES, frame
from authz.server.h2conn import Connection
from authz.server.h2frames import (
    HEADER,
    HEADER_BYTES,
    MAX_WINDOW,
    PREFACE,
    Flag,
    Setting,
    Type,
    settings,
    window_update,
)
from authz.server.h2frames import frame as h2frame
from authz.server.h2limits import DEFAULTS, Clock
from authz.server.h2server import CHECK
from authz.server.servicer import AuthorizationServicer

#: The request headers of Envoy's ext_authz gRPC client (as captured from Envoy 1.40).
ENVOY_HEADERS = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", CHECK),
    (b":authority", b"authz"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
    (b"grpc-timeout", b"1000m"),
    (b"x-envoy-internal", b"true"),
]


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0  # every write is taken at once

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


class EngineCall:
    """Call it to send one CheckRequest through the h2 engine; returns the answer's bytes."""

    def __init__(self, servicer: AuthorizationServicer, request: pb.CheckRequest) -> None:
        self._transport = _Transport()
        self._connection = Connection(
            {CHECK: servicer.check_wire},
            limits=DEFAULTS,
            clock=Clock(),
            on_close=lambda _c: None,
            on_idle=lambda: None,
        )
        self._connection.connection_made(self._transport)
        self._connection.data_received(
            PREFACE
            + settings({Setting.INITIAL_WINDOW_SIZE: MAX_WINDOW})
            + window_update(0, MAX_WINDOW - 65_535)
        )
        encoder = hpack.Encoder()
        #: The first block adds Envoy's headers to the HPACK table; every later one (like
        #: Envoy's) only refers to them, so it is the same bytes each time: encoded once here.
        self._first: bytes | None = encoder.encode(ENVOY_HEADERS)
        self._block = encoder.encode(ENVOY_HEADERS)
        self._message = frame(request.SerializeToString())
        self._stream = 1
        self._received = 0

    async def __call__(self) -> bytes:
        stream = self._stream
        self._stream += 2
        block, self._first = self._first or self._block, None
        self._transport.written.clear()
        self._transport.waiter = asyncio.get_running_loop().create_future()
        self._connection.data_received(
            h2frame(Type.HEADERS, Flag.END_HEADERS, stream, block)
            + h2frame(Type.DATA, Flag.END_STREAM, stream, self._message)
        )
        while True:
            await self._transport.waiter
            output = b"".join(self._transport.written)
            answer = _answer(output, stream)
            if answer is not None:
                break
            self._transport.waiter = asyncio.get_running_loop().create_future()  # a window update
        self._received += len(output)
        if self._received > 2**30:  # give the sidecar's send window back, as Envoy would
            self._connection.data_received(window_update(0, self._received))
            self._received = 0
        return answer


def _answer(output: bytes, stream: int) -> bytes | None:
    """The message of the first DATA frame of `stream` in `output`, if there is one yet."""
    offset = 0
    while offset + HEADER_BYTES <= len(output):
        high, low, kind, _flags, sid = HEADER.unpack_from(output, offset)
        length = high << 16 | low
        if kind == Type.DATA and sid == stream:
            start = offset + HEADER_BYTES + PREFIX_BYTES
            return output[start : offset + HEADER_BYTES + length]
        offset += HEADER_BYTES + length
    return None
