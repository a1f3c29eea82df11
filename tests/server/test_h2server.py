"""The h2 engine against real clients: grpcio's channels (as the tests and tools use) and raw
HTTP/2 bytes (for what a well-behaved client never sends). Envoy itself drives it in tests/e2e."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator, Callable

import grpc
import hpack
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.verify import Verifier
from authz.policy.snapshot import EMPTY
from authz.ratelimit.memory import MemoryLimiter
from authz.server.grpcwire import Metadata, frame
from authz.server.h2frames import PREFACE, Flag, Setting, Type, settings, window_update
from authz.server.h2frames import frame as h2frame
from authz.server.h2limits import H2Limits
from authz.server.h2server import CHECK, H2GrpcServer, H2Server
from authz.server.listen import ListenAddress
from authz.server.servicer import SERVICE, AuthorizationServicer
from tests.support.grpcclient import check_request
from tests.support.wait import until

LOOPBACK = ListenAddress(host="127.0.0.1", port=0)


@pytest.fixture
async def server() -> AsyncIterator[H2GrpcServer]:
    running = H2GrpcServer(
        AuthorizationServicer(snapshot=lambda: EMPTY, limiter=MemoryLimiter(), verifier=Verifier()),
        LOOPBACK,
    )
    await running.start()
    yield running
    await running.stop(0)


def _check(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        CHECK.decode(),
        request_serializer=pb.CheckRequest.SerializeToString,
        response_deserializer=pb.CheckResponse.FromString,
    )


async def test_check_and_health_over_a_grpcio_channel(server: H2GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.address.grpc_target) as channel:
        response = await _check(channel)(check_request(host="nobody.test"), timeout=10)
        assert response.denied_response.status.code == 403
        body = json.loads(response.denied_response.body)
        assert body["error"] == "no_policy"
        assert len(body["decision_id"]) == 16
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=SERVICE)
        assert (
            await health.Check(request, timeout=10)
        ).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await server.set_serving(True)
        assert (
            await health.Check(request, timeout=10)
        ).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_many_concurrent_checks_each_get_their_own_answer(server: H2GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.address.grpc_target) as channel:
        call = _check(channel)
        answers = await asyncio.gather(
            *(call(check_request(host=f"h{i}.test"), timeout=10) for i in range(300))
        )
    ids = {json.loads(a.denied_response.body)["decision_id"] for a in answers}
    assert len(ids) == 300


async def test_a_grpcio_channel_busy_round_after_round_keeps_its_connection() -> None:
    """grpc-core gives window back with two WINDOW_UPDATEs per call; they are not a flood. The
    control-frame bucket here is small and slow, so that charging them to it would cut the
    channel off within the first rounds however fast the machine runs the calls."""
    running = H2GrpcServer(
        AuthorizationServicer(snapshot=lambda: EMPTY, limiter=MemoryLimiter(), verifier=Verifier()),
        LOOPBACK,
        limits=H2Limits(control_burst=100, control_rate=10.0),
    )
    await running.start()
    statuses = health_pb2.HealthCheckResponse
    try:
        async with grpc.aio.insecure_channel(running.address.grpc_target) as channel:
            # Open through every round: a GOAWAY between two rounds ends it too (a new
            # connection would serve the next round's calls as if nothing had happened).
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE)
            )
            assert (await watch.read()).status == statuses.NOT_SERVING
            call = _check(channel)
            for _ in range(40):
                answers = await asyncio.gather(
                    *(call(check_request(host="nobody.test"), timeout=10) for _ in range(64))
                )
                assert {a.denied_response.status.code for a in answers} == {403}
            await running.set_serving(True)
            assert (await watch.read()).status == statuses.SERVING
            watch.cancel()
    finally:
        await running.stop(0)


async def test_unknown_methods_malformed_and_oversized_requests_are_rpc_errors(
    server: H2GrpcServer,
) -> None:
    async with grpc.aio.insecure_channel(server.address.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await channel.unary_unary("/envoy.service.auth.v3.Authorization/Nope")(b"", timeout=10)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        raw = channel.unary_unary(CHECK.decode())
        with pytest.raises(grpc.aio.AioRpcError) as malformed:
            await raw(b"\xff\xff\xff", timeout=10)
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as huge:
            await raw(b"\x0a" * (2 * 1024 * 1024), timeout=10)
        assert huge.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The connection survives all of that.
        answer = await _check(channel)(check_request(host="a.test"), timeout=10)
        assert answer.denied_response.status.code == 403


async def test_watch_follows_the_status_and_ends_at_shutdown() -> None:
    running = H2GrpcServer(
        AuthorizationServicer(snapshot=lambda: EMPTY, limiter=MemoryLimiter(), verifier=Verifier()),
        LOOPBACK,
    )
    await running.start()
    async with grpc.aio.insecure_channel(running.address.grpc_target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
        )
        seen = [(await watch.read()).status]
        await running.set_serving(True)
        seen.append((await watch.read()).status)
        await running.stop(5)
        rest = []
        while (message := await watch.read()) is not grpc.aio.EOF:
            rest.append(message.status)
    statuses = health_pb2.HealthCheckResponse
    assert seen == [statuses.NOT_SERVING, statuses.SERVING]
    assert rest == [statuses.NOT_SERVING]


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        # Accepted into the backlog of a listener that closed meanwhile: ask again, the next
        # attempt finds it closed.
        return False
    return False


async def test_stop_lets_a_running_call_finish_and_refuses_new_connections() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(message: bytes, _metadata: Metadata, _send: Callable[[bytes], None]) -> bytes:
        entered.set()
        await release.wait()
        return message

    running = H2Server({b"/t.T/Slow": slow}, LOOPBACK)
    await running.start()
    async with grpc.aio.insecure_channel(running.address.grpc_target) as channel:
        call = asyncio.ensure_future(channel.unary_unary("/t.T/Slow")(b"payload", timeout=10))
        await asyncio.wait_for(entered.wait(), 10)
        stopping = asyncio.ensure_future(running.stop(5))
        await until(lambda: refuses(running.address.port), what="the listener closed")
        assert not stopping.done()  # the call it waits for is still held by `release`
        release.set()
        assert await call == b"payload"
        await asyncio.wait_for(stopping, 5)


async def test_a_call_still_running_after_the_grace_is_cancelled() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(
        _message: bytes, _metadata: Metadata, _send: Callable[[bytes], None]
    ) -> bytes:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b""

    running = H2Server({b"/t.T/Forever": forever}, LOOPBACK)
    await running.start()
    async with grpc.aio.insecure_channel(running.address.grpc_target) as channel:
        call = asyncio.ensure_future(channel.unary_unary("/t.T/Forever")(b"", timeout=10))
        await asyncio.wait_for(entered.wait(), 10)
        await asyncio.wait_for(running.stop(0.2), 5)
        assert cancelled.is_set()
        with pytest.raises(grpc.aio.AioRpcError):
            await call


# --- raw HTTP/2 ----------------------------------------------------------------------------

_REQUEST_HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", CHECK.decode()),
    (":authority", "authz"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


async def _read_frames(
    reader: asyncio.StreamReader, until: Callable[[int, int, int], bool]
) -> list[tuple[int, int, int, bytes]]:
    """Frames (type, flags, stream, payload) up to and including the first that `until` likes."""
    frames = []
    while True:
        header = await asyncio.wait_for(reader.readexactly(9), 5)
        high, low, kind, flags, stream = struct.unpack(">BHBBI", header)
        payload = await reader.readexactly(high << 16 | low)
        frames.append((kind, flags, stream, payload))
        if until(kind, flags, stream):
            return frames


async def test_a_small_peer_window_gets_the_answer_in_pieces(server: H2GrpcServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
    encoder = hpack.Encoder()
    request = frame(check_request(host="a.test").SerializeToString())
    writer.write(
        PREFACE
        + settings({Setting.INITIAL_WINDOW_SIZE: 10})
        + h2frame(Type.HEADERS, Flag.END_HEADERS, 1, encoder.encode(_REQUEST_HEADERS))
        + h2frame(Type.DATA, Flag.END_STREAM, 1, request)
    )
    first = await _read_frames(reader, lambda kind, _f, stream: kind == Type.DATA and stream == 1)
    assert len(first[-1][3]) == 10  # no more than the window
    writer.write(window_update(1, 1 << 20))
    rest = await _read_frames(
        reader, lambda kind, flags, stream: stream == 1 and bool(flags & Flag.END_STREAM)
    )
    body = first[-1][3] + b"".join(p for kind, _f, s, p in rest if kind == Type.DATA and s == 1)
    answer = pb.CheckResponse.FromString(body[5:])
    assert answer.denied_response.status.code == 403
    writer.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not HTTP/2
        PREFACE + h2frame(Type.HEADERS, Flag.END_HEADERS, 1, b"\xff\xff\xff\xff"),  # bad HPACK
        PREFACE + struct.pack(">BHBBI", 1, 0, Type.DATA, 0, 1),  # a 64 KiB frame
        PREFACE + h2frame(Type.DATA, 0, 7, b"x"),  # DATA on a stream never opened
    ],
)
async def test_protocol_violations_close_only_that_connection(
    server: H2GrpcServer, garbage: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
    writer.write(garbage)
    assert await asyncio.wait_for(reader.read(), 5) is not None  # read to EOF: closed by us
    assert reader.at_eof()
    writer.close()
    async with grpc.aio.insecure_channel(server.address.grpc_target) as channel:
        answer = await _check(channel)(check_request(host="a.test"), timeout=10)
    assert answer.denied_response.status.code == 403


async def test_unfinished_requests_are_bounded_per_connection(server: H2GrpcServer) -> None:
    """17 streams each sending 1 MiB and never ending: over 16 MiB held, the connection goes
    (closed with unread data, so the peer may see a reset rather than the GOAWAY)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
    encoder = hpack.Encoder()
    chunk = b"\x00" * 16_384
    closed = False
    try:
        writer.write(PREFACE + settings({}))
        for stream in range(1, 35, 2):
            block = encoder.encode(_REQUEST_HEADERS)
            writer.write(h2frame(Type.HEADERS, Flag.END_HEADERS, stream, block))
            for _ in range(64):
                writer.write(h2frame(Type.DATA, 0, stream, chunk))
            await writer.drain()
        while await asyncio.wait_for(reader.read(65_536), 5):
            pass
        closed = True
    except ConnectionError:
        closed = True
    assert closed
    writer.close()
    async with grpc.aio.insecure_channel(server.address.grpc_target) as channel:
        answer = await _check(channel)(check_request(host="a.test"), timeout=10)
    assert answer.denied_response.status.code == 403
