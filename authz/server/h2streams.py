"""The answering half of an h2 connection: its open streams, their answers, and flow control out.

authz.server.h2conn reads frames and starts calls; this base class holds what the calls share
with it: the table of open streams, the frames waiting to be written, and our send windows. An
answer's DATA waits for window (the peer's WINDOW_UPDATE continues it: only streams waiting
are revisited, so a peer's WINDOW_UPDATEs cost nothing per open stream); its trailers follow.
Everything a stream held is released the moment it is forgotten, and counted back out of the
connection's budgets (authz.server.h2limits).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from authz.server.grpcwire import Metadata, Status, trailers, trailers_only
from authz.server.grpcwire import frame as grpc_frame
from authz.server.h2frames import (
    DEFAULT_WINDOW,
    MAX_FRAME,
    RESPONSE_HEADERS,
    Error,
    Flag,
    Type,
    frame,
    rst_stream,
)

#: A method's implementation: (request message, metadata, send) -> the last response message,
#: or None - at once, or as an awaitable when it has to wait. A unary method returns its answer;
#: a streaming one calls `send` for each message.
Handler = Callable[
    [bytes, Metadata, Callable[[bytes], None]], bytes | Awaitable[bytes | None] | None
]

#: Module constants: looking a member up on its enum class each time costs more than the rest.
_HEADERS, _DATA = Type.HEADERS, Type.DATA


@dataclass(slots=True)
class Stream:
    handler: Handler | None
    metadata: Metadata
    send_window: int
    #: When it opened (the connection's coarse clock) and what its header block decoded to.
    opened: float = 0.0
    header_bytes: int = 0
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


class Streams:
    """Open streams and their answers (see the module docstring)."""

    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport | None

    def __init__(self) -> None:
        self._streams: dict[int, Stream] = {}
        #: Streams whose answer waits for send window.
        self._blocked: set[int] = set()
        self._send_window = DEFAULT_WINDOW
        self._initial_send_window = DEFAULT_WINDOW
        self._max_send_frame = MAX_FRAME
        self._buffered = 0  # bytes of request bodies held for calls that have not started
        self._header_bytes = 0  # decoded header bytes held by open streams
        #: WINDOW_UPDATEs the peer has cause to send (authz.server.h2control charges only
        #: those past it): two for each stream it opened and for each DATA frame we sent.
        self._updates_due = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        #: Frames are being read: whatever they answer is written when the read is done, so an
        #: answer given at once schedules no flush of its own.
        self._reading_frames = False
        self.draining = False

    def _on_drained(self) -> None:
        """A draining connection has no stream left."""

    def _flush(self) -> None:
        raise NotImplementedError

    def _send(self, stream_id: int, stream: Stream, message: bytes) -> None:
        if stream.finished or stream_id not in self._streams:
            return
        if not stream.started:
            stream.started = True
            self._out.append(frame(_HEADERS, Flag.END_HEADERS, stream_id, RESPONSE_HEADERS))
        stream.pending.append(grpc_frame(message))
        self._pump(stream_id)
        self._schedule_flush()

    def _finish(self, stream_id: int, stream: Stream, block: bytes) -> None:
        if stream.finished:
            return
        stream.finished = True
        stream.trailer = block
        self._pump(stream_id)

    def _fail(self, stream_id: int, stream: Stream, status: Status, message: str) -> None:
        if stream.started:
            self._finish(stream_id, stream, trailers(status, message))
            return
        stream.finished = True
        self._out.append(
            frame(
                _HEADERS,
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
                self._blocked.add(stream_id)  # continued by a WINDOW_UPDATE
                return
            self._out.append(frame(_DATA, 0, stream_id, piece[:size]))
            self._updates_due += 2  # the stream's and the connection's window, given back
            self._send_window -= size
            stream.send_window -= size
            if size == len(piece):
                pending.popleft()
            else:
                pending[0] = piece[size:]
        if self._blocked:
            self._blocked.discard(stream_id)
        if stream.trailer is not None:
            flags = Flag.END_HEADERS | Flag.END_STREAM
            self._out.append(frame(_HEADERS, flags, stream_id, stream.trailer))
            self._close_stream(stream_id, stream)

    def _pump_blocked(self) -> None:
        for stream_id in list(self._blocked):
            self._pump(stream_id)

    def _close_stream(self, stream_id: int, stream: Stream) -> None:
        """Our side is done; a request still arriving is not needed any more."""
        if not stream.ended:
            self._out.append(rst_stream(stream_id, Error.NO_ERROR))
        self._forget(stream_id, cancel=False)

    def _reset(self, stream_id: int, code: Error) -> None:
        """End a stream with RST_STREAM: its call, if running, is cancelled."""
        self._out.append(rst_stream(stream_id, code))
        self._forget(stream_id, cancel=True)

    def _forget(self, stream_id: int, *, cancel: bool) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._buffered -= len(stream.body)
            self._header_bytes -= stream.header_bytes
            stream.body = bytearray()
            if stream.pending:
                stream.pending.clear()
                self._blocked.discard(stream_id)
            if cancel and stream.task is not None:
                stream.task.cancel()
        if self.draining and not self._streams:
            self._on_drained()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._reading_frames:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
