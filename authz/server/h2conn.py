"""One HTTP/2 connection of the h2 gRPC engine: frames in, calls dispatched, answers out.

Everything runs on the event loop thread: a read is cut into frames, each completed request
becomes a task running its handler, and the answers of all calls that finish in one loop
iteration leave in one write. grpcio's server instead moves every event from its C core's
poller thread to the loop through a socket and makes the two threads take turns at the GIL;
the general-purpose h2 package, tried next, spent ~130 CPU-µs per call in header validation,
HPACK and its state machines. This module does only what a gRPC server needs (RFC 9113): HPACK
decoding is the hpack package's (with its size limits), answers are precomputed header
blocks (authz.server.h2frames), and flow control is counted both ways.

A misbehaving peer stays bounded and alone: frames over 16 KiB, header blocks over 64 KiB
and request messages over 1 MiB are refused, streams beyond 1000 at once are refused, a peer
that stops reading stops being read, and a protocol violation closes its connection only.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import hpack

from authz.server.grpcwire import (
    MAX_MESSAGE_BYTES,
    PREFIX_BYTES,
    Metadata,
    RpcError,
    Status,
    trailers,
    trailers_only,
    unframe,
)
from authz.server.grpcwire import frame as grpc_frame
from authz.server.h2frames import (
    DEFAULT_WINDOW,
    HEADER,
    HEADER_BYTES,
    MAX_FRAME,
    MAX_WINDOW,
    OK_TRAILERS,
    PREFACE,
    RESPONSE_HEADERS,
    ConnectionError_,
    Error,
    Flag,
    Setting,
    Type,
    frame,
    goaway,
    rst_stream,
    settings,
    window_update,
)

log = logging.getLogger(__name__)

#: A method's implementation: (request message, metadata, send) -> the last response message,
#: or None. A unary method returns its answer; a streaming one calls `send` for each message.
Handler = Callable[[bytes, Metadata, Callable[[bytes], None]], Awaitable[bytes | None]]

#: Streams one connection may have open at once (what grpcio was told before).
MAX_CONCURRENT_STREAMS = 1000
MAX_HEADER_LIST = 64 * 1024
#: Request bytes one connection may hold before their calls start (many streams each sending
#: most of a message, never ending it, would otherwise hold up to 1000 x 1 MiB).
MAX_BUFFERED = 16 * 1024 * 1024
#: Our receive window per stream and for the connection: large, so that Envoy never waits
#: for a WINDOW_UPDATE between small requests; replenished once half is used.
_WINDOW = 16 * 1024 * 1024
_SETTINGS = settings(
    {
        Setting.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
        Setting.INITIAL_WINDOW_SIZE: _WINDOW,
        Setting.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
    }
)
_SETTINGS_ACK = frame(Type.SETTINGS, Flag.ACK, 0)
_U32 = struct.Struct(">I")
#: Decoded header blocks kept per connection (see Connection._decode).
_BLOCK_CACHE = 256
#: What a request's header block says: (:path, content-type, custom metadata).
_Request = tuple[bytes, bytes, Metadata]


@dataclass(slots=True)
class _Stream:
    handler: Handler | None
    metadata: Metadata
    send_window: int
    body: bytearray = field(default_factory=bytearray)
    #: The request is complete (END_STREAM seen).
    ended: bool = False
    #: Response headers went out (what follows is data or trailers, not trailers-only).
    started: bool = False
    #: Answered or refused: later frames of the request are read and dropped.
    finished: bool = False
    task: asyncio.Task[None] | None = None
    #: Answer pieces waiting for flow-control window: DATA payloads, then the trailer block.
    pending: deque[bytes] = field(default_factory=deque)
    trailer: bytes | None = None


class Connection(asyncio.Protocol):
    """The server side of one HTTP/2 connection carrying gRPC calls."""

    def __init__(
        self,
        routes: dict[bytes, Handler],
        *,
        on_close: Callable[[Connection], None],
        on_idle: Callable[[], None],
    ) -> None:
        self._routes = routes
        self._on_close = on_close
        #: Called when a draining connection has no call left.
        self._on_idle = on_idle
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preface = False
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_LIST
        self._blocks: dict[bytes, _Request] = {}
        self._streams: dict[int, _Stream] = {}
        self._last_stream = 0
        #: A header block waiting for CONTINUATION frames: (stream id, END_STREAM, fragments).
        self._continued: tuple[int, bool, bytearray] | None = None
        self._send_window = DEFAULT_WINDOW
        self._initial_send_window = DEFAULT_WINDOW
        self._max_send_frame = MAX_FRAME
        self._received = 0  # bytes of DATA not yet given back with a WINDOW_UPDATE
        self._buffered = 0  # bytes of request bodies held for calls that have not started
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._closed = False
        self.draining = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # Kept: asyncio.get_running_loop() makes a getpid system call each time (its fork
        # check), which under load was a tenth of this process's CPU.
        self._loop = asyncio.get_running_loop()
        self._out += (_SETTINGS, window_update(0, _WINDOW - DEFAULT_WINDOW))
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._buffer += data
        try:
            self._frames()
        except ConnectionError_ as exc:
            log.warning("gRPC peer broke the HTTP/2 protocol (%s); closing its connection", exc)
            self.close(exc.code)
            return
        except hpack.HPACKError as exc:
            log.warning("gRPC peer sent an undecodable header block (%s); closing", exc)
            self.close(Error.COMPRESSION_ERROR)
            return
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for stream_id in list(self._streams):
            self._forget(stream_id, cancel=True)
        self._transport = None
        self._on_close(self)

    def pause_writing(self) -> None:
        """The peer is not reading our answers: stop reading its requests until it does."""
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    # --- frames in ------------------------------------------------------------------------

    def _frames(self) -> None:
        buffer = self._buffer
        start = 0
        if not self._preface:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(bytes(buffer)):
                    raise ConnectionError_(Error.PROTOCOL_ERROR, "not an HTTP/2 connection")
                return
            if not buffer.startswith(PREFACE):
                raise ConnectionError_(Error.PROTOCOL_ERROR, "not an HTTP/2 connection")
            self._preface, start = True, len(PREFACE)
        end = len(buffer)
        while end - start >= HEADER_BYTES:
            high, low, kind, flags, stream_id = HEADER.unpack_from(buffer, start)
            length = high << 16 | low
            if length > MAX_FRAME:
                raise ConnectionError_(Error.FRAME_SIZE_ERROR, f"a {length}-byte frame")
            if end - start < HEADER_BYTES + length:
                break
            payload = bytes(buffer[start + HEADER_BYTES : start + HEADER_BYTES + length])
            start += HEADER_BYTES + length
            self._frame(kind, flags, stream_id & 0x7FFFFFFF, payload)
        del buffer[:start]

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continued is not None and kind != Type.CONTINUATION:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "a header block was interrupted")
        if kind == Type.DATA:
            self._data(flags, stream_id, payload)
        elif kind == Type.HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == Type.CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == Type.SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == Type.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == Type.PING:
            if stream_id or len(payload) != 8:
                raise ConnectionError_(Error.PROTOCOL_ERROR, "a malformed PING")
            if not flags & Flag.ACK:
                self._out.append(frame(Type.PING, Flag.ACK, 0, payload))
        elif kind == Type.RST_STREAM:
            if not stream_id or len(payload) != 4:
                raise ConnectionError_(Error.PROTOCOL_ERROR, "a malformed RST_STREAM")
            self._forget(stream_id, cancel=True)
        elif kind == Type.GOAWAY:
            self.draining = True  # the peer opens nothing new; its open calls are answered
            if not self._streams:
                self.close()
        elif kind == Type.PUSH_PROMISE:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "a client may not push")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 requires.

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
        if self._received > _WINDOW:
            raise ConnectionError_(Error.FLOW_CONTROL_ERROR, "more DATA than the window")
        if self._received >= _WINDOW // 2:
            self._out.append(window_update(0, self._received))
            self._received = 0
        data = self._strip_padding(flags, payload)
        stream = self._streams.get(stream_id)
        if stream is None or stream.finished or stream.ended:
            return  # answered already (e.g. refused): read and dropped
        self._buffered += len(data)
        if self._buffered > MAX_BUFFERED:
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "over 16 MiB of unfinished requests")
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

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continued is None or self._continued[0] != stream_id:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "CONTINUATION out of place")
        _, end_stream, block = self._continued
        block += payload
        if len(block) > MAX_HEADER_LIST:
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "a header block over 64 KiB")
        if flags & Flag.END_HEADERS:
            self._continued = None
            self._header_block(stream_id, end_stream, bytes(block))

    def _decode(self, block: bytes) -> _Request:
        """(path, content-type, metadata) of a header block; every block must pass here, in
        order, even a refused stream's: HPACK's dynamic table is shared by the connection.

        Envoy sends the same block for every check (after the first few, its fields refer to
        the dynamic table or are literals that are not added to it). Decoding such a block
        leaves the table as it was, so while the table does not change the block means the
        same: its result is kept, keyed by its bytes, and any block that changes the table
        empties the cache.
        """
        known = self._blocks.get(block)
        if known is not None:
            return known
        table = self._decoder.header_table.dynamic_entries
        before = tuple(table)
        headers = self._decoder.decode(block, raw=True)
        path = content_type = b""
        custom: list[tuple[str, str]] = []
        for name, value in headers:
            if name == b":path":
                path = value
            elif name == b"content-type":
                content_type = value
            elif not name.startswith(b":"):
                custom.append((name.decode("latin-1"), value.decode("latin-1")))
        request = (path, content_type, tuple(custom))
        if tuple(table) != before:
            self._blocks.clear()
        else:
            if len(self._blocks) >= _BLOCK_CACHE:
                self._blocks.clear()
            self._blocks[block] = request
        return request

    def _header_block(self, stream_id: int, end_stream: bool, block: bytes) -> None:
        path, content_type, metadata = self._decode(block)
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
        if len(self._streams) >= MAX_CONCURRENT_STREAMS:
            self._out.append(rst_stream(stream_id, Error.REFUSED_STREAM))
            return
        stream = _Stream(self._routes.get(path), metadata, self._initial_send_window)
        self._streams[stream_id] = stream
        if not content_type.startswith(b"application/grpc"):
            self._fail(stream_id, stream, Status.UNKNOWN, "not a gRPC request")
        elif stream.handler is None:
            self._fail(stream_id, stream, Status.UNIMPLEMENTED, "unknown method")
        elif end_stream:
            self._ended(stream_id, stream)

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & Flag.ACK:
            return
        if len(payload) % 6:
            raise ConnectionError_(Error.FRAME_SIZE_ERROR, "a malformed SETTINGS frame")
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError_(Error.FLOW_CONTROL_ERROR, "a window over 2^31-1")
                delta, self._initial_send_window = value - self._initial_send_window, value
                for stream in self._streams.values():
                    stream.send_window += delta
            elif key == Setting.MAX_FRAME_SIZE:
                if not MAX_FRAME <= value <= 2**24 - 1:
                    raise ConnectionError_(Error.PROTOCOL_ERROR, "an invalid MAX_FRAME_SIZE")
                self._max_send_frame = value
            # HEADER_TABLE_SIZE limits an encoder's dynamic table; our answers use none.
        self._out.append(_SETTINGS_ACK)
        for sid in list(self._streams):
            self._pump(sid)

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(Error.FRAME_SIZE_ERROR, "a malformed WINDOW_UPDATE")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment or self._send_window + increment > MAX_WINDOW:
                raise ConnectionError_(Error.FLOW_CONTROL_ERROR, "an invalid window update")
            self._send_window += increment
            for sid in list(self._streams):
                self._pump(sid)
            return
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.send_window += increment
            self._pump(stream_id)

    # --- calls ----------------------------------------------------------------------------

    def _ended(self, stream_id: int, stream: _Stream) -> None:
        stream.ended = True
        if stream.handler is not None:
            stream.task = self._loop.create_task(self._call(stream_id, stream))

    async def _call(self, stream_id: int, stream: _Stream) -> None:
        assert stream.handler is not None
        try:
            message = unframe(stream.body)
            self._buffered -= len(stream.body)
            stream.body = bytearray()
            last = await stream.handler(
                message, stream.metadata, lambda out: self._send(stream_id, stream, out)
            )
            if last is not None:
                self._send(stream_id, stream, last)
            self._finish(stream_id, stream, OK_TRAILERS)
        except RpcError as exc:
            self._fail(stream_id, stream, exc.status, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gRPC handler failed")
            self._fail(stream_id, stream, Status.INTERNAL, "internal error")
        self._schedule_flush()

    # --- answers --------------------------------------------------------------------------

    def _send(self, stream_id: int, stream: _Stream, message: bytes) -> None:
        if stream.finished or stream_id not in self._streams:
            return
        if not stream.started:
            stream.started = True
            self._out.append(frame(Type.HEADERS, Flag.END_HEADERS, stream_id, RESPONSE_HEADERS))
        stream.pending.append(grpc_frame(message))
        self._pump(stream_id)
        self._schedule_flush()

    def _finish(self, stream_id: int, stream: _Stream, block: bytes) -> None:
        if stream.finished:
            return
        stream.finished = True
        stream.trailer = block
        self._pump(stream_id)

    def _fail(self, stream_id: int, stream: _Stream, status: Status, message: str) -> None:
        if stream.started:
            self._finish(stream_id, stream, trailers(status, message))
            return
        stream.finished = True
        self._out.append(
            frame(
                Type.HEADERS,
                Flag.END_HEADERS | Flag.END_STREAM,
                stream_id,
                trailers_only(status, message),
            )
        )
        self._close_stream(stream_id, stream)

    def _pump(self, stream_id: int) -> None:
        """Send what flow control allows of a stream's answer; the trailers once all is out."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        pending = stream.pending
        while pending:
            piece = pending[0]
            size = min(len(piece), self._send_window, stream.send_window, self._max_send_frame)
            if size <= 0:
                return  # continued by a WINDOW_UPDATE
            self._out.append(frame(Type.DATA, 0, stream_id, piece[:size]))
            self._send_window -= size
            stream.send_window -= size
            if size == len(piece):
                pending.popleft()
            else:
                pending[0] = piece[size:]
        if stream.trailer is not None:
            flags = Flag.END_HEADERS | Flag.END_STREAM
            self._out.append(frame(Type.HEADERS, flags, stream_id, stream.trailer))
            self._close_stream(stream_id, stream)

    def _close_stream(self, stream_id: int, stream: _Stream) -> None:
        """Our side is done; a request still arriving is not needed any more."""
        if not stream.ended:
            self._out.append(rst_stream(stream_id, Error.NO_ERROR))
        self._forget(stream_id, cancel=False)

    def _forget(self, stream_id: int, *, cancel: bool) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._buffered -= len(stream.body)
            stream.body = bytearray()
            if cancel and stream.task is not None:
                stream.task.cancel()
        if self.draining and not self._streams:
            self._on_idle()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        out, self._out = self._out, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    # --- shutdown -------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self._streams

    def goaway(self) -> None:
        """Tell the peer to open no new streams here; the calls it already sent are answered.

        The last stream id 2^31-1 is the graceful first GOAWAY of RFC 9113 section 6.8: a
        request already on its way is still accepted; `close` sends the final one.
        """
        self.draining = True
        self._out.append(goaway(MAX_WINDOW, Error.NO_ERROR))
        self._flush()

    def close(self, error: Error = Error.NO_ERROR) -> None:
        """Final GOAWAY, then close; calls still running are cancelled."""
        if self._closed:
            return
        self._closed = True
        for stream_id in list(self._streams):
            self._forget(stream_id, cancel=True)
        self._out.append(goaway(self._last_stream, error))
        self._flush()
        if self._transport is not None:
            self._transport.close()
