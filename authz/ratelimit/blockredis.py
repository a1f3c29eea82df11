"""Blocks shared by every replica through Redis, with a local copy for the check path.

The check path never waits for Redis: `blocked_ms` reads a local copy of the shared blocks. The
copy is replaced by a background refresh every `refresh_interval` seconds (one small call per
replica), and a failure counted here puts the block it starts - or a block another replica
started - into the copy at once. So a block started on one replica is enforced there at once and
on the others within the refresh interval; a cleared block is lifted everywhere within it too.
Counting is one EVALSHA of blocks.lua per 401 (all protections of the policy at once), atomic in
Redis, so two replicas never both miss the failure that completes a block.

The store stays idle - no call, no log line - until a policy with protection first uses it (its
first block check or failure), so a sidecar whose policies block nobody never talks to Redis for
blocks. Failure handling mirrors the rate limiter's: each call is bounded by the Redis timeout;
after `failure_threshold` consecutive failed calls (or a failed first refresh) the store is
*away* and stops calling Redis on the check path; the background refresh keeps trying and brings
it back. Failed calls on the check path are reported to the observers (a refresh is not a
check). While away, blocks already
known stay enforced until they end, and each policy's rateLimitFailureMode decides what happens
to new failures: `fallback` counts them in this process's memory (blocks then hold per replica),
`open` does not count them, `closed` makes the block step deny (503 ratelimit_unavailable).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Final

from redis.exceptions import NoScriptError, RedisError

from authz.ratelimit.blockmemory import MemoryBlocks
from authz.ratelimit.blocks import (
    COUNTED_LOCAL,
    COUNTED_NOWHERE,
    COUNTED_SHARED,
    Block,
    BlockObserver,
    Started,
    Strike,
    key_matches,
)
from authz.ratelimit.redisbackend import ScriptClient
from authz.ratelimit.spec import FailureMode

SCRIPT: Final = resources.files("authz.ratelimit").joinpath("blocks.lua").read_text("utf-8")
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
#: The hash tag keeps every key on one Redis Cluster slot (one script call touches several).
BLOCKS_KEY: Final = "authz:bf:{authz-bf}:blocks"
COUNTER_PREFIX: Final = "authz:bf:{authz-bf}:f:"

log = logging.getLogger(__name__)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error) or 'no detail')[:200]}"


class RedisBlocks:
    def __init__(
        self,
        client: ScriptClient,
        *,
        timeout: float,
        description: str,
        max_keys: int,
        failure_threshold: int = 3,
        refresh_interval: float = 1.0,
        max_in_flight: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._clock = clock
        self._timeout = timeout
        self._max = max_keys
        self._threshold = max(1, failure_threshold)
        self._interval = refresh_interval
        self._turns = asyncio.Semaphore(max_in_flight)
        #: Where Redis is, without credentials (for logs).
        self.description = description
        #: The shared blocks as last seen (replaced by each refresh).
        self._view = MemoryBlocks(max_keys=max_keys)
        #: Failures counted while Redis is away (fallback mode), and the blocks they started.
        self._fallback = MemoryBlocks(max_keys=max_keys)
        self._observers: list[BlockObserver] = []
        #: Blocks learnt while a refresh is in flight: its answer may predate them.
        self._recent: dict[str, int] = {}
        self._failures = 0
        self._away = False
        self._nonce = f"{os.getpid()}-{os.urandom(4).hex()}-"
        self._calls = itertools.count()
        self._refresher: asyncio.Task[None] | None = None
        #: Set by the first use: the refresher waits for it.
        self._wanted: asyncio.Event | None = None
        self._closing = False
        #: Refreshes that reached Redis (for tests: wait for one instead of sleeping).
        self.refreshes = 0
        #: Failed Redis calls since start.
        self.errors_total = 0

    @property
    def available(self) -> bool:
        return not self._away

    def __len__(self) -> int:
        return len(self._view) + len(self._fallback)

    def add_observer(self, observer: BlockObserver) -> None:
        self._observers.append(observer)
        self._fallback.add_observer(observer)

    def any_blocked(self) -> bool:
        if self._wanted is not None and not self._wanted.is_set():
            self._wanted.set()
        return self._view.any_blocked() or self._fallback.any_blocked()

    def blocked_ms(self, key: str, now_ms: int) -> int:
        return max(self._view.blocked_ms(key, now_ms), self._fallback.blocked_ms(key, now_ms))

    # --- counting (401s only) -------------------------------------------------------------

    async def failed(
        self, strikes: Sequence[Strike], *, now_ms: int, failure_mode: FailureMode, dry_run: bool
    ) -> str:
        if not strikes:
            return COUNTED_SHARED
        if self._wanted is not None and not self._wanted.is_set():
            self._wanted.set()
        if not self._away:
            try:
                answer = await self._call(self._fail_args(strikes, now_ms), len(strikes) + 1)
                learnt = self._parse(strikes, answer)
            except Exception as exc:  # any Redis trouble degrades; none escapes
                self._failed(exc)
                for observer in self._observers:
                    observer.on_backend_error(exc)
            else:
                self._failures = 0
                self._learn(strikes, learnt, dry_run=dry_run)
                return COUNTED_SHARED
        if failure_mode is FailureMode.FALLBACK:
            await self._fallback.failed(
                strikes, now_ms=now_ms, failure_mode=failure_mode, dry_run=dry_run
            )
            return COUNTED_LOCAL
        return COUNTED_NOWHERE

    def _fail_args(self, strikes: Sequence[Strike], now_ms: int) -> list[str | int]:
        keys: list[str | int] = [BLOCKS_KEY, *(COUNTER_PREFIX + s.key for s in strikes)]
        args: list[str | int] = ["fail", now_ms, self._max, self._nonce + str(next(self._calls))]
        for strike in strikes:
            p = strike.protection
            args += [strike.key, p.max_failures, p.window_ms, p.block_ms]
        return keys + args

    @staticmethod
    def _parse(strikes: Sequence[Strike], answer: Any) -> list[tuple[int, int, int]]:
        """(started, block end, count) per strike. Raises ValueError for anything else."""
        if not isinstance(answer, list) or len(answer) != 3 * len(strikes):
            raise ValueError(f"unexpected reply from the blocks script: {answer!r:.200}")
        return [(int(a), int(b), int(c)) for a, b, c in zip(*[iter(answer)] * 3, strict=True)]

    def _learn(
        self, strikes: Sequence[Strike], answers: list[tuple[int, int, int]], *, dry_run: bool
    ) -> None:
        for strike, (started, until, count) in zip(strikes, answers, strict=True):
            if until:
                self._view.put(strike.key, until)
                self._recent[strike.key] = until
            if started:
                for observer in self._observers:
                    observer.on_block(Started(strike, until, count), dry_run=dry_run)
            for observer in self._observers:
                observer.on_failure(strike.protection)

    async def _call(self, keys_and_args: list[str | int], numkeys: int) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                await self._turns.acquire()
        except TimeoutError:
            raise TimeoutError(f"no free Redis connection within {self._timeout:g}s") from None
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    return await self._client.evalsha(SCRIPT_SHA, numkeys, *keys_and_args)
                except NoScriptError:
                    return await self._client.eval(SCRIPT, numkeys, *keys_and_args)
        finally:
            self._turns.release()

    def _failed(self, error: BaseException) -> None:
        self.errors_total += 1
        self._failures += 1
        if self._failures >= self._threshold and not self._away:
            self._away = True
            log.warning(
                "brute-force blocks: %s unavailable (%d failed calls, last %s); known blocks "
                "stay in force, new failures follow each policy's rateLimitFailureMode",
                self.description,
                self._failures,
                _describe(error),
            )

    # --- the local copy -------------------------------------------------------------------

    async def refresh(self, now_ms: int) -> None:
        """Replace the local copy with the shared blocks. Raises when Redis does not answer."""
        self._recent = {}
        raw = await self._call([BLOCKS_KEY, "list", now_ms, self._max], 1)
        pairs = list(zip(raw[::2], raw[1::2], strict=True))
        self._view.replace([Block(_text(k), int(float(u))) for k, u in pairs])
        for key, until in self._recent.items():
            self._view.put(key, until)
        self.refreshes += 1
        self._failures = 0
        if self._away:
            self._away = False
            log.info(
                "brute-force blocks: %s answers again; shared counting resumed", self.description
            )

    async def _refresh_forever(self, wanted: asyncio.Event) -> None:
        await wanted.wait()
        try:
            await self.refresh(self._now_ms())
            log.info("brute-force blocks: shared through %s", self.description)
        except Exception as exc:  # starting without Redis is allowed: start away
            self._failures = self._threshold - 1
            self._failed(exc)
        while not self._closing:
            await asyncio.sleep(self._interval)
            if self._closing:
                break
            try:
                await self.refresh(self._now_ms())
            except Exception as exc:  # Redis away: keep the copy, try again next time
                self._failed(exc)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- admin ----------------------------------------------------------------------------

    async def blocks(self, now_ms: int) -> list[Block]:
        try:
            await self.refresh(now_ms)
        except Exception as exc:  # answer from the copy; say so in the log
            log.warning("brute-force blocks: listing from the local copy: %s", _describe(exc))
        shared = await self._view.blocks(now_ms)
        local = await self._fallback.blocks(now_ms)
        return sorted([*shared, *local], key=lambda b: b.until_ms)

    async def clear(self, wanted: str) -> int:
        now_ms = self._now_ms()
        raw = await self._call([BLOCKS_KEY, "list", now_ms, self._max], 1)
        members = [_text(k) for k in raw[::2] if key_matches(_text(k), wanted)]
        if "=" in wanted or "#" in wanted:
            members = list(dict.fromkeys([*members, wanted]))
        lifted = 0
        if members:
            keys = [BLOCKS_KEY, *(COUNTER_PREFIX + m for m in members)]
            lifted = int(await self._call([*keys, "clear", now_ms, *members], len(keys)))
        self._view.forget(wanted)
        self._recent = {k: u for k, u in self._recent.items() if not key_matches(k, wanted)}
        lifted_here = self._fallback.forget(wanted)
        return lifted + lifted_here

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background refresh; it reads the shared blocks from the first use on."""
        self._wanted = asyncio.Event()
        self._refresher = asyncio.get_running_loop().create_task(
            self._refresh_forever(self._wanted), name="brute-force blocks refresh"
        )
        self._refresher.add_done_callback(_refresher_done)

    async def close(self) -> None:
        self._closing = True
        if self._refresher is not None:
            # A cancellation that meets a call's own timeout can surface as that timeout (and
            # be handled as Redis trouble): the flag stops the loop then, within one round.
            self._refresher.cancel()
            await asyncio.wait({self._refresher}, timeout=self._interval + 2 * self._timeout + 1)
            if not self._refresher.done():
                log.warning("brute-force blocks: the refresh did not stop in time")
        try:
            await self._client.aclose()
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("closing the Redis client: %s", exc)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _refresher_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("brute-force blocks refresh died: %r", task.exception())
