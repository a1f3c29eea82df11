"""Check-port connection limits: what one client of the h2 engine may hold, and for how long.

These are the limits an operator may need to change (a gateway with many Envoy workers needs
more connections; a slow network a longer handshake). The rest, and why each default is what it
is, live with the engine (authz.server.h2limits.H2Limits). The grpcio engine applies its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.settings.declare import Section, option
from authz.settings.kinds import Amount, Count


@dataclass(frozen=True, slots=True)
class ConnectionSettings(Section):
    """Check-port connection limits (the h2 engine)."""

    max_connections: int = option(
        1024,
        Count(1, 1_000_000),
        flag="--max-connections",
        help="connections open at once to the check port (per process); a connection past it "
        "is closed at once",
    )
    handshake_timeout: float = option(
        10.0,
        Amount(0.1, 3600),
        flag="--handshake-timeout",
        metavar="SECONDS",
        help="a new connection must send the HTTP/2 preface and its SETTINGS within this time",
    )
    idle_timeout: float = option(
        300.0,
        Amount(1, 86_400),
        flag="--idle-timeout",
        metavar="SECONDS",
        help="a connection with no open stream for this long gets a graceful GOAWAY (PINGs do "
        "not count); clients reconnect when they next need it",
    )
    stream_timeout: float = option(
        10.0,
        Amount(0.1, 3600),
        flag="--stream-timeout",
        metavar="SECONDS",
        help="a request's headers and body must arrive within this time of its first frame, "
        "and its answer must have been taken by then (flow control), else its stream is reset",
    )
    max_concurrent_streams: int = option(
        1000,
        Count(1, 1_000_000),
        flag="--max-concurrent-streams",
        help="streams one connection may have open at once (advertised in SETTINGS; more are "
        "refused)",
    )
    max_header_list_size: int = option(
        16 * 1024,
        Count(1024, 1024 * 1024),
        flag="--max-header-list-size",
        metavar="BYTES",
        help="decoded size of one request's HTTP/2 headers (gRPC metadata; the checked request's "
        "own headers travel in the message), counting HPACK expansion",
    )
