"""What rate limits cost per check: counters in the sidecar's memory versus in a shared Redis.

The benchmark's rule gets one limit per user (`claim:sub`, sliding window, 10^9 a minute: never
reached, so this measures the cost of counting, not of denying), served by the in-memory limiter
or by the shared one talking to a real redis-server started here. Two measurements:

- in-process, like micro.py: AuthorizationServicer.check in a loop, the same rule without
  limits, with limits in memory, with limits in Redis one check at a time (every decision waits
  for its round trip) and 16 at a time (as under Envoy's load, where round trips overlap).
  Redis's own CPU is measured too: with Redis, part of the work moves out of the sidecar.
- under load, like macro.py: Envoy + sidecar over a Unix socket with the rule without limits,
  with limits in memory and with limits in Redis, wrk in interleaved rounds.

Both prove what they measure before trusting it: every answer must allow and carry the
limit's RateLimit-Limit header, and Redis must have run one script call per decision (its own
INFO commandstats), so a sidecar that silently fell back to memory cannot pass for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.verify import Verifier
from authz.policy.snapshot import Snapshot
from authz.ratelimit.factory import build_limiter
from authz.ratelimit.limiter import MODE_REDIS, Limiter
from authz.ratelimit.memory import MemoryLimiter
from authz.ratelimit.shared import SharedLimiter
from authz.server.observe import CheckTelemetry
from authz.server.servicer import AuthorizationServicer
from authz.settings import RateLimitSettings, TelemetrySettings
from authz.telemetry.decisionlog import DecisionLog
from authz.telemetry.metrics import Metrics
from bench import macro, micro, procs, stack
from bench.material import Material, sidecar_policy
from bench.probe import request
from bench.procs import BenchError, Proc
from bench.results import RateLimitResult, RunRecord, SetupSummary, summarize
from bench.setups import Auth, Setup

LIMIT = 10**9
#: The Redis call timeout here (the service's default is 50 ms): a busy moment of a shared
#: 2-core machine can stall a check past 50 ms, which opens the circuit breaker and moves the
#: checks to the memory fallback. This measures what counting in Redis costs, not that.
REDIS_TIMEOUT_S = 1.0
LIMITS = [{"name": "per-user", "requests": LIMIT, "window": "1m", "key": "claim:sub"}]
#: Checks in flight at once in the concurrent in-process scenario (wrk's connections).
CONCURRENCY = 16
_SCRIPT_COMMANDS = ("cmdstat_evalsha", "cmdstat_evalsha_ro", "cmdstat_eval", "cmdstat_eval_ro")

NONE, MEMORY, SHARED = "rl-none", "rl-memory", "rl-redis"
SETUPS: tuple[Setup, ...] = (
    Setup(NONE, "sidecar (Unix socket), the rule without rate limits", Auth.EXT_AUTHZ, "unix"),
    Setup(MEMORY, "the same rule with a rate limit, counted in memory", Auth.EXT_AUTHZ, "unix"),
    Setup(SHARED, "the same rule with a rate limit, counted in Redis", Auth.EXT_AUTHZ, "unix"),
)


def limited_policy(material: Material) -> dict[str, Any]:
    policy = sidecar_policy(material)
    policy["spec"]["rules"][0]["rateLimits"] = copy.deepcopy(LIMITS)
    return policy


# --- Redis -------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(logs: Path, *, timeout: float = 10.0) -> Iterator[tuple[Proc, int]]:
    """A redis-server of its own (Debian's; no persistence) on a free loopback port."""
    port = procs.free_port()
    with tempfile.TemporaryDirectory(prefix="authz-bench-redis-") as workdir:
        proc = procs.start(
            "redis",
            [
                procs.find_binary("redis-server"),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            logs=logs,
        )
        try:
            deadline = time.monotonic() + timeout
            while not _pong(port):
                if not proc.alive() or time.monotonic() > deadline:
                    raise BenchError(f"redis-server did not come up on port {port}:\n{proc.tail()}")
                time.sleep(0.05)
            yield proc, port
        finally:
            procs.stop_all([proc])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def script_calls(port: int) -> int:
    """Script calls (EVALSHA and kin) Redis has run since it started: one per limited check."""
    client = redis.Redis(port=port)
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return sum(int(stats[name]["calls"]) for name in _SCRIPT_COMMANDS if name in stats)


# --- in-process --------------------------------------------------------------------------

Call = Callable[[], Awaitable[Sequence[pb.CheckResponse]]]


@dataclass(frozen=True, slots=True)
class _Scenario:
    name: str
    description: str
    call: Call
    limited: bool
    redis: bool
    concurrency: int


def _servicer(current: Snapshot, limiter: Limiter) -> AuthorizationServicer:
    """As micro.servicer builds it (metrics and decision log on), with the limiter given."""
    log = DecisionLog(
        lambda _line: None, allow_sample_rate=TelemetrySettings().log_allow_sample_rate
    )
    return AuthorizationServicer(
        snapshot=lambda: current,
        verifier=Verifier(),
        observer=CheckTelemetry(metrics=Metrics(), log=log),
        limiter=limiter,
    )


def _calls(servicer: AuthorizationServicer, check: pb.CheckRequest, at_once: int) -> Call:
    async def one() -> Sequence[pb.CheckResponse]:
        return (await servicer.check(check),)

    async def many() -> Sequence[pb.CheckResponse]:
        return await asyncio.gather(*(servicer.check(check) for _ in range(at_once)))

    return one if at_once == 1 else many


def _verify(scenario: _Scenario, answers: Sequence[pb.CheckResponse]) -> None:
    for answer in answers:
        if answer.status.code != 0:
            raise BenchError(f"ratelimit {scenario.name}: denied: {answer}")
        headers = {h.header.key: h.header.value for h in answer.ok_response.response_headers_to_add}
        if scenario.limited and headers.get("ratelimit-limit") != str(LIMIT):
            raise BenchError(f"ratelimit {scenario.name}: no RateLimit-Limit {LIMIT}: {headers}")


async def _measure(
    scenario: _Scenario, *, iterations: int, repeats: int, redis_proc: Proc, port: int
) -> RateLimitResult:
    _verify(scenario, await scenario.call())
    batches = max(iterations // scenario.concurrency, 1)
    for _ in range(max(batches // 10, 10)):
        await scenario.call()
    timings: list[tuple[float, float, float]] = []
    calls_before = script_calls(port)
    for _ in range(repeats):
        redis_cpu = redis_proc.cpu_seconds()
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(batches):
            await scenario.call()
        decisions = batches * scenario.concurrency
        timings.append(
            (
                (time.perf_counter_ns() - wall) / decisions / 1000,
                (time.process_time_ns() - cpu) / decisions / 1000,
                (redis_proc.cpu_seconds() - redis_cpu) / decisions * 1e6,
            )
        )
    calls = (script_calls(port) - calls_before) / (batches * scenario.concurrency * repeats)
    if scenario.redis and calls < 1.0:
        raise BenchError(f"ratelimit {scenario.name}: Redis ran {calls:.2f} scripts per check")
    best = min(timings, key=lambda t: t[1])
    return RateLimitResult(
        name=scenario.name,
        description=scenario.description,
        decisions=batches * scenario.concurrency * repeats,
        concurrency=scenario.concurrency,
        wall_us=min(t[0] for t in timings),
        cpu_us=best[1],
        redis_cpu_us=statistics.median(t[2] for t in timings) if scenario.redis else 0.0,
        redis_calls_per_decision=calls,
    )


async def _inprocess(
    material: Material, *, iterations: int, repeats: int, redis_proc: Proc, port: int
) -> list[RateLimitResult]:
    plain, limited = micro.snapshot(material), _snapshot(limited_policy(material))
    check = micro.check_request(token=material.token)
    shared = build_limiter(
        RateLimitSettings(redis_url=f"redis://127.0.0.1:{port}", redis_timeout=REDIS_TIMEOUT_S)
    )
    if not isinstance(shared, SharedLimiter):
        raise BenchError(f"a Redis URL built {type(shared).__name__}, not the shared limiter")
    await shared.start()
    try:
        if shared.mode != MODE_REDIS:
            raise BenchError(f"the shared limiter started in mode {shared.mode!r}")
        with_redis = _servicer(limited, shared)
        scenarios = [
            _Scenario(
                "none",
                "the rule without rate limits",
                _calls(_servicer(plain, MemoryLimiter()), check, 1),
                limited=False,
                redis=False,
                concurrency=1,
            ),
            _Scenario(
                "memory",
                "one limit, counted in memory",
                _calls(_servicer(limited, MemoryLimiter()), check, 1),
                limited=True,
                redis=False,
                concurrency=1,
            ),
            _Scenario(
                "redis",
                "one limit, counted in Redis: one check at a time (each waits for its round trip)",
                _calls(with_redis, check, 1),
                limited=True,
                redis=True,
                concurrency=1,
            ),
            _Scenario(
                f"redis-x{CONCURRENCY}",
                f"one limit, counted in Redis: {CONCURRENCY} checks at a time (round trips overlap)",
                _calls(with_redis, check, CONCURRENCY),
                limited=True,
                redis=True,
                concurrency=CONCURRENCY,
            ),
        ]
        results = [
            await _measure(
                s, iterations=iterations, repeats=repeats, redis_proc=redis_proc, port=port
            )
            for s in scenarios
        ]
        if shared.errors_total or shared.busy_total or shared.mode != MODE_REDIS:
            raise BenchError(
                f"the shared limiter did not stay on Redis: {shared.errors_total} errors, "
                f"{shared.busy_total} busy, mode {shared.mode!r}"
            )
        return results
    finally:
        await shared.close()


def _snapshot(policy: dict[str, Any]) -> Snapshot:
    from authz.jwt.providers import offline_provider
    from authz.policy.store import PolicyStore, SourceDocument

    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    compiled = store.update("bench", [SourceDocument("bench", policy)])
    if not compiled.policies:
        raise BenchError(f"the rate-limited policy did not compile: {compiled.states}")
    return compiled


def run_inprocess(
    material: Material, *, iterations: int, repeats: int, logs: Path
) -> list[RateLimitResult]:
    with redis_server(logs) as (redis_proc, port):
        return asyncio.run(
            _inprocess(
                material, iterations=iterations, repeats=repeats, redis_proc=redis_proc, port=port
            )
        )


# --- under load --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadResult:
    runs: list[RunRecord]
    setups: list[SetupSummary]
    probes: dict[str, list[str]]


def run_load(
    material: Material,
    *,
    config: macro.MacroConfig,
    logs: Path,
    progress: Callable[[str], None],
) -> LoadResult:
    """The three sidecars under wrk, interleaved; the Redis one's Redis CPU charged to it."""
    with redis_server(logs) as (redis_proc, port):

        def policy_of(setup: Setup) -> dict[str, Any]:
            return sidecar_policy(material) if setup.name == NONE else limited_policy(material)

        def sidecar_args(setup: Setup) -> list[str]:
            if setup.name != SHARED:
                return []
            timeout_ms = str(int(REDIS_TIMEOUT_S * 1000))
            return ["--redis-url", f"redis://127.0.0.1:{port}", "--redis-timeout-ms", timeout_ms]

        with stack.stack(
            SETUPS,
            material=material,
            envoy_concurrency=config.envoy_concurrency,
            logs=logs,
            policy_of=policy_of,
            sidecar_args=sidecar_args,
        ) as current:
            current.get(SHARED).extra["redis"] = redis_proc
            probes = stack.probe_all(current, material)
            for name in (MEMORY, SHARED):
                _status, headers = request(current.get(name).listen, token=material.token)
                if headers.get("ratelimit-limit") != str(LIMIT):
                    raise BenchError(f"{name}: the answer carries no RateLimit-Limit: {headers}")
                probes[name].append(f"RateLimit-Limit {LIMIT}")
            before = script_calls(port)
            runs = macro.run_rounds(
                current, material=material, config=config, logs=logs, progress=progress
            )
            calls = script_calls(port) - before
    measured = sum(r.wrk.requests for r in runs if r.setup == SHARED)
    if calls < measured:
        raise BenchError(
            f"{SHARED}: wrk completed {measured} requests but Redis ran {calls} scripts: "
            "the sidecar did not count in Redis"
        )
    setups = [summarize(s.name, s.title, [r for r in runs if r.setup == s.name]) for s in SETUPS]
    return LoadResult(runs, setups, probes)
