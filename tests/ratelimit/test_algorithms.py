"""The algorithms in the in-memory limiter, on an injected clock (`now`), never by sleeping."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.ratelimit.memory import MemoryLimiter
from authz.ratelimit.spec import SLIDING_SLOTS, Algorithm
from tests.ratelimit.helpers import hit, limit
from tests.support.tiers import examples

SW, FW, TB = Algorithm.SLIDING_WINDOW, Algorithm.FIXED_WINDOW, Algorithm.TOKEN_BUCKET
T0 = 1_700_000_000.0  # an arbitrary instant (seconds)


@pytest.mark.parametrize("algorithm", [SW, FW, TB])
async def test_exactly_n_admitted_then_denied(algorithm: Algorithm) -> None:
    spec = limit(5, "1m", algorithm)
    limiter = MemoryLimiter()
    remaining = []
    for _ in range(5):
        outcome = await limiter.check([hit(spec)], now=T0)
        assert outcome.allowed
        remaining.append(outcome.verdicts[0].remaining)
    assert remaining == [4, 3, 2, 1, 0]
    denied = await limiter.check([hit(spec)], now=T0)
    assert not denied.allowed
    assert denied.verdicts[0].remaining == 0
    assert denied.verdicts[0].retry_ms > 0


async def test_sliding_window_refuses_a_burst_across_the_boundary() -> None:
    # 10 requests at the very end of one minute and 10 more just after it: a fixed window would
    # admit all 20 within two seconds; the sliding window admits only the first 10.
    spec = limit(10, "1m", SW)
    limiter = MemoryLimiter()
    end_of_minute = 60 * (int(T0) // 60 + 1) - 0.5
    first = [await limiter.check([hit(spec)], now=end_of_minute) for _ in range(10)]
    second = [await limiter.check([hit(spec)], now=end_of_minute + 1.0) for _ in range(10)]
    assert all(o.allowed for o in first)
    assert not any(o.allowed for o in second)
    retry = second[0].verdicts[0].retry_ms
    # the first ten stop counting between W and W + W/K after they were made
    assert 60_000 - 1000 <= retry <= 60_000 + 6000
    again = await limiter.check([hit(spec)], now=end_of_minute + 1.0 + retry / 1000)
    assert again.allowed


@settings(max_examples=examples(200), deadline=None)
@given(
    requests=st.integers(1, 12),
    gaps=st.lists(st.integers(0, 4000), min_size=1, max_size=150),
)
async def test_sliding_window_never_admits_more_than_n_in_any_window(
    requests: int, gaps: list[int]
) -> None:
    """The documented bound, over arbitrary arrival times (ms) and every interval of length W."""
    window_ms = 10_000
    spec = limit(requests, "10s", SW)
    limiter = MemoryLimiter()
    start = int(T0 * 1000)
    admitted: list[int] = []
    now = start
    for gap in gaps:
        now += gap
        if (await limiter.check([hit(spec)], now=now / 1000)).allowed:
            admitted.append(now)
    for i, first in enumerate(admitted):
        inside = [t for t in admitted[i:] if t <= first + window_ms]
        assert len(inside) <= requests


async def test_sliding_window_admits_n_again_after_w_plus_one_slot() -> None:
    spec = limit(4, "10s", SW)
    limiter = MemoryLimiter()
    for _ in range(4):
        assert (await limiter.check([hit(spec)], now=T0)).allowed
    later = T0 + 10 + 10 / SLIDING_SLOTS
    results = [(await limiter.check([hit(spec)], now=later)).allowed for _ in range(5)]
    assert results == [True, True, True, True, False]


async def test_fixed_window_resets_at_midnight_utc() -> None:
    spec = limit(3, "1d", FW)
    limiter = MemoryLimiter()
    before = calendar.timegm((2024, 3, 1, 23, 59, 30, 0, 0, 0))
    for _ in range(3):
        outcome = await limiter.check([hit(spec)], now=before)
        assert outcome.allowed
    denied = await limiter.check([hit(spec)], now=before)
    assert not denied.allowed
    assert denied.verdicts[0].retry_ms == 30_000
    assert denied.verdicts[0].reset_ms == 30_000
    assert not (await limiter.check([hit(spec)], now=before + 29.999)).allowed
    midnight = calendar.timegm((2024, 3, 2, 0, 0, 0, 0, 0, 0))
    fresh = await limiter.check([hit(spec)], now=midnight)
    assert fresh.allowed
    assert fresh.verdicts[0].remaining == 2
    assert fresh.verdicts[0].reset_ms == 86_400_000


async def test_fixed_hour_window_resets_at_the_top_of_the_hour() -> None:
    spec = limit(1, "1h", FW)
    limiter = MemoryLimiter()
    at = calendar.timegm((2024, 3, 1, 10, 59, 59, 0, 0, 0))
    assert (await limiter.check([hit(spec)], now=at)).allowed
    assert not (await limiter.check([hit(spec)], now=at + 0.5)).allowed
    assert (await limiter.check([hit(spec)], now=at + 1)).allowed


async def test_token_bucket_bursts_n_then_admits_at_the_rate() -> None:
    spec = limit(10, "10s", TB)  # one token per second, bucket of 10
    limiter = MemoryLimiter()
    burst = [(await limiter.check([hit(spec)], now=T0)).allowed for _ in range(11)]
    assert burst == [True] * 10 + [False]
    denied = await limiter.check([hit(spec)], now=T0)
    assert denied.verdicts[0].retry_ms == 1000
    # hammer every 100 ms for 100 s: exactly one more per second
    admitted = 0
    for step in range(1, 1001):
        if (await limiter.check([hit(spec)], now=T0 + step / 10)).allowed:
            admitted += 1
    assert admitted == 100


async def test_token_bucket_refills_fully_after_the_window() -> None:
    spec = limit(5, "5s", TB)
    limiter = MemoryLimiter()
    for _ in range(5):
        assert (await limiter.check([hit(spec)], now=T0)).allowed
    refilled = await limiter.check([hit(spec)], now=T0 + 5)
    assert refilled.allowed
    assert refilled.verdicts[0].remaining == 4


async def test_every_limit_must_pass_and_none_counts_a_denied_request() -> None:
    tight, loose = limit(1, "1m", name="tight"), limit(5, "1m", name="loose")
    limiter = MemoryLimiter()
    first = await limiter.check([hit(tight), hit(loose)], now=T0)
    assert first.allowed
    assert [v.remaining for v in first.verdicts] == [0, 4]
    for _ in range(3):
        denied = await limiter.check([hit(tight), hit(loose)], now=T0)
        assert not denied.allowed
        assert [v.allowed for v in denied.verdicts] == [False, True]
    # the denied requests did not count against the loose limit
    peek = await limiter.check([hit(loose)], now=T0, consume=False)
    assert peek.verdicts[0].remaining == 3


async def test_peek_does_not_consume() -> None:
    spec = limit(2, "1m")
    limiter = MemoryLimiter()
    for _ in range(50):
        outcome = await limiter.check([hit(spec)], now=T0, consume=False)
        assert outcome.allowed
        assert outcome.verdicts[0].remaining == 1
    assert len(limiter) == 0


async def test_buckets_are_separate() -> None:
    spec = limit(1, "1m", key="claim:sub")
    limiter = MemoryLimiter()
    assert (await limiter.check([hit(spec, "=alice")], now=T0)).allowed
    assert (await limiter.check([hit(spec, "=bob")], now=T0)).allowed
    assert not (await limiter.check([hit(spec, "=alice")], now=T0)).allowed


async def test_memory_is_bounded_and_expired_buckets_are_swept() -> None:
    spec = limit(1, "1s")
    limiter = MemoryLimiter(max_buckets=100)
    for i in range(1000):
        await limiter.check([hit(spec, f"={i}")], now=T0)
    assert len(limiter) == 100
    assert limiter.evicted == 900
    # long after every bucket expired, new traffic sweeps the old ones without evicting live ones
    for i in range(100):
        await limiter.check([hit(spec, f"=new{i}")], now=T0 + 60)
    assert len(limiter) == 100
    assert limiter.evicted == 900
