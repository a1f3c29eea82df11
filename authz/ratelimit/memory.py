"""The in-memory limiter: per process, O(1) per limit, bounded memory.

Buckets live in one insertion-ordered dict, moved to the end whenever they count a request, so
the front holds the least recently used. Each commit drops expired buckets from the front, and
when more than `max_buckets` exist the least recently used one is dropped even if it still
counts (its client then starts afresh: the only way this backend errs, and it errs towards
admitting). An expired bucket that is read is treated as empty. Single-threaded asyncio makes
check-then-commit atomic: there is no await in between.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from authz.ratelimit import algorithms
from authz.ratelimit.limiter import MODE_MEMORY, SOURCE_MEMORY, Hit, Limiter, Outcome, Verdict
from authz.ratelimit.spec import FailureMode

DEFAULT_MAX_BUCKETS = 100_000
#: Expired buckets dropped from the front per commit (amortized cleanup).
_SWEEP = 2


class _Bucket:
    __slots__ = ("expires", "state")

    def __init__(self, state: algorithms.State, expires: int) -> None:
        self.state = state
        self.expires = expires


class MemoryLimiter(Limiter):
    """The default backend, and the fallback of the Redis one."""

    def __init__(self, *, max_buckets: int = DEFAULT_MAX_BUCKETS) -> None:
        if max_buckets < 1:
            raise ValueError("max_buckets must be at least 1")
        self._max = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        #: Live buckets dropped because of the size bound (for tests and diagnostics).
        self.evicted = 0

    @property
    def mode(self) -> str:
        return MODE_MEMORY

    def __len__(self) -> int:
        return len(self._buckets)

    async def check_ms(
        self, hits: Sequence[Hit], *, now_ms: int, consume: bool, failure_mode: FailureMode
    ) -> Outcome:
        return self.evaluate(hits, now_ms=now_ms, consume=consume, source=SOURCE_MEMORY)

    def evaluate(self, hits: Sequence[Hit], *, now_ms: int, consume: bool, source: str) -> Outcome:
        """Check every hit; count all of them only if all admit the request (and `consume`)."""
        buckets = self._buckets
        states: list[algorithms.State | None] = []
        verdicts: list[Verdict] = []
        allowed = True
        for hit in hits:
            bucket = buckets.get(hit.bucket)
            state = bucket.state if bucket is not None and bucket.expires > now_ms else None
            verdict = algorithms.evaluate(hit.limit, state, now_ms)
            allowed = allowed and verdict.allowed
            states.append(state)
            verdicts.append(verdict)
        if allowed and consume:
            for hit, state in zip(hits, states, strict=True):
                self._commit(hit, state, now_ms)
        return Outcome(allowed, tuple(verdicts), source)

    def _commit(self, hit: Hit, state: algorithms.State | None, now_ms: int) -> None:
        buckets = self._buckets
        new_state, expires = algorithms.commit(hit.limit, state, now_ms)
        bucket = buckets.get(hit.bucket)
        if bucket is None:
            buckets[hit.bucket] = _Bucket(new_state, expires)
        else:
            bucket.state, bucket.expires = new_state, expires
            buckets.move_to_end(hit.bucket)
        for _ in range(_SWEEP):
            key, first = next(iter(buckets.items()))
            if first.expires > now_ms or key == hit.bucket:
                break
            del buckets[key]
        while len(buckets) > self._max:
            buckets.popitem(last=False)
            self.evicted += 1

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._buckets.clear()
