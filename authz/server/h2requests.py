"""The requests of an h2 connection: HEADERS, CONTINUATION and DATA in, calls started.

A request is a header block (HEADERS, then CONTINUATION frames until END_HEADERS) and a body
of DATA frames; when END_STREAM arrives its method's handler runs as a task. What a request
holds is charged to the connection as it arrives (decoded header bytes, body bytes, counted by
authz.server.h2limits) and released when its stream is forgotten; a header block spread over
more CONTINUATION frames than a real one needs is a flood, not a request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from authz.server.grpcwire import MAX_MESSAGE_BYTES, PREFIX_BYTES, RpcError, Status, unframe
from authz.server.h2control import ControlFrames
from authz.server.h2decode import HeaderDecoder
from authz.server.h2frames import OK_TRAILERS, ConnectionError_, Error, Flag, window_update
from authz.server.h2limits import Clock, H2Limits
from authz.server.h2streams import Handler, Stream

log = logging.getLogger(__name__)

#: Our receive window per stream and for the connection: large, so that Envoy never waits
#: for a WINDOW_UPDATE between small requests; replenished once half is used.
WINDOW = 16 * 1024 * 1024


class Requests(ControlFrames):
    """Request frames in, calls out (see the module docstring)."""

    def __init__(self, routes: dict[bytes, Handler], *, limits: H2Limits, clock: Clock) -> None:
        super().__init__(limits=limits, clock=clock)
        self._routes = routes
        self._decoder = HeaderDecoder(
            max_list_size=limits.max_header_list_size, max_fields=limits.max_header_fields
        )
        #: A header block waiting for CONTINUATION frames: (stream id, END_STREAM, fragments).
        self._continued: tuple[int, bool, bytearray] | None = None
        self._continuations = 0
        self._continued_at = 0.0
        self._received = 0  # bytes of DATA not yet given back with a WINDOW_UPDATE
        #: When a stream was last seen open or opening (the idle deadline counts from it): the
        #: tick notices a new stream by `_last_stream`, so opening one costs nothing here.
        self._active = clock.now
        self._seen_stream = 0
        # The limits read on every request, as attributes of their own.
        self._max_streams = limits.max_concurrent_streams
        self._max_header_bytes = limits.max_connection_header_bytes
        self._max_buffered = limits.max_buffered

    def _strip_padding(self, flags: int, payload: bytes) -> bytes:
        if not flags & Flag.PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise ConnectionError_(Error.PROTOCOL_ERROR, "padding longer than the frame")
        return payload[1 : len(payload) - payload[0]]

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id or stream_id > self._last_stream:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "DATA on an idle stream")
        self._received += len(payload)
        if self._received > WINDOW:
            raise ConnectionError_(Error.FLOW_CONTROL_ERROR, "more DATA than the window")
        if self._received >= WINDOW // 2:
            self._out.append(window_update(0, self._received))
            self._received = 0
        data = self._strip_padding(flags, payload)
        stream = self._streams.get(stream_id)
        if stream is None or stream.finished or stream.ended:
            return  # answered already (e.g. refused): read and dropped
        self._buffered += len(data)
        if self._buffered > self._max_buffered:
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "too many unfinished requests")
        stream.body += data
        if len(stream.body) > PREFIX_BYTES + MAX_MESSAGE_BYTES:
            self._fail(stream_id, stream, Status.RESOURCE_EXHAUSTED, "request message too large")
        elif flags & Flag.END_STREAM:
            self._ended(stream_id, stream)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._strip_padding(flags, payload)
        if flags & Flag.PRIORITY:
            block = block[5:]
        if flags & Flag.END_HEADERS:
            self._header_block(stream_id, bool(flags & Flag.END_STREAM), block)
        else:
            self._continued = (stream_id, bool(flags & Flag.END_STREAM), bytearray(block))
            self._continuations = 0
            self._continued_at = self._clock.now

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continued is None or self._continued[0] != stream_id:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "CONTINUATION out of place")
        self._continuations += 1
        if self._continuations > self._limits.max_continuations:
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "a flood of CONTINUATION frames")
        _, end_stream, block = self._continued
        block += payload
        if len(block) > self._limits.max_header_list_size:
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "an oversized header block")
        if flags & Flag.END_HEADERS:
            self._continued = None
            self._header_block(stream_id, end_stream, bytes(block))

    def _header_block(self, stream_id: int, end_stream: bool, block: bytes) -> None:
        path, content_type, metadata, size = self._decoder.decode(block)
        stream = self._streams.get(stream_id)
        if stream_id <= self._last_stream:
            if stream is None:  # trailers of a call answered already, or a reused id
                if end_stream:
                    return
                raise ConnectionError_(Error.PROTOCOL_ERROR, "HEADERS on a closed stream")
            if end_stream and not stream.finished and not stream.ended:
                self._ended(stream_id, stream)  # request trailers end the request
            return
        if stream_id % 2 == 0:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "a client stream with an even id")
        self._last_stream = stream_id
        if len(self._streams) >= self._max_streams:
            self._count_reset()
            self._reset(stream_id, Error.REFUSED_STREAM)
            return
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes:
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "too many header bytes held")
        stream = Stream(
            self._routes.get(path), metadata, self._initial_send_window, self._clock.now, size
        )
        self._streams[stream_id] = stream
        if not content_type.startswith(b"application/grpc"):
            self._fail(stream_id, stream, Status.UNKNOWN, "not a gRPC request")
        elif stream.handler is None:
            self._fail(stream_id, stream, Status.UNIMPLEMENTED, "unknown method")
        elif end_stream:
            self._ended(stream_id, stream)

    # --- calls ----------------------------------------------------------------------------

    def _ended(self, stream_id: int, stream: Stream) -> None:
        """The request is complete: call its handler. An answer it has at once is sent at
        once; one it has to wait for comes from a task."""
        stream.ended = True
        handler = stream.handler
        if handler is None:
            return
        try:
            message = unframe(stream.body)
            self._buffered -= len(stream.body)
            stream.body = bytearray()
            result = handler(
                message, stream.metadata, lambda out: self._send(stream_id, stream, out)
            )
        except Exception as exc:
            self._failed(stream_id, stream, exc)
            return
        if result is None or isinstance(result, bytes):
            self._answered(stream_id, stream, result)
        else:
            stream.task = self._loop.create_task(self._call(stream_id, stream, result))

    async def _call(self, stream_id: int, stream: Stream, pending: Awaitable[bytes | None]) -> None:
        try:
            last = await pending
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(stream_id, stream, exc)
            return
        self._answered(stream_id, stream, last)

    def _answered(self, stream_id: int, stream: Stream, last: bytes | None) -> None:
        if last is not None:
            self._send(stream_id, stream, last)
        self._finish(stream_id, stream, OK_TRAILERS)
        self._schedule_flush()

    def _failed(self, stream_id: int, stream: Stream, exc: Exception) -> None:
        if isinstance(exc, RpcError):
            self._fail(stream_id, stream, exc.status, exc.message)
        else:
            log.error("gRPC handler failed", exc_info=exc)
            self._fail(stream_id, stream, Status.INTERNAL, "internal error")
        self._schedule_flush()
