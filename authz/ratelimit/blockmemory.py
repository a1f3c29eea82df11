"""Blocks and failure counts in this process's memory: the default store, and the Redis one's
fallback.

Failures are counted exactly over a sliding window: each key keeps the times of its recent
failures (at most `max_failures` of them, older ones dropped as they leave the window). Both maps
are bounded by `max_keys`: they are insertion-ordered, a key that fails again moves to the end,
and beyond the bound the oldest entry is dropped - for failures, the key that failed longest ago
(it starts counting afresh); for blocks, the one started first. An attacker rotating addresses
therefore costs a bounded amount of memory, and the price of the bound is that a flood of more
than `max_keys` fresh blocks lifts the oldest ones early. Expired entries are swept from the
front as failures arrive. Single-threaded asyncio makes count-then-block atomic.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence

from authz.ratelimit.blocks import (
    COUNTED_LOCAL,
    Block,
    BlockObserver,
    Started,
    Strike,
    key_matches,
)
from authz.ratelimit.spec import FailureMode

DEFAULT_MAX_KEYS = 100_000
#: Expired entries dropped from the front of each map per counted failure (amortized cleanup).
_SWEEP = 2


class _Count:
    __slots__ = ("times", "window")

    def __init__(self, window: int, most: int) -> None:
        self.window = window
        self.times: deque[int] = deque(maxlen=most)


class MemoryBlocks:
    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max = max_keys
        #: key -> times (ms) of its failures inside the window, oldest first.
        self._failures: OrderedDict[str, _Count] = OrderedDict()
        #: key -> when its block ends (ms).
        self._blocks: OrderedDict[str, int] = OrderedDict()
        self._observers: list[BlockObserver] = []
        #: Live entries dropped because of the size bound (for tests and diagnostics).
        self.evicted = 0

    @property
    def available(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def counted_keys(self) -> int:
        return len(self._failures)

    def add_observer(self, observer: BlockObserver) -> None:
        self._observers.append(observer)

    def any_blocked(self) -> bool:
        return bool(self._blocks)

    def blocked_ms(self, key: str, now_ms: int) -> int:
        until = self._blocks.get(key)
        if until is None or until <= now_ms:
            return 0
        return until - now_ms

    async def failed(
        self, strikes: Sequence[Strike], *, now_ms: int, failure_mode: FailureMode, dry_run: bool
    ) -> str:
        for started in self.count(strikes, now_ms=now_ms):
            for observer in self._observers:
                observer.on_block(started, dry_run=dry_run)
        for strike in strikes:
            for observer in self._observers:
                observer.on_failure(strike.protection)
        return COUNTED_LOCAL

    def count(self, strikes: Sequence[Strike], *, now_ms: int) -> list[Started]:
        """Count one failure per strike; the blocks that this completes (already started)."""
        out: list[Started] = []
        for strike in strikes:
            if self.blocked_ms(strike.key, now_ms):
                continue  # a blocked key's requests never reach the token; nothing to add
            protection = strike.protection
            count = self._failures.get(strike.key)
            if count is None:
                count = _Count(protection.window_ms, protection.max_failures)
                self._failures[strike.key] = count
            else:
                self._failures.move_to_end(strike.key)
            times = count.times
            oldest = now_ms - protection.window_ms
            while times and times[0] <= oldest:
                times.popleft()
            times.append(now_ms)
            if len(times) >= protection.max_failures:
                del self._failures[strike.key]
                until = now_ms + protection.block_ms
                self.put(strike.key, until)
                out.append(Started(strike, until, protection.max_failures))
        self._sweep(now_ms)
        return out

    def put(self, key: str, until_ms: int) -> None:
        """Record a block (a new one, or one learnt from the shared store)."""
        blocks = self._blocks
        blocks.pop(key, None)
        blocks[key] = until_ms
        while len(blocks) > self._max:
            blocks.popitem(last=False)
            self.evicted += 1

    def replace(self, blocks: Sequence[Block]) -> None:
        """Hold exactly these blocks (the shared store's, after a refresh)."""
        self._blocks.clear()
        for block in sorted(blocks, key=lambda b: b.until_ms):
            self.put(block.key, block.until_ms)

    def _sweep(self, now_ms: int) -> None:
        failures = self._failures
        for _ in range(_SWEEP):
            if not failures:
                break
            key, count = next(iter(failures.items()))
            if count.times and count.times[-1] + count.window > now_ms:
                break
            del failures[key]
        while len(failures) > self._max:
            failures.popitem(last=False)
            self.evicted += 1
        blocks = self._blocks
        for _ in range(_SWEEP):
            if not blocks:
                break
            key, until = next(iter(blocks.items()))
            if until > now_ms:
                break
            del blocks[key]

    async def blocks(self, now_ms: int) -> list[Block]:
        live = [Block(k, u) for k, u in self._blocks.items() if u > now_ms]
        return sorted(live, key=lambda b: b.until_ms)

    async def clear(self, wanted: str) -> int:
        return self.forget(wanted)

    def forget(self, wanted: str) -> int:
        lifted = [k for k in self._blocks if key_matches(k, wanted)]
        for key in lifted:
            del self._blocks[key]
        for key in [k for k in self._failures if key_matches(k, wanted)]:
            del self._failures[key]
        return len(lifted)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._failures.clear()
        self._blocks.clear()
