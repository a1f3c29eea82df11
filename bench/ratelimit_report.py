"""The "Redis-shared versus local rate limits" section of docs/performance.md (see ratelimit.py).

Kept apart from report.py, which renders everything else: this section has its own tables (the
in-process scenarios, and its own load test with Redis's CPU as a column) and its own story.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bench.ratelimit import CONCURRENCY, LIMIT, MEMORY, NONE, REDIS_TIMEOUT_S, SHARED
from bench.results import RateLimitResult, Results, SetupSummary


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _inprocess(results: Results) -> str:
    base = next((m for m in results.ratelimit if m.name == "none"), None)

    def added(m: RateLimitResult) -> str:
        if base is None or m is base:
            return "-"
        return f"+{m.cpu_us + m.redis_cpu_us - base.cpu_us:.0f}"

    rows = [
        (
            f"`{m.name}`",
            m.description,
            f"{m.wall_us:.1f}",
            f"{m.cpu_us:.1f}",
            f"{m.redis_cpu_us:.1f}" if m.redis_calls_per_decision else "-",
            added(m),
            f"{m.redis_calls_per_decision:.2f}" if m.redis_calls_per_decision else "-",
        )
        for m in results.ratelimit
    ]
    return _table(
        (
            "scenario",
            "what",
            "µs / check",
            "sidecar CPU-µs / check",
            "Redis CPU-µs / check",
            "added CPU-µs (sidecar + Redis) vs no limits",
            "Redis scripts / check",
        ),
        rows,
    )


def _load(setups: list[SetupSummary]) -> str:
    base = next((s for s in setups if s.setup == NONE), None)
    rows = [
        (
            f"`{s.setup}` {s.title}",
            f"{s.rps:,.0f}",
            f"{s.rps / base.rps:.2f}" if base else "-",
            f"{s.p50_ms:.2f}",
            f"{s.p99_ms:.2f}",
            f"{s.p999_ms:.2f}",
            f"{s.cpu_us_per_request.get('sidecar', 0):.0f}",
            f"{s.cpu_us_per_request['redis']:.0f}" if "redis" in s.cpu_us_per_request else "-",
            f"{s.cpu_us_per_request.get('gateway', 0):.0f}",
            f"{s.other_cpu_s_per_s:.2f}",
        )
        for s in setups
    ]
    return _table(
        (
            "setup",
            "req/s",
            "vs no limits",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "sidecar CPU-µs / req",
            "Redis CPU-µs / req",
            "gateway CPU-µs / req",
            "other busy CPU (cores)",
        ),
        rows,
    )


def _story(results: Results) -> str:
    found = {m.name: m for m in results.ratelimit}
    lines = []
    none, memory, shared = found.get("none"), found.get("memory"), found.get("redis")
    many = found.get(f"redis-x{CONCURRENCY}")
    if none and memory:
        lines.append(
            f"- In memory, one limit adds {memory.cpu_us - none.cpu_us:.0f} CPU-µs to a check "
            f"({none.cpu_us:.0f} -> {memory.cpu_us:.0f}): the limiter's bookkeeping, and an "
            "allowed answer that carries RateLimit-* headers (the remaining count changes with "
            "every request), so it is built and serialized per request instead of reused."
        )
    if none and shared and many:
        lines.append(
            f"- With Redis, the sidecar spends {shared.cpu_us - none.cpu_us:.0f} CPU-µs more per "
            f"check one at a time and {many.cpu_us - none.cpu_us:.0f} with {CONCURRENCY} in "
            f"flight (the redis-py client packing the command and parsing the reply, the "
            "socket write, the event loop waking for the answer), Redis itself "
            f"{many.redis_cpu_us:.0f}-{shared.redis_cpu_us:.0f} "
            f"(one EVALSHA); a check waits {shared.wall_us - shared.cpu_us:.0f} µs for its "
            "round trip when nothing else is in flight."
        )
    by_name = {s.setup: s for s in results.ratelimit_setups}
    if {NONE, MEMORY, SHARED} <= set(by_name):
        base = by_name[NONE].rps
        lines.append(
            f"- Under load, the same rule with a limit keeps {by_name[MEMORY].rps / base:.0%} of "
            f"its throughput counting in memory and {by_name[SHARED].rps / base:.0%} counting in "
            "Redis, on this 2-core machine where Redis competes with Envoy, wrk and the sidecar "
            "for the same cores (its CPU is a column of its own above)."
        )
    return "\n".join(lines)


def render(results: Results) -> str:
    if not results.ratelimit and not results.ratelimit_setups:
        return "Not measured in this run (`BENCH_ONLY` without `ratelimit`)."
    probes = "; ".join(
        f"`{name}`: {', '.join(checks)}" for name, checks in results.ratelimit_probes.items()
    )
    return f"""The benchmark's rule with one rate limit (`claim:sub`, sliding window, {LIMIT:,}
requests a minute: never reached, so this is the cost of counting, not of denying), counted in
the sidecar's memory or in a redis-server the harness starts (standalone, on loopback). Every
answer must allow and carry the limit's RateLimit-Limit header, and Redis's own command
statistics must show one script call per check, or the run stops: a sidecar that fell back to
memory cannot pass for Redis. The Redis call timeout is {REDIS_TIMEOUT_S * 1000:.0f} ms here
(default 50 ms) so that a busy moment of this shared machine does not open the circuit breaker
in the middle of a measurement.

In-process (AuthorizationServicer.check as in the microbenchmark above, best of the repeats):

{_inprocess(results)}

Under load (Envoy + sidecar over a Unix socket, wrk as in the side-by-side run, interleaved
rounds; the Redis process's CPU is charged to the Redis setup):

{_load(results.ratelimit_setups)}

Probed before timing: {probes or "-"}.

{_story(results)}"""
