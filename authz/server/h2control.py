"""The connection-management frames of an h2 connection, and the limits on how many a peer sends.

SETTINGS, PING, WINDOW_UPDATE and RST_STREAM carry no request, yet each costs work and SETTINGS
and PING each ask for an answer: a peer sending them in a flood (CVE-2019-9512, 9515) or
resetting streams as fast as it opens them (CVE-2023-44487) is answered with GOAWAY
ENHANCE_YOUR_CALM once its token bucket is empty (authz.server.h2limits).

A WINDOW_UPDATE is different: it is how a receiver gives back the window our answers used, so
a well-behaved client sends them in proportion to its calls, not to time. grpc-core sends two
per unary call (it grows the stream's window as the call opens and gives the connection's back
after the answer); charged to the bucket, they emptied it as soon as one grpcio channel made
calls faster than half the bucket's rate, and that legitimate client was cut off. Like Envoy
(its max_inbound_window_update_frames_per_data_frame_sent: a budget of updates per stream
opened and per DATA frame sent), the updates the peer has cause to send are free: two for each
stream it opens and for each DATA frame we send (`_updates_due`). The budget banks no more than
a full set of concurrent streams explains, so calls made long ago buy nothing now; updates past
it are charged to the bucket, and a flood of updates about nothing is cut off as before.

Windows are checked as RFC 9113 section 6.9 says: a stream's pushed past 2^31-1 resets that
stream with FLOW_CONTROL_ERROR, the connection's closes the connection with it.
"""

from __future__ import annotations

import struct

from authz.server.h2frames import (
    MAX_FRAME,
    MAX_WINDOW,
    ConnectionError_,
    Error,
    Flag,
    Setting,
    Type,
    frame,
)
from authz.server.h2limits import Bucket, Clock, H2Limits
from authz.server.h2streams import Streams

_SETTINGS_ACK = frame(Type.SETTINGS, Flag.ACK, 0)
_U32 = struct.Struct(">I")


class ControlFrames(Streams):
    """SETTINGS, WINDOW_UPDATE and the flood limits of one connection (see the module
    docstring); PING and RST_STREAM, handled inline by the connection, count here too."""

    def __init__(self, *, limits: H2Limits, clock: Clock) -> None:
        super().__init__()
        self._limits = limits
        self._clock = clock
        self._last_stream = 0
        self._resets = Bucket(burst=limits.reset_burst, rate=limits.reset_rate, now=clock.now)
        self._control = Bucket(burst=limits.control_burst, rate=limits.control_rate, now=clock.now)
        self._acks_out = 0  # ACKs queued since the last write
        self._acks_unread = 0  # ACKs written while the peer was not reading
        #: The most `_updates_due` banks: two as each stream opens, two for its answer.
        self._max_updates_due = 4 * limits.max_concurrent_streams

    def _control_frame(self) -> None:
        if not self._control.take(self._clock.now):
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "a flood of control frames")

    def _count_reset(self) -> None:
        """A stream reset, by the peer or refused by us: both cost work and carry no check."""
        if not self._resets.take(self._clock.now):
            raise ConnectionError_(Error.ENHANCE_YOUR_CALM, "a flood of stream resets")

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
        if self._updates_due > 0:  # one the peer has cause to send (see the module docstring)
            self._updates_due = min(self._updates_due, self._max_updates_due) - 1
        else:
            self._control_frame()
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
