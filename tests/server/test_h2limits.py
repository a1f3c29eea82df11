"""The h2 engine's limits in-process: token buckets, deadlines driven by the server's tick, the
connection cap, the handshake's first frame, and bounded work per loop turn. The attacks
themselves run against a real sidecar in tests/server/hostile."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import hpack
import pytest

from authz.server.grpcwire import Metadata, RpcError, Status
from authz.server.grpcwire import frame as grpc_frame
from authz.server.h2conn import Connection
from authz.server.h2frames import PREFACE, Error, Flag, Setting, Type, settings, window_update
from authz.server.h2frames import frame as h2frame
from authz.server.h2limits import Bucket, Clock, H2Limits, Throttled, limits_of
from authz.server.h2server import H2Server
from authz.server.listen import ListenAddress
from authz.settings import ConnectionSettings
from tests.support.wait import until

LOOPBACK = ListenAddress(host="127.0.0.1", port=0)
HANDSHAKE = PREFACE + settings({})


def test_a_bucket_gives_its_burst_then_refills_with_the_clock() -> None:
    bucket = Bucket(burst=3, rate=2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5)  # half a second at 2 per second: one token
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_warnings_about_peers_are_throttled_and_count_what_they_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    throttled = Throttled(logging.getLogger("t"), burst=3, rate=1.0, clock=lambda: now[0])
    for i in range(10):
        throttled.warning("peer %d misbehaved", i)
    now[0] = 1.0
    throttled.warning("peer %d misbehaved", 10)
    assert [r.getMessage() for r in caplog.records] == [
        "peer 0 misbehaved",
        "peer 1 misbehaved",
        "peer 2 misbehaved",
        "peer 10 misbehaved (7 similar messages dropped)",
    ]


def test_the_settings_a_user_may_change_reach_the_limits() -> None:
    limits = limits_of(
        ConnectionSettings(
            max_connections=7,
            handshake_timeout=2.0,
            idle_timeout=60.0,
            stream_timeout=3.0,
            max_concurrent_streams=50,
            max_header_list_size=4096,
        )
    )
    assert (limits.max_connections, limits.handshake_timeout, limits.idle_timeout) == (7, 2, 60)
    assert (limits.stream_timeout, limits.max_concurrent_streams) == (3.0, 50)
    assert limits.max_header_list_size == 4096
    assert limits.reset_burst == H2Limits().reset_burst
    assert limits.tick == 0.5


async def _frames_until_closed(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """(type, payload) of every frame until the server closes the connection."""
    frames: list[tuple[int, bytes]] = []
    while True:
        try:
            header = await asyncio.wait_for(reader.readexactly(9), 10)
        except asyncio.IncompleteReadError:
            return frames
        high, low, kind, _flags, _stream = struct.unpack(">BHBBI", header)
        frames.append((kind, await reader.readexactly(high << 16 | low)))


def _goaway(frames: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    """(last stream id, error code) of each GOAWAY."""
    return [struct.unpack(">II", p[:8]) for kind, p in frames if kind == Type.GOAWAY]


@pytest.fixture
async def quick() -> AsyncIterator[H2Server]:
    limits = H2Limits(
        handshake_timeout=0.2, idle_timeout=0.2, stream_timeout=0.2, max_connections=2
    )
    server = H2Server({}, LOOPBACK, limits=limits)
    await server.start()
    yield server
    await server.stop(0)


async def test_an_idle_connection_gets_a_graceful_goaway_then_is_closed(quick: H2Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.address.port)
    writer.write(HANDSHAKE)
    frames = await _frames_until_closed(reader)
    assert _goaway(frames) == [(2**31 - 1, Error.NO_ERROR), (0, Error.NO_ERROR)]
    writer.close()


async def test_a_half_handshake_is_closed_at_its_deadline(quick: H2Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.address.port)
    writer.write(PREFACE[:10])
    assert _goaway(await _frames_until_closed(reader)) == [(0, Error.PROTOCOL_ERROR)]
    writer.close()


async def test_a_preface_must_be_followed_by_settings(quick: H2Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.address.port)
    writer.write(PREFACE + h2frame(Type.PING, 0, 0, b"12345678"))
    assert _goaway(await _frames_until_closed(reader)) == [(0, Error.PROTOCOL_ERROR)]
    writer.close()


async def test_a_header_block_left_unfinished_closes_at_the_stream_deadline(
    quick: H2Server,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.address.port)
    writer.write(HANDSHAKE + h2frame(Type.HEADERS, 0, 1, b"\x83"))  # no END_HEADERS
    assert _goaway(await _frames_until_closed(reader)) == [(0, Error.ENHANCE_YOUR_CALM)]
    writer.close()


async def test_connections_past_the_cap_are_closed_at_once(quick: H2Server) -> None:
    held = [await asyncio.open_connection("127.0.0.1", quick.address.port) for _ in range(2)]
    for reader, _writer in held:
        await reader.readexactly(9)  # accepted: its SETTINGS arrived
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.address.port)
    assert await _frames_until_closed(reader) == []  # closed before a single frame
    for _reader, held_writer in [*held, (reader, writer)]:
        held_writer.close()


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True

    def write(self, data: Any) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.reading = False

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def _count(output: bytes | bytearray, kind: Type) -> int:
    offset, count = 0, 0
    while offset + 9 <= len(output):
        high, low, found, _flags, _stream = struct.unpack_from(">BHBBI", output, offset)
        count += found == kind
        offset += 9 + (high << 16 | low)
    return count


async def test_a_read_is_handled_a_turn_at_a_time_and_reading_waits_meanwhile() -> None:
    connection = Connection(
        {},
        limits=H2Limits(frames_per_turn=4),
        clock=Clock(),
        on_close=lambda _c: None,
        on_idle=lambda: None,
    )
    transport = _Transport()
    connection.connection_made(transport)
    pings = h2frame(Type.PING, 0, 0, b"12345678") * 20
    connection.data_received(HANDSHAKE + pings)
    assert _count(transport.written, Type.PING) == 3  # the SETTINGS took one of the four
    assert not transport.reading
    turns = 0
    while not transport.reading:
        await asyncio.sleep(0)  # one loop turn: other connections' work runs here
        turns += 1
    assert _count(transport.written, Type.PING) == 20
    assert turns == 5
    assert _count(transport.written, Type.SETTINGS) == 2  # ours and the ACK of theirs
    assert not _count(transport.written, Type.GOAWAY)


class _Unread(_Transport):
    """A transport whose peer reads nothing: every write stays buffered."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return len(self.written)

    def abort(self) -> None:
        self.aborted = True


async def _echo(message: bytes, _metadata: Metadata, _send: Callable[[bytes], None]) -> bytes:
    return message


def _connection(limits: H2Limits, transport: _Transport) -> Connection:
    connection = Connection(
        {b"/x": _echo}, limits=limits, clock=Clock(), on_close=lambda _c: None, on_idle=lambda: None
    )
    connection.connection_made(transport)
    return connection


async def test_acks_a_peer_does_not_read_are_capped() -> None:
    transport = _Unread()
    connection = _connection(H2Limits(max_outstanding_acks=10, control_burst=10_000), transport)
    connection.data_received(HANDSHAKE + h2frame(Type.PING, 0, 0, b"12345678") * 20)
    assert _goaways(transport) == [(0, Error.ENHANCE_YOUR_CALM)]
    assert transport.aborted  # what the peer has not read is dropped, not waited for


def _calls(encoder: hpack.Encoder, streams: range) -> bytes:
    """Unary calls to /x, each with the two updates grpc-core sends as it opens one."""
    block = [(":method", "POST"), (":path", "/x"), ("content-type", "application/grpc")]
    calls = bytearray()
    for stream in streams:
        calls += h2frame(Type.HEADERS, Flag.END_HEADERS, stream, encoder.encode(block))
        calls += window_update(stream, 5) + window_update(0, 5)
        calls += h2frame(Type.DATA, Flag.END_STREAM, stream, grpc_frame(b"x"))
    return bytes(calls)


async def _answered(transport: _Transport, count: int) -> None:
    await until(lambda: _count(bytes(transport.written), Type.DATA) == count, what="the answers")


def _goaways(transport: _Transport) -> list[tuple[int, int]]:
    return _goaway(_frames_of(bytes(transport.written)))


async def test_window_updates_the_calls_explain_are_free_and_the_rest_are_charged() -> None:
    transport = _Transport()
    # The clock stands still: the bucket has its burst and nothing more; the SETTINGS took one.
    connection = _connection(H2Limits(control_burst=10), transport)
    connection.data_received(HANDSHAKE)
    encoder = hpack.Encoder()
    for first in range(1, 200, 40):
        streams = range(first, first + 40, 2)
        connection.data_received(_calls(encoder, streams))
        await _answered(transport, (first + 39) // 2)
        # Both windows of each answer given back: the stream's (closed by now) and the
        # connection's.
        connection.data_received(
            b"".join(window_update(s, 6) + window_update(0, 6) for s in streams)
        )
    assert not _goaways(transport)
    connection.data_received(window_update(0, 1) * 9)  # explained by nothing: the bucket's
    assert not _goaways(transport)
    connection.data_received(window_update(0, 1))
    assert _goaways(transport) == [(199, Error.ENHANCE_YOUR_CALM)]


async def test_window_updates_due_bank_no_more_than_the_concurrent_streams_explain() -> None:
    transport = _Transport()
    connection = _connection(H2Limits(control_burst=10, max_concurrent_streams=5), transport)
    connection.data_received(HANDSHAKE)
    encoder = hpack.Encoder()
    for first in range(1, 200, 10):  # 100 calls that leave two updates each unsent
        connection.data_received(_calls(encoder, range(first, first + 10, 2)))
        await _answered(transport, (first + 9) // 2)
    # What 100 calls would explain, but only four updates per stream that may be open at once
    # are still owed; then the bucket's nine.
    connection.data_received(window_update(0, 1) * (4 * 5 + 9))
    assert not _goaways(transport)
    connection.data_received(window_update(0, 1))
    assert _goaways(transport) == [(199, Error.ENHANCE_YOUR_CALM)]


async def test_a_settings_window_that_overflows_an_open_stream_closes_the_connection() -> None:
    transport = _Transport()
    connection = _connection(H2Limits(), transport)
    block = hpack.Encoder().encode(
        [(":method", "POST"), (":path", "/x"), ("content-type", "application/grpc")]
    )
    connection.data_received(
        HANDSHAKE
        + h2frame(Type.HEADERS, 0x4, 1, block)  # a stream, left open
        + h2frame(Type.WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 1 - 65_535))
        + settings({Setting.INITIAL_WINDOW_SIZE: 65_536})
    )
    assert _goaways(transport) == [(1, Error.FLOW_CONTROL_ERROR)]


def _frames_of(output: bytes) -> list[tuple[int, bytes]]:
    frames, offset = [], 0
    while offset + 9 <= len(output):
        high, low, kind, _flags, _stream = struct.unpack_from(">BHBBI", output, offset)
        length = high << 16 | low
        frames.append((kind, output[offset + 9 : offset + 9 + length]))
        offset += 9 + length
    return frames


# --- answered at once, or by a task ---------------------------------------------------------------


def _answer_now(message: bytes, _metadata: Metadata, _send: Callable[[bytes], None]) -> bytes:
    if message == b"refuse":
        raise RpcError(Status.INVALID_ARGUMENT, "refused")
    if message == b"break":
        raise ValueError("a bug")
    return message[::-1]


async def _answer_later(message: bytes, metadata: Metadata, send: Callable[[bytes], None]) -> bytes:
    await asyncio.sleep(0)
    return _answer_now(message, metadata, send)


def _by_stream(output: bytes) -> dict[int, list[tuple[int, int, bytes]]]:
    streams: dict[int, list[tuple[int, int, bytes]]] = {}
    offset = 0
    while offset + 9 <= len(output):
        high, low, kind, flags, stream = struct.unpack_from(">BHBBI", output, offset)
        length = high << 16 | low
        if stream:
            streams.setdefault(stream, []).append(
                (kind, flags, output[offset + 9 : offset + 9 + length])
            )
        offset += 9 + length
    return streams


@pytest.mark.parametrize("messages", [[b"abc", b"refuse", b"break", b"xyz" * 100]])
async def test_an_answer_given_at_once_is_framed_as_one_given_by_a_task(
    messages: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that answers at once skips the task; the frames on the wire are the same -
    answers, gRPC errors and a handler's bug (INTERNAL) alike."""
    encoder = hpack.Encoder()
    request = HANDSHAKE
    for index, message in enumerate(messages):
        block = encoder.encode(
            [(":method", "POST"), (":path", "/x"), ("content-type", "application/grpc")]
        )
        stream = 2 * index + 1
        request += h2frame(Type.HEADERS, Flag.END_HEADERS, stream, block)
        request += h2frame(Type.DATA, Flag.END_STREAM, stream, grpc_frame(message))
    outputs = []
    for handler in (_answer_now, _answer_later):
        transport = _Transport()
        connection = Connection(
            {b"/x": handler},
            limits=H2Limits(),
            clock=Clock(),
            on_close=lambda _c: None,
            on_idle=lambda: None,
        )
        connection.connection_made(transport)
        connection.data_received(request)
        if handler is _answer_now:
            # Written by the read that brought the requests, with no flush left for later.
            assert _count(transport.written, Type.HEADERS) == 2 * len(messages) - 2
            assert not connection._flush_scheduled
        for _turn in range(20):  # the tasks' turns; the synchronous handler needs none
            if _count(transport.written, Type.HEADERS) >= 2 * len(messages) - 2:
                break
            await asyncio.sleep(0)
        outputs.append(_by_stream(bytes(transport.written)))
    answered_at_once, answered_later = outputs
    assert len(answered_at_once) == len(messages)
    assert answered_at_once == answered_later
    assert [r.getMessage() for r in caplog.records].count("gRPC handler failed") == 2
