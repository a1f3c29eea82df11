"""The check path in-process: what one decision costs without gRPC, sockets or Envoy.

Calls AuthorizationServicer.check - the function the gRPC handler calls - with a CheckRequest
shaped like the ones Envoy sends, in a plain loop on one event loop. Wall and CPU time
(time.process_time) per decision are medians over repeats; memory comes from a separate
tracemalloc pass, since tracing slows every allocation down. Each scenario's decision is checked
first: a fast deny where an allow was meant would be a meaningless number.

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
from authz.policy.store import PolicyStore, SourceDocument
from authz.server.observe import CheckTelemetry
from authz.server.servicer import AuthorizationServicer
from authz.settings import TelemetrySettings
from authz.telemetry.decisionlog import DecisionLog
from authz.telemetry.metrics import Metrics
from bench.material import Material, sidecar_policy
from bench.procs import BenchError
from bench.results import MicroResult

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


def servicer(material: Material, *, cache_size: int = 10_000) -> AuthorizationServicer:
    """The servicer `authz serve` builds, over a snapshot holding the benchmark's policy.

    With the service's observer (metrics and decision log at their defaults); the log lines
    are built, then dropped instead of queued for the writer thread.
    """
    store = PolicyStore(bind=offline_provider, publish=lambda _snapshot: None)
    snapshot = store.update("bench", [SourceDocument("bench", sidecar_policy(material))])
    if not snapshot.policies:
        raise BenchError(f"the benchmark policy did not compile: {snapshot.states}")
    verifier = Verifier(cache_size=cache_size)
    decision_log = DecisionLog(
        _discard, allow_sample_rate=TelemetrySettings().log_allow_sample_rate
    )
    return AuthorizationServicer(
        snapshot=lambda: snapshot,
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
    #: google.rpc code the response must carry (0 allow, 16 unauthenticated).
    expect_code: int


def scenarios(material: Material) -> list[Scenario]:
    warm = servicer(material)
    cold = servicer(material, cache_size=0)
    valid = check_request(token=material.token)
    anonymous = check_request(token=None)
    wire = valid.SerializeToString()

    async def parse_check_serialize() -> bytes:
        response = await warm.check(pb.CheckRequest.FromString(wire))
        return response.SerializeToString()

    return [
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
        Scenario("deny-no-token", "deny 401: no bearer token", lambda: warm.check(anonymous), 16),
    ]


async def _verify(scenario: Scenario) -> None:
    answer = await scenario.call()
    response = pb.CheckResponse.FromString(answer) if isinstance(answer, bytes) else answer
    if not isinstance(response, pb.CheckResponse) or response.status.code != scenario.expect_code:
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
                wall_us=float(statistics.median(w for w, _ in timings)),
                cpu_us=float(statistics.median(c for _, c in timings)),
                peak_bytes=peak,
                retained_bytes_per_1k=retained,
            )
        )
    return results


def run_micro(
    material: Material, *, iterations: int = 20_000, repeats: int = 5
) -> list[MicroResult]:
    return asyncio.run(_run(material, iterations=iterations, repeats=repeats))
