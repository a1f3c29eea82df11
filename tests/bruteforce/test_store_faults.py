"""The shared store's failure handling at its seam (ScriptClient): a reply it does not expect or
a call that fails is never an exception on the check path; it is the policy's failure mode."""

from __future__ import annotations

import asyncio
from typing import Any

from authz.ratelimit.blockredis import RedisBlocks
from authz.ratelimit.blocks import COUNTED_LOCAL, COUNTED_NOWHERE, Strike
from authz.ratelimit.spec import FailureMode
from tests.bruteforce.support import NOW, build, policy

PROTECTION = build(policy()).policies[0].brute_force[0]
STRIKES = [Strike(PROTECTION, f"{PROTECTION.prefix}=10.0.0.1")]


class Client:
    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.calls = 0

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        self.calls += 1
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.evalsha(script, numkeys, *keys_and_args)

    async def ping(self) -> Any:
        return True

    async def script_load(self, script: str) -> Any:
        return "sha"

    async def aclose(self) -> None:
        return None


def store(client: Client) -> RedisBlocks:
    return RedisBlocks(client, timeout=1.0, description="Redis test", max_keys=10)


async def test_an_unexpected_reply_falls_back_instead_of_failing_the_check() -> None:
    for reply in ["garbage", [1, 2], [b"x", 0, 0], None]:
        blocks = store(Client(reply))
        counted = await blocks.failed(
            STRIKES, now_ms=int(NOW * 1000), failure_mode=FailureMode.FALLBACK, dry_run=False
        )
        assert counted == COUNTED_LOCAL
        assert blocks.errors_total == 1


async def test_three_failed_calls_and_the_store_stops_calling() -> None:
    client = Client(ConnectionError("refused"))
    blocks = store(client)
    for _ in range(10):
        counted = await blocks.failed(
            STRIKES, now_ms=int(NOW * 1000), failure_mode=FailureMode.OPEN, dry_run=False
        )
        assert counted == COUNTED_NOWHERE
    assert client.calls == 3
    assert not blocks.available


class SwallowsCancel(Client):
    """A call that turns its cancellation into a timeout, as a cancel meeting the call's own
    timeout can: the refresh must stop anyway."""

    def __init__(self) -> None:
        super().__init__([])
        self.inside = asyncio.Event()

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        self.inside.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise TimeoutError("cancelled, reported as a timeout") from None


async def test_close_stops_a_refresh_whose_call_swallowed_the_cancellation() -> None:
    client = SwallowsCancel()
    blocks = RedisBlocks(client, timeout=30.0, description="Redis test", max_keys=10)
    await blocks.start()
    blocks.any_blocked()  # first use: the refresh starts
    await client.inside.wait()
    await blocks.close()
    assert blocks._refresher is not None
    assert blocks._refresher.done()
