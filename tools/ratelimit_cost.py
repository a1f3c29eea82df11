"""Measure what rate limiting costs per check: in memory, through a real local Redis (one
EVALSHA for three limits), under concurrency, and with Redis dead (circuit open, fallback).

    .venv/bin/python tools/ratelimit_cost.py [CONCURRENCY]

Starts its own redis-server on a free port (Debian's redis-server must be installed).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authz.ratelimit.factory import build_limiter
from authz.ratelimit.limiter import Hit
from authz.ratelimit.memory import MemoryLimiter
from authz.ratelimit.shared import SharedLimiter
from authz.ratelimit.spec import Algorithm
from authz.settings import RateLimitSettings
from tests.ratelimit.helpers import hit, limit
from tests.support.redis import RedisServer

SPECS = [
    limit(10**9, "1m", name="a"),
    limit(10**9, "1d", Algorithm.FIXED_WINDOW, name="b"),
    limit(10**9, "1h", Algorithm.TOKEN_BUCKET, name="c"),
]


def _hits(i: int) -> list[Hit]:
    return [hit(s, f"=u{i % 1000}") for s in SPECS]


def _quantiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {q[49] * 1e6:.0f} us, p99 {q[98] * 1e6:.0f} us"


async def main(concurrency: int) -> None:
    memory = MemoryLimiter()
    n = 100_000
    started = time.perf_counter()
    for i in range(n):
        memory.evaluate(_hits(i), now_ms=1_700_000_000_000 + i, consume=True, source="memory")
    print(f"memory: {(time.perf_counter() - started) / n * 1e6:.1f} us per check (3 limits)")
    server = RedisServer(Path(tempfile.mkdtemp())).start()
    limiter = build_limiter(RateLimitSettings(redis_url=server.url))
    assert isinstance(limiter, SharedLimiter)
    await limiter.start()
    latencies = []
    for i in range(5000):
        started = time.perf_counter()
        await limiter.check(_hits(i), now=time.time())
        latencies.append(time.perf_counter() - started)
    print(f"redis, one at a time: {_quantiles(latencies)} per check (one EVALSHA, 3 limits)")
    started = time.perf_counter()
    await asyncio.gather(*(limiter.check(_hits(i), now=time.time()) for i in range(concurrency)))
    rate = concurrency / (time.perf_counter() - started)
    print(
        f"redis, {concurrency} at once: {rate:.0f} checks/s, mode {limiter.mode}, "
        f"errors {limiter.errors_total}, answered by the failure mode (busy) {limiter.busy_total}"
    )
    server.kill()
    for _ in range(5):
        await limiter.check(_hits(0), now=time.time())
    latencies = []
    for i in range(5000):
        started = time.perf_counter()
        await limiter.check(_hits(i), now=time.time())
        latencies.append(time.perf_counter() - started)
    print(f"redis dead (mode {limiter.mode}): {_quantiles(latencies)} per check")
    await limiter.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
