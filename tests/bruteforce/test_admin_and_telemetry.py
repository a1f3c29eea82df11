"""Operating blocks: the admin API and `authz blocks` over real gRPC, the metrics, and the
`block_started` line of the decision log (rate-limited)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import pytest

from authz._gen.authz.v1 import admin_pb2 as apb
from authz.cli import main
from authz.jwt.verify import Verifier
from authz.ratelimit.blockmemory import MemoryBlocks
from authz.server.admin import AdminServer, AdminServicer
from authz.server.listen import ListenAddress
from authz.server.observe import BLOCK_LINES_PER_SECOND, BlockTelemetry
from authz.telemetry.decisionlog import DecisionLog
from authz.telemetry.metrics import Metrics
from tests.bruteforce.support import NOW, build, check, forged, policy, token

SNAPSHOT = build(policy())


async def block(store: MemoryBlocks, ip: str, *, now: float = NOW) -> None:
    for i in range(3):
        assert (await check(SNAPSHOT, store, bearer=forged(), ip=ip, now=now + i)).status == 401


@pytest.fixture
async def admin() -> AsyncIterator[tuple[str, MemoryBlocks]]:
    store = MemoryBlocks()
    servicer = AdminServicer(
        snapshot=lambda: SNAPSHOT, verifier=Verifier(), block_store=store, clock=lambda: NOW
    )
    server = AdminServer(servicer, ListenAddress("127.0.0.1", 0))
    await server.start()
    yield str(server.address), store
    await server.stop(0)


async def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


async def test_list_and_clear_blocks_over_the_admin_api(
    admin: tuple[str, MemoryBlocks], capsys: pytest.CaptureFixture[str]
) -> None:
    address, store = admin
    assert await cli(["blocks", "list", "--admin", address], capsys) == (0, "no blocks\n", "")
    await block(store, "203.0.113.7", now=NOW - 60)
    await block(store, "2001:db8::1", now=NOW - 30)
    code, out, _ = await cli(["blocks", "list", "--admin", address], capsys)
    assert code == 0
    assert out.splitlines() == [
        "KEY                       SECONDS LEFT",
        "t/api:per-ip=203.0.113.7  842",  # the third failure at NOW - 58, blocked for 900 s
        "t/api:per-ip=2001:db8::1  872",
    ]
    code, out, _ = await cli(["blocks", "list", "--admin", address, "--json"], capsys)
    first = json.loads(out)["blocks"][0]
    assert (first["policy"], first["protection"], first["value"]) == (
        "t/api",
        "per-ip",
        "203.0.113.7",
    )
    assert await cli(["blocks", "clear", "--admin", address, "203.0.113.7"], capsys) == (
        0,
        "cleared 1 block\n",
        "",
    )
    key = "t/api:per-ip=2001:db8::1"
    assert (await cli(["blocks", "clear", "--admin", address, key], capsys))[1] == (
        "cleared 1 block\n"
    )
    assert (await cli(["blocks", "list", "--admin", address], capsys))[1] == "no blocks\n"
    assert (await check(SNAPSHOT, store, bearer=token(), ip="203.0.113.7")).allowed


async def test_clear_needs_a_key(admin: tuple[str, MemoryBlocks]) -> None:
    address, _ = admin
    async with grpc.aio.insecure_channel(address) as channel:
        clear = channel.unary_unary(
            "/authz.v1.Admin/ClearBlocks",
            request_serializer=apb.ClearBlocksRequest.SerializeToString,
            response_deserializer=apb.ClearBlocksResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await clear(apb.ClearBlocksRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_unreachable_admin_api_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["blocks", "list", "--admin", "127.0.0.1:1", "--timeout", "2"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "no admin API answers at 127.0.0.1:1" in err


class Lines:
    def __init__(self) -> None:
        self.lines: list[dict[str, object]] = []

    def __call__(self, line: bytes) -> None:
        self.lines.append(json.loads(line))


async def test_metrics_and_block_lines() -> None:
    metrics, lines, second = Metrics(), Lines(), [0.0]
    store = MemoryBlocks()
    store.add_observer(
        BlockTelemetry(metrics=metrics, log=DecisionLog(lines), clock=lambda: second[0])
    )
    metrics.bruteforce_blocked_keys(store.__len__)
    secret = token("victim")
    for i in range(3):
        await check(SNAPSHOT, store, bearer=forged(), ip="10.0.0.1", now=NOW + i)
    await check(SNAPSHOT, store, bearer=secret, ip="10.0.0.1", now=NOW + 3)  # blocked: no count
    dry = build(policy(name="trial", mode="dryRun"))
    for i in range(3):
        await check(dry, store, host="trial.test", bearer=forged(), ip="10.0.0.2", now=NOW + i)
    text = metrics.render()[0].decode()
    assert 'authz_bruteforce_failures_total{policy="t/api",protection="per-ip"} 3.0' in text
    assert (
        'authz_bruteforce_blocks_total{dry_run="false",policy="t/api",protection="per-ip"} 1.0'
    ) in text
    assert (
        'authz_bruteforce_blocks_total{dry_run="true",policy="t/trial",protection="per-ip"} 1.0'
    ) in text
    assert "authz_bruteforce_blocked_keys 2.0" in text
    first = lines.lines[0]
    assert first["event"] == "block_started"
    assert (first["policy"], first["protection"], first["key"]) == (
        "t/api",
        "per-ip",
        "t/api:per-ip=10.0.0.1",
    )
    assert (first["failures"], first["block_seconds"], first["dry_run"]) == (3, 900, False)
    assert secret not in json.dumps(lines.lines)


async def test_a_flood_of_blocks_writes_a_bounded_number_of_lines() -> None:
    lines, second = Lines(), [0.0]
    store = MemoryBlocks()
    store.add_observer(
        BlockTelemetry(metrics=None, log=DecisionLog(lines), clock=lambda: second[0])
    )
    for n in range(50):
        await block(store, f"10.2.0.{n}")
    assert len(lines.lines) == BLOCK_LINES_PER_SECOND
    second[0] = 1.0
    await block(store, "10.3.0.1")
    assert lines.lines[-1]["suppressed_before"] == 50 - BLOCK_LINES_PER_SECOND
