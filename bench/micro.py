"""The check path in-process: what one decision costs without gRPC, sockets or Envoy.

Calls AuthorizationServicer.check - the function the gRPC handler calls - with a CheckRequest
shaped like the ones Envoy sends, in a plain loop on one event loop. Wall and CPU time
(time.process_time) per decision come from repeated timed loops; memory comes from a separate
tracemalloc pass, since tracing slows every allocation down. Each scenario's decision is checked
first: a fast deny where an allow was meant would be a meaningless number. Each number is the
best of several repeats, as timeit reports: on a shared machine interference only adds time.

The difference between these numbers and the sidecar's CPU per request under load (see
macro.py) is what gRPC, asyncio and the sockets cost around the decision.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decision import Decision as PipelineDecision
from authz.pipeline.mode import decide_in_mode
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.memory import MemoryLimiter
from authz.server.convert import to_check_input
from authz.server.observe import CheckTelemetry
from authz.server.servicer import AuthorizationServicer
from authz.settings import TelemetrySettings
from authz.telemetry.decisionlog import DecisionLog
from authz.telemetry.metrics import Metrics
from bench.material import Material, sidecar_policy
from bench.procs import BenchError
from bench.results import MicroResult
from bench.wire import EngineCall

Decision = Callable[[], Awaitable[object]]


def check_request(*, token: str | None, host: str = "127.0.0.1:10000") -> pb.CheckRequest:
    """A CheckRequest with the attributes and headers Envoy sends for a wrk request."""
    request = pb.CheckRequest()
    attributes = request.attributes
    attributes.source.address.socket_address.address = "127.0.0.1"
    attributes.source.address.socket_address.port_value = 53124
    attributes.destination.address.socket_address.address = "127.0.0.1"
    attributes.destination.address.socket_address.port_value = 10000
    http = attributes.request.http
    http.id = "4125389719823497237"
    http.method = "GET"
    http.path = "/bench/items/42"
    http.host = host
    http.scheme = "http"
    http.protocol = "HTTP/1.1"
    http.headers.update(
        {
            ":authority": host,
            ":method": "GET",
            ":path": "/bench/items/42",
            ":scheme": "http",
            "x-forwarded-proto": "http",
            "x-request-id": "0b3c1f8e-6a8e-4a8f-9d0e-3f1b2c4d5e6f",
        }
    )
    if token is not None:
        http.headers["authorization"] = f"Bearer {token}"
    return request


def snapshot(material: Material) -> Snapshot:
    """A snapshot holding the benchmark's policy, compiled as the service compiles it."""
    store = PolicyStore(bind=offline_provider, publish=lambda _snapshot: None)
    compiled = store.update("bench", [SourceDocument("bench", sidecar_policy(material))])
    if not compiled.policies:
        raise BenchError(f"the benchmark policy did not compile: {compiled.states}")
    return compiled


def servicer(current: Snapshot, verifier: Verifier) -> AuthorizationServicer:
    """The servicer `authz serve` builds, with its observer (metrics, decision log) at the
    service's defaults; the log lines are built, then dropped instead of queued for writing."""
    decision_log = DecisionLog(
        _discard, allow_sample_rate=TelemetrySettings().log_allow_sample_rate
    )
    return AuthorizationServicer(
        snapshot=lambda: current,
        limiter=MemoryLimiter(),
        verifier=verifier,
        observer=CheckTelemetry(metrics=Metrics(), log=decision_log),
    )


def _discard(_line: bytes) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    call: Decision
    #: google.rpc code of the answer: 0 allow, 16 unauthenticated.
    expect_code: int


def _code(answer: object) -> int | None:
    """The google.rpc code of whatever a scenario returns (response, its bytes, a Decision)."""
    if isinstance(answer, bytes):
        answer = pb.CheckResponse.FromString(answer)
    if isinstance(answer, pb.CheckResponse):
        return int(answer.status.code)
    if isinstance(answer, PipelineDecision):
        return 0 if answer.allowed else 16 if answer.status == 401 else 7
    return None


def scenarios(material: Material) -> list[Scenario]:
    current = snapshot(material)
    warm_verifier = Verifier()
    warm = servicer(current, warm_verifier)
    cold = servicer(current, Verifier(cache_size=0))
    valid = check_request(token=material.token)
    anonymous = check_request(token=None)
    wire = valid.SerializeToString()
    valid_input = to_check_input(valid)

    async def parse_check_serialize() -> bytes:
        response = await warm.check(pb.CheckRequest.FromString(wire))
        return response.SerializeToString()

    async def decide_only() -> PipelineDecision:
        return await decide_in_mode(current, valid_input, verifier=warm_verifier, now=time.time())

    return [
        Scenario(
            "decide-warm",
            "allow, warm token cache: the pipeline's decide only (no conversion, telemetry, "
            "decision id or response)",
            decide_only,
            0,
        ),
        Scenario(
            "check-warm",
            "allow, warm token cache: AuthorizationServicer.check",
            lambda: warm.check(valid),
            0,
        ),
        Scenario(
            "wire-warm",
            "allow, warm token cache, plus protobuf parse + serialize (the gRPC handler's work)",
            parse_check_serialize,
            0,
        ),
        Scenario(
            "check-cold",
            "allow, token cache off: RS256 signature verified every time",
            lambda: cold.check(valid),
            0,
        ),
        Scenario(
            "h2-warm",
            "allow, warm token cache, through the h2 engine: HTTP/2 frames in, frames out (all "
            "the sidecar does per check under load but the system calls)",
            EngineCall(warm, valid),
            0,
        ),
        Scenario("deny-no-token", "deny 401: no bearer token", lambda: warm.check(anonymous), 16),
    ]


async def _verify(scenario: Scenario) -> None:
    answer = await scenario.call()
    if _code(answer) != scenario.expect_code:
        raise BenchError(
            f"micro {scenario.name}: expected code {scenario.expect_code}, got {answer!r}"
        )


async def _timed(call: Decision, iterations: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(iterations):
        await call()
    return (
        (time.perf_counter_ns() - wall) / iterations / 1000,
        (time.process_time_ns() - cpu) / iterations / 1000,
    )


async def _memory(call: Decision, *, samples: int = 200) -> tuple[int, int]:
    tracemalloc.start()
    try:
        for _ in range(50):
            await call()
        peaks = []
        for _ in range(samples):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            await call()
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            await call()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return int(statistics.median(peaks)), retained


async def _run(material: Material, *, iterations: int, repeats: int) -> list[MicroResult]:
    results: list[MicroResult] = []
    for scenario in scenarios(material):
        await _verify(scenario)
        await _timed(scenario.call, max(iterations // 10, 10))
        timings = [await _timed(scenario.call, iterations) for _ in range(repeats)]
        peak, retained = await _memory(scenario.call)
        results.append(
            MicroResult(
                name=scenario.name,
                description=scenario.description,
                iterations=iterations * repeats,
                wall_us=min(w for w, _ in timings),
                cpu_us=min(c for _, c in timings),
                peak_bytes=peak,
                retained_bytes_per_1k=retained,
            )
        )
    return results


def run_micro(
    material: Material, *, iterations: int = 10_000, repeats: int = 7
) -> list[MicroResult]:
    return asyncio.run(_run(material, iterations=iterations, repeats=repeats))
