"""How much one HTTP/2 peer may cost the h2 engine, and how it is stopped when it asks for more.

The check port is reachable by whatever can reach the pod; one client must not be able to stall
every check past Envoy's timeout (Envoy then denies real traffic) or grow the process without
bound. The values follow what mature HTTP/2 servers settled on after the 2019 flood advisories
(CVE-2019-9511..9518), rapid reset (CVE-2023-44487) and the CONTINUATION flood
(CVE-2024-27316, CVE-2024-28182), scaled to what an ext_authz client actually sends: small gRPC
metadata (Envoy puts the request's own headers in the message, not in HTTP/2 headers), one
small message per stream, and a handful of long-lived connections per Envoy.

Abuse is answered the way nghttp2 and Envoy answer it: GOAWAY with ENHANCE_YOUR_CALM and
close. A peer that is merely slow gets its stream reset (CANCEL) or, when idle, a graceful
GOAWAY; Envoy reconnects on its own.

- `max_connections`: Envoy opens a few connections per worker thread; the cap only stops a
  client that opens thousands (each costs a file descriptor and buffers). Past it, a new
  connection is closed at once.
- `handshake_timeout`: the client preface and its first SETTINGS must arrive this soon after
  the connection opens (nghttpx and Go wait seconds, not minutes); a half-open handshake holds a
  descriptor and a connection slot, nothing more.
- `idle_timeout`: a connection with no stream open this long gets a graceful GOAWAY. PINGs do
  not count as activity (Envoy's rule too); Envoy's own idle timeout for upstream connections
  is longer, so its connections are normally reused, not cycled.
- `stream_timeout`: a stream's request (headers and body) must be complete this soon after it
  opened, and an answer still waiting for the peer's flow-control window is dropped then too.
  Envoy's ext_authz timeout is a fraction of a second, so a request still arriving (or an answer
  not taken) after seconds is abandoned or hostile; the stream is reset and what it held is
  released. A call still running is not limited here (a health Watch runs for as long as its
  client wants).
- `max_concurrent_streams`: advertised in SETTINGS and enforced (REFUSED_STREAM); what the
  grpcio server was told before, so Envoy rarely needs a second connection.
- `max_header_list_size`: decoded bytes (RFC 7541 counting: name + value + 32 per field) of
  one header block, checked while decoding, so a small block that expands through the dynamic
  table costs what it decodes to. grpc's own hard limit for metadata is the same order.
- `max_header_fields`: fields in one block (Envoy's default is 100 request headers); each
  field is a few Python objects, which the byte count alone underestimates.
- `max_connection_header_bytes`: decoded header bytes all open streams of one connection may
  hold; the expansion attack keeps many streams open with large decoded blocks.
- `max_buffered`: request-body bytes one connection may hold before their calls start.
- `max_continuations`: CONTINUATION frames after one HEADERS, empty ones included (nghttp2
  allows 8 by default, Envoy 512 for its far larger header limits); the largest block we accept
  fits in two full frames, so twice nghttp2's count leaves room for encoders that split small.
- `reset_burst`, `reset_rate`: streams the peer resets (RST_STREAM) as a token bucket, the
  mitigation nghttp2 shipped for rapid reset (burst 1000; its refill is slower). Envoy's own
  cancellations of checks that time out count too, which only a sidecar already failing checks
  faster than `reset_rate` per second reaches; a client resetting faster than that for long is
  closed. Streams we refuse count as well: each cost a header block's decoding.
- `control_burst`, `control_rate`: SETTINGS, PING, WINDOW_UPDATE, PRIORITY, unknown frames
  and empty DATA as a token bucket: each costs us work (and SETTINGS and PING an answer) and
  carries no request.
- `max_settings_entries`: parameters in one SETTINGS frame (nghttp2's default is 32).
- `max_outstanding_acks`: SETTINGS and PING ACKs written while the peer is not reading what we
  write (nghttp2's max_outbound_ack; Envoy caps outbound control frames at 1000 the same way).
- `linger`: after a GOAWAY for abuse, what the peer still sends is read and dropped this long
  before the socket is closed (Go's HTTP/2 server waits the same way): closing a socket with
  unread input resets it, which can destroy the GOAWAY before the peer reads why it was cut off.
- `frames_per_turn`: frames handled per event-loop turn before reading pauses and other
  connections run; the rest of the read is handled on a later turn, so a flood delays only
  its own connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from authz.settings.connections import ConnectionSettings

#: The limits a user may set (--max-connections...): their defaults are declared there.
_SETTABLE = ConnectionSettings()


@dataclass(frozen=True, slots=True)
class H2Limits:
    """The limits one h2 check server applies to each peer (see the module docstring)."""

    max_connections: int = _SETTABLE.max_connections
    handshake_timeout: float = _SETTABLE.handshake_timeout
    idle_timeout: float = _SETTABLE.idle_timeout
    stream_timeout: float = _SETTABLE.stream_timeout
    max_concurrent_streams: int = _SETTABLE.max_concurrent_streams
    max_header_list_size: int = _SETTABLE.max_header_list_size
    max_header_fields: int = 100
    max_connection_header_bytes: int = 1024 * 1024
    max_buffered: int = 4 * 1024 * 1024
    max_continuations: int = 16
    reset_burst: int = 1000
    reset_rate: float = 100.0
    control_burst: int = 1000
    control_rate: float = 200.0
    max_settings_entries: int = 32
    max_outstanding_acks: int = 1000
    linger: float = 1.0
    frames_per_turn: int = 256

    @property
    def tick(self) -> float:
        """How often deadlines are checked: a fraction of the shortest, within [0.05, 1] s."""
        shortest = min(self.handshake_timeout, self.idle_timeout, self.stream_timeout)
        return min(1.0, max(0.05, shortest / 4))


#: The defaults, as one value (a default argument's value must not be built per call).
DEFAULTS = H2Limits()


class Clock:
    """The time deadlines and buckets read: the loop's clock as of the server's last tick.

    Coarse on purpose: reading it costs an attribute load, not a system call, on every frame.
    """

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now


class Bucket:
    """A token bucket: `burst` tokens, refilled at `rate` per second of the shared clock."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, *, burst: int, rate: float, now: float) -> None:
        self._burst, self._rate = float(burst), rate
        self._tokens, self._at = float(burst), now

    def take(self, now: float) -> bool:
        """One token, or False when the bucket is empty."""
        if now != self._at:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def limits_of(settings: ConnectionSettings, base: H2Limits = DEFAULTS) -> H2Limits:
    """`base` with the limits a user may set taken from `settings`: every connection setting
    is the H2Limits field of the same name."""
    return replace(base, **{f.name: getattr(settings, f.name) for f in fields(settings)})


class Throttled:
    """A logger that writes at most `burst` lines at once and `rate` a second after that, and
    says how many it dropped: one line per hostile connection would let an attacker who
    reconnects in a loop flood the logs (and whatever collects them)."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        burst: int = 10,
        rate: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._clock = clock
        self._bucket = Bucket(burst=burst, rate=rate, now=clock())
        self._dropped = 0

    def warning(self, message: str, *args: object) -> None:
        if not self._bucket.take(self._clock()):
            self._dropped += 1
            return
        if self._dropped:
            message += " (%d similar messages dropped)"
            args, self._dropped = (*args, self._dropped), 0
        self._log.warning(message, *args)
