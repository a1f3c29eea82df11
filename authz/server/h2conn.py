"""One HTTP/2 connection of the h2 gRPC engine: frames in, calls dispatched, answers out.

Everything runs on the event loop thread: a read is cut into frames, each completed request
becomes a task running its handler, and the answers of all calls that finish in one loop
iteration leave in one write. grpcio's server instead moves every event from its C core's
poller thread to the loop through a socket and makes the two threads take turns at the GIL;
the general-purpose h2 package, tried next, spent ~130 CPU-µs per call in header validation,
HPACK and its state machines. This module does only what a gRPC server needs (RFC 9113): HPACK
decoding is the hpack package's (authz.server.h2decode), answers are precomputed header blocks
(authz.server.h2frames) written by authz.server.h2streams, and flow control is counted both ways.

A misbehaving peer stays bounded and alone (authz.server.h2limits says how much it may cost):
what it holds is budgeted and released when its stream or connection ends, floods of resets and
control frames are answered with GOAWAY ENHANCE_YOUR_CALM, deadlines end handshakes, header
blocks and requests that never complete (`tick`, driven by the server), a peer that stops
reading stops being read, a read is handled at most `frames_per_turn` frames per loop turn so
other connections run in between, and a protocol violation closes its connection only.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import cast

import hpack

from authz.server.grpcwire import (
    MAX_MESSAGE_BYTES,
    PREFIX_BYTES,
    RpcError,
    Status,
    unframe,
)
from authz.server.h2decode import HeaderDecoder
from authz.server.h2frames import (
    DEFAULT_WINDOW,
    HEADER,
    HEADER_BYTES,
    MAX_FRAME,
    MAX_WINDOW,
    OK_TRAILERS,
    PREFACE,
    ConnectionError_,
    Error,
    Flag,
    Setting,
    Type,
    frame,
    goaway,
    settings,
    window_update,
)
from authz.server.h2limits import Bucket, Clock, H2Limits
from authz.server.h2streams import Handler, Stream, Streams

__all__ = ["Connection", "Handler"]

log = logging.getLogger(__name__)

#: Our receive window per stream and for the connection: large, so that Envoy never waits
#: for a WINDOW_UPDATE between small requests; replenished once half is used.
_WINDOW = 16 * 1024 * 1024
_SETTINGS_ACK = frame(Type.SETTINGS, Flag.ACK, 0)
_U32 = struct.Struct(">I")
#: Frames that carry no request: each costs a token of the control-frame bucket.
_CONTROL = frozenset(int(t) for t in (Type.SETTINGS, Type.PING, Type.WINDOW_UPDATE, Type.PRIORITY))


class Connection(Streams, asyncio.Protocol):
    """The server side of one HTTP/2 connection carrying gRPC calls."""

    def __init__(
        self,
        routes: dict[bytes, Handler],
        *,
        limits: H2Limits,
        clock: Clock,
        on_close: Callable[[Connection], None],
        on_idle: Callable[[], None],
    ) -> None:
        super().__init__()
        self._routes = routes
        self._limits = limits
        self._clock = clock
        self._on_close = on_close
        #: Called when a draining connection has no call left.
        self._on_idle = on_idle
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preface = False
        self._handshaken = False  # the client's first SETTINGS arrived
        self._opened = self._active = clock.now
        self._decoder = HeaderDecoder(
            max_list_size=limits.max_header_list_size, max_fields=limits.max_header_fields
        )
        self._last_stream = 0
        #: A header block waiting for CONTINUATION frames: (stream id, END_STREAM, fragments).
        self._continued: tuple[int, bool, bytearray] | None = None
        self._continuations = 0
        self._resets = Bucket(burst=limits.reset_burst, rate=limits.reset_rate, now=clock.now)
        self._control = Bucket(burst=limits.control_burst, rate=limits.control_rate, now=clock.now)
        self._acks_out = 0  # ACKs queued since the last write
        self._acks_unread = 0  # ACKs written while the peer was not reading
        self._received = 0  # bytes of DATA not yet given back with a WINDOW_UPDATE
        self._backlog = False  # reading paused: frames of the last read are still waiting
        self._write_paused = False
        self._idle_goaway = False
        self._closed = False
        self._settings = settings(
            {
                Setting.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                Setting.INITIAL_WINDOW_SIZE: _WINDOW,
                Setting.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            }
        )

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # Kept: asyncio.get_running_loop() makes a getpid system call each time (its fork
        # check), which under load was a tenth of this process's CPU.
        self._loop = asyncio.get_running_loop()
        self._out += (self._settings, window_update(0, _WINDOW - DEFAULT_WINDOW))
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._buffer += data
        self._turn()

    def _turn(self) -> None:
        """Handle up to `frames_per_turn` frames; more wait for a later loop turn, unread."""
        if self._closed:
            return
        try:
            more = self._frames()
        except ConnectionError_ as exc:
            log.warning("gRPC peer broke the HTTP/2 protocol (%s); closing its connection", exc)
            self.close(exc.code)
            return
        except hpack.HPACKError as exc:
            log.warning("gRPC peer sent an undecodable header block (%s); closing", exc)
            self.close(Error.COMPRESSION_ERROR)
            return
        if more != self._backlog:
            self._backlog = more
            self._reading()
        if more:
            self._loop.call_soon(self._turn)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        for stream_id in list(self._streams):
            self._forget(stream_id, cancel=True)
        self._transport = None
        # What the peer made us hold goes now, not when the last reference to us does.
        self._buffer = bytearray()
        self._out = []
        self._continued = None
        self._decoder.clear()
        self._on_close(self)

    def pause_writing(self) -> None:
        """The peer is not reading our answers: stop reading its requests until it does."""
        self._write_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._reading()

    def _reading(self) -> None:
        if self._transport is None or self._closed:
            return
        if self._backlog or self._write_paused:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    # --- deadlines ------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Apply the deadlines (the server calls this every `limits.tick` seconds)."""
        if self._closed:
            return
        limits = self._limits
        if not self._handshaken:
            if now - self._opened > limits.handshake_timeout:
                log.info("gRPC peer did not complete the HTTP/2 handshake in time; closing")
                self.close(Error.PROTOCOL_ERROR)
            return
        if self._continued is not None and now - self._active > limits.stream_timeout:
            self.close(Error.ENHANCE_YOUR_CALM)
            return
        expired = []
        for stream_id, stream in self._streams.items():
            if now - stream.opened <= limits.stream_timeout:
                break  # streams are kept in the order they opened
            if not stream.ended:
                expired.append(stream_id)
        for stream_id in expired:
            self._reset(stream_id, Error.CANCEL)
        if self._streams:
            self._active = now
        elif self._idle_goaway:
            if now - self._active > limits.handshake_timeout:
                self.close()
        elif now - self._active > limits.idle_timeout:
            self._idle_goaway = True
            self._active = now  # a request already on its way gets time to be answered
            self.goaway()
        self._flush()

    # --- frames in ------------------------------------------------------------------------

    def _frames(self) -> bool:
        """Handle the buffered frames, at most a turn's worth; True if complete ones remain."""
        buffer = self._buffer
        start = 0
        if not self._preface:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(bytes(buffer)):
                    raise ConnectionError_(Error.PROTOCOL_ERROR, "not an HTTP/2 connection")
                return False
            if not buffer.startswith(PREFACE):
                raise ConnectionError_(Error.PROTOCOL_ERROR, "not an HTTP/2 connection")
            self._preface, start = True, len(PREFACE)
        end = len(buffer)
        budget = self._limits.frames_per_turn
        more = False
        while end - start >= HEADER_BYTES:
            high, low, kind, flags, stream_id = HEADER.unpack_from(buffer, start)
            length = high << 16 | low
            if length > MAX_FRAME:
                raise ConnectionError_(Error.FRAME_SIZE_ERROR, f"a {length}-byte frame")
            if end - start < HEADER_BYTES + length:
                break
            if not budget:
                more = True
                break
            budget -= 1
            payload = bytes(buffer[start + HEADER_BYTES : start + HEADER_BYTES + length])
            start += HEADER_BYTES + length
            self._frame(kind, flags, stream_id & 0x7FFFFFFF, payload)
            if self._closed:
                return False
        del buffer[:start]
        return more

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continued is not None and kind != Type.CONTINUATION:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "a header block was interrupted")
        if not self._handshaken:
            if kind != Type.SETTINGS or flags & Flag.ACK:
                raise ConnectionError_(Error.PROTOCOL_ERROR, "the preface lacks its SETTINGS")
            self._handshaken = True
        empty_data = kind == Type.DATA and not payload and not flags & Flag.END_STREAM
        if kind in _CONTROL or kind > Type.CONTINUATION or empty_data:
            self._control_frame()
        if kind == Type.DATA:
            self._data(flags, stream_id, payload)
        elif kind == Type.HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == Type.CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == Type.SETTINGS:
            self._settings_frame(flags, stream_id, payload)
        elif kind == Type.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == Type.PING:
            if stream_id or len(payload) != 8:
                raise ConnectionError_(Error.PROTOCOL_ERROR, "a malformed PING")
            if not flags & Flag.ACK:
                self._out.append(frame(Type.PING, Flag.ACK, 0, payload))
                self._acks_out += 1
        elif kind == Type.RST_STREAM:
            if not stream_id or len(payload) != 4:
                raise ConnectionError_(Error.PROTOCOL_ERROR, "a malformed RST_STREAM")
            self._count_reset()
            self._forget(stream_id, cancel=True)
        elif kind == Type.GOAWAY:
            self.draining = True  # the peer opens nothing new; its open calls are answered
            if not self._streams:
                self.close()
        elif kind == Type.PUSH_PROMISE:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "a client may not push")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 requires.

    def _control_frame(self) -> None:
        if not self._control.take(self._clock.now):
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "a flood of control frames")

    def _count_reset(self) -> None:
        """A stream reset, by the peer or refused by us: both cost work and carry no check."""
        if not self._resets.take(self._clock.now):
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "a flood of stream resets")

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
        if self._buffered > self._limits.max_buffered:
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
            self._active = self._clock.now

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
        if len(self._streams) >= self._limits.max_concurrent_streams:
            self._count_reset()
            self._reset(stream_id, Error.REFUSED_STREAM)
            return
        self._header_bytes += size
        if self._header_bytes > self._limits.max_connection_header_bytes:
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "too many header bytes held")
        stream = Stream(
            self._routes.get(path), metadata, self._initial_send_window, self._clock.now, size
        )
        self._streams[stream_id] = stream
        self._active = self._clock.now
        if not content_type.startswith(b"application/grpc"):
            self._fail(stream_id, stream, Status.UNKNOWN, "not a gRPC request")
        elif stream.handler is None:
            self._fail(stream_id, stream, Status.UNIMPLEMENTED, "unknown method")
        elif end_stream:
            self._ended(stream_id, stream)

    def _settings_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & Flag.ACK:
            return
        if len(payload) % 6:
            raise ConnectionError_(Error.FRAME_SIZE_ERROR, "a malformed SETTINGS frame")
        if len(payload) // 6 > self._limits.max_settings_entries:
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "a SETTINGS frame too long")
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError_(Error.FLOW_CONTROL_ERROR, "a window over 2^31-1")
                delta, self._initial_send_window = value - self._initial_send_window, value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise ConnectionError_(Error.FLOW_CONTROL_ERROR, "a window over 2^31-1")
                if delta > 0:
                    self._pump_blocked()
            elif key == Setting.MAX_FRAME_SIZE:
                if not MAX_FRAME <= value <= 2**24 - 1:
                    raise ConnectionError_(Error.PROTOCOL_ERROR, "an invalid MAX_FRAME_SIZE")
                self._max_send_frame = value
            # HEADER_TABLE_SIZE limits an encoder's dynamic table; our answers use none.
        self._out.append(_SETTINGS_ACK)
        self._acks_out += 1

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(Error.FRAME_SIZE_ERROR, "a malformed WINDOW_UPDATE")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise ConnectionError_(Error.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            if self._send_window + increment > MAX_WINDOW:
                raise ConnectionError_(Error.FLOW_CONTROL_ERROR, "a window over 2^31-1")
            self._send_window += increment
            self._pump_blocked()
            return
        if stream_id > self._last_stream:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # closed already: allowed (RFC 9113 section 6.9)
        if not increment:
            self._count_reset()
            self._reset(stream_id, Error.PROTOCOL_ERROR)
        elif stream.send_window + increment > MAX_WINDOW:
            self._count_reset()
            self._reset(stream_id, Error.FLOW_CONTROL_ERROR)
        else:
            stream.send_window += increment
            self._pump(stream_id)

    # --- calls ----------------------------------------------------------------------------

    def _ended(self, stream_id: int, stream: Stream) -> None:
        stream.ended = True
        if stream.handler is not None:
            stream.task = self._loop.create_task(self._call(stream_id, stream))

    async def _call(self, stream_id: int, stream: Stream) -> None:
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

    # --- out ------------------------------------------------------------------------------

    def _on_drained(self) -> None:
        self._on_idle()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        out, self._out = self._out, []
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(b"".join(out))
        if self._acks_out:
            # ACKs the peer does not read pile up here, not in the peer.
            if transport.get_write_buffer_size():
                self._acks_unread += self._acks_out
            else:
                self._acks_unread = 0
            self._acks_out = 0
            if self._acks_unread > self._limits.max_outstanding_acks:
                log.warning("gRPC peer does not read the ACKs it asks for; closing")
                self.close(Error.ENHANCE_YOUR_CALM)

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
