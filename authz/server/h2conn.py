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
from collections.abc import Callable
from typing import cast

import hpack

from authz.server.h2frames import (
    DEFAULT_WINDOW,
    HEADER,
    HEADER_BYTES,
    MAX_FRAME,
    MAX_WINDOW,
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
from authz.server.h2limits import Clock, H2Limits, Throttled
from authz.server.h2requests import WINDOW, Requests
from authz.server.h2streams import Handler

__all__ = ["Connection", "Handler"]

log = logging.getLogger(__name__)
#: What misbehaving peers make us say, throttled: one process-wide budget for all of them.
peers = Throttled(log)

#: Frames that carry no request: each costs a token of the control-frame bucket.
#: Unknown types (past CONTINUATION) count too. WINDOW_UPDATE is charged only past what the
#: peer has cause to send (authz.server.h2control).
_CONTROL = frozenset(
    {int(Type.SETTINGS), int(Type.PING), int(Type.PRIORITY)}
    | set(range(int(Type.CONTINUATION) + 1, 256))
)
_DATA, _HEADERS, _CONTINUATION = int(Type.DATA), int(Type.HEADERS), int(Type.CONTINUATION)
_SETTINGS, _WINDOW_UPDATE, _PING = int(Type.SETTINGS), int(Type.WINDOW_UPDATE), int(Type.PING)
_RST_STREAM, _GOAWAY = int(Type.RST_STREAM), int(Type.GOAWAY)


class Connection(Requests, asyncio.Protocol):
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
        super().__init__(routes, limits=limits, clock=clock)
        self._on_close = on_close
        #: Called when a draining connection has no call left.
        self._on_idle = on_idle
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preface = False
        self._handshaken = False  # the client's first SETTINGS arrived
        self._opened = clock.now
        self._backlog = False  # reading paused: frames of the last read are still waiting
        self._write_paused = False
        self._idle_goaway = False
        self._closed = False
        #: When a connection closed for abuse began to linger (see `close`).
        self._linger_from: float | None = None
        self._settings = settings(
            {
                Setting.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                Setting.INITIAL_WINDOW_SIZE: WINDOW,
                Setting.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            }
        )

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # Kept: asyncio.get_running_loop() makes a getpid system call each time (its fork
        # check), which under load was a tenth of this process's CPU.
        self._loop = asyncio.get_running_loop()
        self._out += (self._settings, window_update(0, WINDOW - DEFAULT_WINDOW))
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
        self._reading_frames = True
        try:
            more = self._frames()
        except ConnectionError_ as exc:
            peers.warning("gRPC peer broke the HTTP/2 protocol (%s); closing its connection", exc)
            self.close(exc.code)
            return
        except hpack.HPACKError as undecodable:
            peers.warning("gRPC peer sent an undecodable header block (%s); closing", undecodable)
            self.close(Error.COMPRESSION_ERROR)
            return
        finally:
            self._reading_frames = False
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
            since, transport = self._linger_from, self._transport
            if since is not None and transport is not None and now - since > self._limits.linger:
                transport.abort()
            return
        limits = self._limits
        if not self._handshaken:
            if now - self._opened > limits.handshake_timeout:
                peers.warning("gRPC peer did not complete the HTTP/2 handshake in time; closing")
                self.close(Error.PROTOCOL_ERROR)
            return
        if self._continued is not None and now - self._continued_at > limits.stream_timeout:
            self.close(Error.ENHANCE_YOUR_CALM)
            return
        expired = []
        for stream_id, stream in self._streams.items():
            if now - stream.opened <= limits.stream_timeout:
                break  # streams are kept in the order they opened
            if not stream.ended or stream_id in self._blocked:
                expired.append(stream_id)  # a request still arriving, or an answer unread
        for stream_id in expired:
            self._reset(stream_id, Error.CANCEL)
        busy = self._streams or self._continued is not None
        if busy or self._last_stream != self._seen_stream:
            self._active, self._seen_stream = now, self._last_stream
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
        # Compared with plain ints: an IntEnum member's lookup costs several times the compare.
        if self._continued is not None and kind != _CONTINUATION:
            raise ConnectionError_(Error.PROTOCOL_ERROR, "a header block was interrupted")
        if not self._handshaken:
            if kind != _SETTINGS or flags & Flag.ACK:
                raise ConnectionError_(Error.PROTOCOL_ERROR, "the preface lacks its SETTINGS")
            self._handshaken = True
        if kind == _DATA:
            if not payload and not flags & Flag.END_STREAM:
                self._control_frame()  # carries nothing
            self._data(flags, stream_id, payload)
        elif kind == _HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == _CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == _WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind in _CONTROL:
            self._control_frame()
            if kind == _SETTINGS:
                self._settings_frame(flags, stream_id, payload)
            elif kind == _PING:
                if stream_id or len(payload) != 8:
                    raise ConnectionError_(Error.PROTOCOL_ERROR, "a malformed PING")
                if not flags & Flag.ACK:
                    self._out.append(frame(Type.PING, Flag.ACK, 0, payload))
                    self._acks_out += 1
            # PRIORITY and unknown frame types are ignored, as RFC 9113 requires.
        elif kind == _RST_STREAM:
            if not stream_id or len(payload) != 4:
                raise ConnectionError_(Error.PROTOCOL_ERROR, "a malformed RST_STREAM")
            self._count_reset()
            self._forget(stream_id, cancel=True)
        elif kind == _GOAWAY:
            self.draining = True  # the peer opens nothing new; its open calls are answered
            if not self._streams:
                self.close()
        else:  # PUSH_PROMISE
            raise ConnectionError_(Error.PROTOCOL_ERROR, "a client may not push")

    # --- out ------------------------------------------------------------------------------

    def _on_drained(self) -> None:
        self._on_idle()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        out, self._out = self._out, []
        transport = self._transport
        if transport is None or transport.is_closing() or self._linger_from is not None:
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
                peers.warning("gRPC peer does not read the ACKs it asks for; closing")
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

    def drop(self) -> None:
        """End a connection that lingers after its GOAWAY now (the server is stopping)."""
        if self._linger_from is not None and self._transport is not None:
            self._transport.abort()

    def close(self, error: Error = Error.NO_ERROR) -> None:
        """Final GOAWAY, then close; calls still running are cancelled."""
        if self._closed:
            return
        self._closed = True
        for stream_id in list(self._streams):
            self._forget(stream_id, cancel=True)
        self._out.append(goaway(self._last_stream, error))
        self._flush()
        transport = self._transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            # close() would first wait for what the peer has not read, which a peer that
            # stops reading makes forever; what it has not read by now it will not need.
            transport.abort()
        elif error == Error.NO_ERROR or not transport.can_write_eof():
            transport.close()
        else:
            # Closing a socket with unread input sends a reset, which can destroy the GOAWAY
            # before the peer reads it: send it with a FIN instead, and read and drop what the
            # peer still sends until it closes too or the linger ends (`tick`).
            transport.write_eof()
            self._linger_from = self._clock.now
            self._backlog = self._write_paused = False
            transport.resume_reading()
