"""The check path in-process: what one decision costs without sockets or Envoy.

Calls AuthorizationServicer.check - what the gRPC handler calls - with a CheckRequest shaped
like the ones Envoy sends, in a plain loop on one event loop; and around it the pipeline alone,
the protobuf wire, the h2 engine's frames (bench/wire.py), and the servicer without telemetry or
with tracing on. Wall and CPU time (time.process_time: every thread, so the span exporter's
too) per decision come from repeated timed loops, each number the best of the repeats, as
timeit reports: on a shared machine interference only adds time. Memory comes from a separate
tracemalloc pass, since tracing slows every allocation down. Each scenario's answer is checked
first: a fast deny where an allow was meant would be a meaningless number.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.blocks import BlockStore
from authz.ratelimit.limiter import Limiter
from authz.ratelimit.memory import MemoryLimiter
from authz.server.convert import to_check_input
from authz.server.observe import CheckTelemetry
from authz.server.servicer import AuthorizationServicer
from authz.settings import TelemetrySettings
from authz.telemetry import tracing
from authz.telemetry.decisionlog import DecisionLog
from authz.telemetry.metrics import Metrics
from bench.material import Material, sidecar_policy
from bench.procs import BenchError
from bench.results import InProcess
from bench.wire import EngineCall

Call = Callable[[], Awaitable[Any]]
OTLP_TRACES = "opentelemetry.proto.collector.trace.v1.TraceService"


def check_request(*, token: str | None, host: str = "127.0.0.1:10000") -> pb.CheckRequest:
    """A CheckRequest with the attributes and headers Envoy sends for a wrk request."""
    path = "/bench/items/42"
    headers = {":authority": host, ":method": "GET", ":path": path, ":scheme": "http"}
    headers |= {"x-forwarded-proto": "http", "x-request-id": "0b3c1f8e-6a8e-4a8f-9d0e-3f1b2c4d5e6f"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = pb.CheckRequest()
    request.attributes.request.http.CopyFrom(
        pb.AttributeContext.HttpRequest(
            id="4125389719823497237",
            method="GET",
            path=path,
            host=host,
            scheme="http",
            protocol="HTTP/1.1",
            headers=headers,
        )
    )
    for peer, port in ((request.attributes.source, 53124), (request.attributes.destination, 10000)):
        peer.address.socket_address.address = "127.0.0.1"
        peer.address.socket_address.port_value = port
    return request


def snapshot(policy: dict[str, Any]) -> Snapshot:
    """A snapshot holding `policy`, compiled as the service compiles it."""
    store = PolicyStore(bind=offline_provider, publish=lambda _snapshot: None)
    compiled = store.update("bench", [SourceDocument("bench", policy)])
    if not compiled.policies:
        raise BenchError(f"the benchmark policy did not compile: {compiled.states}")
    return compiled


def servicer(
    current: Snapshot,
    verifier: Verifier,
    *,
    limiter: Limiter | None = None,
    telemetry: bool = True,
    blocks: BlockStore | None = None,
) -> AuthorizationServicer:
    """The servicer `authz serve` builds, with its observer (metrics, decision log) at the
    service's defaults; the log lines are built, then dropped instead of queued for writing."""
    rate = TelemetrySettings().log_allow_sample_rate
    observer = CheckTelemetry(metrics=Metrics(), log=DecisionLog(_drop, allow_sample_rate=rate))
    return AuthorizationServicer(
        snapshot=lambda: current,
        verifier=verifier,
        observer=observer if telemetry else None,
        limiter=limiter if limiter is not None else MemoryLimiter(),
        block_store=blocks,
    )


def _drop(_line: bytes) -> None:
    return None


@contextlib.contextmanager
def traced() -> Iterator[None]:
    """Tracing on, exporting over OTLP/gRPC to a local receiver that counts and drops batches."""
    exports: list[int] = []

    def export(request: bytes, _context: object) -> bytes:
        exports.append(len(request))
        return b""  # an empty ExportTraceServiceResponse: all accepted

    drop = grpc.unary_unary_rpc_method_handler(export)
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(OTLP_TRACES, {"Export": drop})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        if not tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}):
            raise BenchError("tracing did not turn on")
        yield
        tracing.shutdown()  # exports what is buffered
        if not exports:
            raise BenchError("tracing was on, but no span reached the receiver")
    finally:
        tracing.shutdown()
        server.stop(None)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    call: Call
    #: The answer's google.rpc code: 0 allow, 16 unauthenticated.
    code: int = 0
    #: What is on while the scenario is measured.
    around: Callable[[], contextlib.AbstractContextManager[None]] = field(
        default=contextlib.nullcontext
    )


def _code(answer: object) -> int | None:
    """The google.rpc code of whatever a scenario returns (a response, its bytes, a Decision)."""
    if isinstance(answer, Decision):
        return 0 if answer.allowed else 16 if answer.status == 401 else 7
    if isinstance(answer, bytes):
        answer = pb.CheckResponse.FromString(answer)
    return int(answer.status.code) if isinstance(answer, pb.CheckResponse) else None


def scenarios(material: Material) -> list[Scenario]:
    current, verifier = snapshot(sidecar_policy(material)), Verifier()
    warm, bare = servicer(current, verifier), servicer(current, verifier, telemetry=False)
    cold = servicer(current, Verifier(cache_size=0))
    valid, anonymous = check_request(token=material.token), check_request(token=None)
    wire, valid_input = valid.SerializeToString(), to_check_input(valid)

    async def parse_check_serialize() -> bytes:
        response = await warm.check(pb.CheckRequest.FromString(wire))
        return response.SerializeToString()

    async def decide_only() -> Decision:
        return await decide(current, valid_input, verifier=verifier, now=time.time())

    cached = "allow, warm token cache"
    return [
        Scenario(
            "decide-warm",
            f"{cached}: the pipeline's decide only (no conversion, telemetry, decision id or response)",
            decide_only,
        ),
        Scenario(
            "check-bare",
            f"{cached}: AuthorizationServicer.check without metrics or decision log",
            lambda: bare.check(valid),
        ),
        Scenario("check-warm", f"{cached}: AuthorizationServicer.check", lambda: warm.check(valid)),
        Scenario(
            "check-traced",
            f"{cached}: check-warm with tracing on (a span per check, exported over OTLP/gRPC)",
            lambda: warm.check(valid),
            around=traced,
        ),
        Scenario(
            "wire-warm",
            f"{cached}, plus protobuf parse + serialize (the gRPC handler's work)",
            parse_check_serialize,
        ),
        Scenario(
            "check-cold",
            "allow, token cache off: RS256 signature verified every time",
            lambda: cold.check(valid),
        ),
        Scenario(
            "h2-warm",
            f"{cached}, through the h2 engine: HTTP/2 frames in, frames out (all the sidecar does "
            "per check under load but the system calls)",
            EngineCall(warm, valid),
        ),
        Scenario(
            "deny-no-token", "deny 401: no bearer token", lambda: warm.check(anonymous), code=16
        ),
    ]


async def timed(
    call: Call, calls: int, *, per_call: int = 1, other: Callable[[], float] = lambda: 0.0
) -> tuple[float, float, float]:
    """µs and CPU-µs per decision over `calls` calls of `per_call` decisions each, and the
    CPU-µs per decision that `other` (a process's CPU seconds, e.g. Redis's) grew by."""
    began, wall, cpu = other(), time.perf_counter_ns(), time.process_time_ns()
    for _ in range(calls):
        await call()
    decisions = calls * per_call
    return (
        (time.perf_counter_ns() - wall) / decisions / 1000,
        (time.process_time_ns() - cpu) / decisions / 1000,
        (other() - began) / decisions * 1e6,
    )


async def _memory(call: Call, *, samples: int = 200) -> tuple[int, int]:
    """(median peak bytes of one call, bytes still held after 1000 more calls)."""
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
        return int(statistics.median(peaks)), tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


async def _run(material: Material, *, iterations: int, repeats: int) -> list[InProcess]:
    results: list[InProcess] = []
    for scenario in scenarios(material):
        with scenario.around():
            answer = await scenario.call()
            if _code(answer) != scenario.code:
                raise BenchError(
                    f"micro {scenario.name}: expected code {scenario.code}: {answer!r}"
                )
            await timed(scenario.call, max(iterations // 10, 10))
            timings = [await timed(scenario.call, iterations) for _ in range(repeats)]
            peak, retained = await _memory(scenario.call)
        results.append(
            InProcess(
                name=scenario.name,
                description=scenario.description,
                decisions=iterations * repeats,
                wall_us=min(t[0] for t in timings),
                cpu_us=min(t[1] for t in timings),
                peak_bytes=peak,
                retained_bytes_per_1k=retained,
            )
        )
    return results


def run_micro(material: Material, *, iterations: int = 10_000, repeats: int = 7) -> list[InProcess]:
    return asyncio.run(_run(material, iterations=iterations, repeats=repeats))
