"""What rate limits cost per check: counted in memory versus in a shared Redis, in-process and
under wrk (docs/performance.md). Redis must have run a script per check, so a sidecar that fell
back to memory cannot pass for Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.verify import Verifier
from authz.ratelimit.factory import build_limiter
from authz.ratelimit.limiter import MODE_REDIS, Limiter
from authz.ratelimit.memory import MemoryLimiter
from authz.ratelimit.shared import SharedLimiter
from authz.settings import RateLimitSettings
from bench import micro, procs
from bench.macro import Config, load_test
from bench.material import Material, sidecar_policy
from bench.procs import BenchError, Proc
from bench.results import InProcess, LoadResult
from bench.setups import Setup
from bench.stack import REDIS_TIMEOUT_MS

LIMIT = 10**9
#: Checks in flight at once in the concurrent in-process scenario (wrk's connections).
CONCURRENCY = 16
NONE, MEMORY, SHARED = "rl-none", "rl-memory", "rl-redis"
_SAME = "the same rule with a rate limit, counted in"
SETUPS: tuple[Setup, ...] = (
    Setup(NONE, "sidecar (Unix socket), the rule without rate limits", transport="unix"),
    Setup(MEMORY, f"{_SAME} memory", transport="unix", rate_limit=LIMIT),
    Setup(SHARED, f"{_SAME} Redis", transport="unix", rate_limit=LIMIT, redis=True),
)


def script_calls(port: int) -> int:
    """Script calls (EVALSHA and kin) Redis has run since it started: one per limited check."""
    with contextlib.closing(redis.Redis(port=port)) as client:
        stats: dict[str, Any] = client.info("commandstats")
    names = ("cmdstat_evalsha", "cmdstat_evalsha_ro", "cmdstat_eval", "cmdstat_eval_ro")
    return sum(int(stats[name]["calls"]) for name in names if name in stats)


async def _inprocess(
    material: Material, server: tuple[Proc, int], *, iterations: int, repeats: int
) -> list[InProcess]:
    redis_proc, port = server
    url, timeout = f"redis://127.0.0.1:{port}", REDIS_TIMEOUT_MS / 1000
    shared = build_limiter(RateLimitSettings(redis_url=url, redis_timeout=timeout))
    assert isinstance(shared, SharedLimiter)  # what a Redis URL builds
    check = micro.check_request(token=material.token)

    async def measure(name: str, what: str, limiter: Limiter, *, at_once: int = 1) -> InProcess:
        limited, calls, before = name != "none", 0, script_calls(port)
        policy = sidecar_policy(material, rate_limit=LIMIT if limited else None)
        servicer = micro.servicer(micro.snapshot(policy), Verifier(), limiter=limiter)

        async def call() -> Sequence[pb.CheckResponse]:
            nonlocal calls
            calls += 1
            if at_once == 1:  # awaited directly: a task per check would be measured too
                return (await servicer.check(check),)
            return await asyncio.gather(*(servicer.check(check) for _ in range(at_once)))

        for answer in await call():
            added = answer.ok_response.response_headers_to_add
            headers = {h.header.key: h.header.value for h in added}
            if answer.status.code != 0 or limited != (headers.get("ratelimit-limit") == str(LIMIT)):
                raise BenchError(f"ratelimit {name}: not the allow expected: {answer}")
        found = await micro.measure(
            name,
            what,
            call,
            iterations=iterations,
            repeats=repeats,
            code=None,
            per_call=at_once,
            redis=redis_proc,
        )
        scripts = (script_calls(port) - before) / (calls * at_once)
        if limiter is shared and scripts < 1.0:
            raise BenchError(f"ratelimit {name}: Redis ran {scripts:.2f} scripts per check")
        redis_cpu = found.redis_cpu_us if scripts else 0.0
        return replace(found, redis_cpu_us=redis_cpu, redis_calls_per_decision=scripts)

    await shared.start()
    try:
        results = [
            await measure("none", "the rule without rate limits", MemoryLimiter()),
            await measure("memory", "one limit, counted in memory", MemoryLimiter()),
            await measure(
                "redis",
                "one limit, counted in Redis: one check at a time (each waits for its round trip)",
                shared,
            ),
            await measure(
                f"redis-x{CONCURRENCY}",
                f"one limit, counted in Redis: {CONCURRENCY} checks at a time (round trips overlap)",
                shared,
                at_once=CONCURRENCY,
            ),
        ]
        if shared.errors_total or shared.busy_total or shared.mode != MODE_REDIS:
            raise BenchError(
                f"the shared limiter did not stay on Redis: {shared.errors_total} errors, "
                f"{shared.busy_total} busy, mode {shared.mode!r}"
            )
        return results
    finally:
        await shared.close()


def run_inprocess(
    material: Material, *, iterations: int, repeats: int, logs: Path
) -> list[InProcess]:
    with procs.redis_server(logs) as server:
        return asyncio.run(_inprocess(material, server, iterations=iterations, repeats=repeats))


def run_load(
    material: Material, *, config: Config, logs: Path, say: Callable[[str], None]
) -> LoadResult:
    """The three sidecars under wrk, interleaved; the Redis one's Redis CPU charged to it."""
    with procs.redis_server(logs) as server:
        before = script_calls(server[1])
        outcome = load_test(
            SETUPS, material=material, config=config, logs=logs, say=say, redis=server
        )
        calls = script_calls(server[1]) - before
    measured = sum(r.wrk.requests for r in outcome.runs if r.setup == SHARED)
    if calls < measured:
        raise BenchError(
            f"{SHARED}: wrk completed {measured} requests but Redis ran {calls} scripts: "
            "the sidecar did not count in Redis"
        )
    return outcome
