"""The check path in-process: one decision without sockets or Envoy (docs/performance.md).

Each scenario's answer is checked before it is timed; bench/ratelimit.py and bench/bruteforce.py
measure their scenarios with `measure` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import hpack

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
from authz.server import h2frames as h2
from authz.server.convert import to_check_input
from authz.server.grpcwire import PREFIX_BYTES, frame
from authz.server.h2conn import Connection
from authz.server.h2limits import DEFAULTS, Clock
from authz.server.h2server import CHECK
from authz.server.observe import CheckTelemetry
from authz.server.servicer import AuthorizationServicer
from authz.settings import TelemetrySettings
from authz.telemetry import tracing
from authz.telemetry.decisionlog import DecisionLog
from authz.telemetry.metrics import Metrics
from bench.material import Material, sidecar_policy
from bench.procs import BenchError, Proc
from bench.results import InProcess
from tests.support.grpcclient import CHECK_HEADERS

Call = Callable[[], Awaitable[Any]]
_WARM = "allow, warm token cache"
#: The scenarios and what each measures, in the order they run and are reported.
SCENARIOS = {
    "decide-warm": f"{_WARM}: the pipeline's decide only (no conversion, telemetry, decision id or response)",
    "check-bare": f"{_WARM}: AuthorizationServicer.check without metrics or decision log",
    "check-warm": f"{_WARM}: AuthorizationServicer.check",
    "check-traced": f"{_WARM}: check-warm with tracing on (a span per check, exported over OTLP/gRPC)",
    "wire-warm": f"{_WARM}, plus protobuf parse + serialize (the gRPC handler's work)",
    "check-cold": "allow, token cache off: RS256 signature verified every time",
    "h2-warm": f"{_WARM}, through the h2 engine: HTTP/2 frames in, frames out (all the sidecar does "
    "per check under load but the system calls)",
    "deny-no-token": "deny 401: no bearer token",
}
OTLP_TRACES = "opentelemetry.proto.collector.trace.v1.TraceService"
#: The request headers of Envoy's ext_authz gRPC client (as captured from Envoy 1.40): a gRPC
#: call's own, plus the deadline and Envoy's internal-request mark.
ENVOY_HEADERS = [*CHECK_HEADERS, ("grpc-timeout", "1000m"), ("x-envoy-internal", "true")]


def check_request(*, token: str | None) -> pb.CheckRequest:
    """A CheckRequest with the attributes and headers Envoy sends for a wrk request."""
    host, path = "127.0.0.1:10000", "/bench/items/42"
    headers = {":authority": host, ":method": "GET", ":path": path, ":scheme": "http"}
    headers |= {"x-forwarded-proto": "http", "x-request-id": "0b3c1f8e-6a8e-4a8f-9d0e-3f1b2c4d5e6f"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = pb.CheckRequest()
    http = request.attributes.request.http
    http.id, http.method, http.path, http.host = "4125389719823497237", "GET", path, host
    http.scheme, http.protocol = "http", "HTTP/1.1"
    http.headers.update(headers)
    for peer, port in ((request.attributes.source, 53124), (request.attributes.destination, 10000)):
        peer.address.socket_address.address = "127.0.0.1"
        peer.address.socket_address.port_value = port
    return request


def snapshot(policy: dict[str, Any]) -> Snapshot:
    """A snapshot holding `policy` (one that fails to compile fails `measure`'s answer check)."""
    store = PolicyStore(bind=offline_provider, publish=lambda _snapshot: None)
    return store.update("bench", [SourceDocument("bench", policy)])


def servicer(
    current: Snapshot,
    verifier: Verifier,
    *,
    limiter: Limiter | None = None,
    telemetry: bool = True,
    blocks: BlockStore | None = None,
) -> AuthorizationServicer:
    """The servicer `authz serve` builds; the decision log's lines are built, then dropped."""
    rate = TelemetrySettings().log_allow_sample_rate
    log = DecisionLog(lambda _line: None, allow_sample_rate=rate)
    return AuthorizationServicer(
        snapshot=lambda: current,
        verifier=verifier,
        observer=CheckTelemetry(metrics=Metrics(), log=log) if telemetry else None,
        limiter=limiter if limiter is not None else MemoryLimiter(),
        block_store=blocks,
    )


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


class EngineCall(asyncio.Transport):
    """The h2 engine in-process: plays Envoy's side of one connection with no socket, and is the
    connection's transport. Each call sends one check as Envoy does (a HEADERS frame whose block
    the sidecar has seen before, then a DATA frame) and returns the answer's message."""

    def __init__(self, servicer: AuthorizationServicer, request: pb.CheckRequest) -> None:
        super().__init__()
        self.written, self.waiter, no_op = bytearray(), asyncio.Future[None](), lambda *_: None
        self._connection = Connection(
            {CHECK: servicer.check_wire},
            limits=DEFAULTS,
            clock=Clock(),
            on_close=no_op,
            on_idle=no_op,
        )
        self._connection.connection_made(self)
        # The largest send window there is: a run's answers never use it up.
        window = h2.settings({h2.Setting.INITIAL_WINDOW_SIZE: h2.MAX_WINDOW})
        window += h2.window_update(0, h2.MAX_WINDOW - 65_535)
        self._connection.data_received(h2.PREFACE + window)
        encoder = hpack.Encoder()
        #: The first block adds Envoy's headers to the HPACK table; every later one (like
        #: Envoy's) only refers to them, so it is the same bytes each time: encoded once here.
        self._first: bytes | None = encoder.encode(ENVOY_HEADERS)
        self._block = encoder.encode(ENVOY_HEADERS)
        self._message = frame(request.SerializeToString())
        self._stream = 1

    def write(self, data: Any) -> None:
        self.written += data
        if not self.waiter.done():
            self.waiter.set_result(None)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    async def __call__(self) -> bytes:
        stream, self._stream = self._stream, self._stream + 2
        block, self._first = self._first or self._block, None
        self.written.clear()
        self._connection.data_received(
            h2.frame(h2.Type.HEADERS, h2.Flag.END_HEADERS, stream, block)
            + h2.frame(h2.Type.DATA, h2.Flag.END_STREAM, stream, self._message)
        )
        while (answer := _answer(self.written, stream)) is None:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return answer


def _answer(output: bytearray, stream: int) -> bytes | None:
    """The message of the first DATA frame of `stream` in `output`, if there is one yet."""
    offset = 0
    while offset + h2.HEADER_BYTES <= len(output):
        high, low, kind, _flags, sid = h2.HEADER.unpack_from(output, offset)
        end = offset + h2.HEADER_BYTES + (high << 16 | low)
        if kind == h2.Type.DATA and sid == stream:
            return bytes(output[offset + h2.HEADER_BYTES + PREFIX_BYTES : end])
        offset = end
    return None


def _code(answer: Decision | bytes | pb.CheckResponse) -> int:
    """The google.rpc code of what a scenario returns: a Decision, a CheckResponse or its bytes."""
    if isinstance(answer, Decision):
        return 0 if answer.allowed else 16 if answer.status == 401 else 7
    if isinstance(answer, bytes):
        answer = pb.CheckResponse.FromString(answer)
    return int(answer.status.code)


async def _timed(call: Call, calls: int, per_call: int, redis: Proc | None) -> list[float]:
    """µs and CPU-µs per decision over `calls` calls of `per_call` decisions each, and the
    CPU-µs per decision `redis` spent meanwhile."""
    cpu_of = redis.cpu_seconds if redis is not None else lambda: 0.0
    began, wall, cpu = cpu_of(), time.perf_counter_ns(), time.process_time_ns()
    for _ in range(calls):
        await call()
    decisions = calls * per_call
    return [
        (time.perf_counter_ns() - wall) / decisions / 1000,
        (time.process_time_ns() - cpu) / decisions / 1000,
        (cpu_of() - began) / decisions * 1e6,
    ]


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


async def measure(
    name: str,
    description: str,
    call: Call,
    *,
    iterations: int,
    repeats: int,
    code: int | None = 0,
    memory: bool = False,
    per_call: int = 1,
    redis: Proc | None = None,
) -> InProcess:
    """Check the answer's code (None: the caller did), warm up, then the best of `repeats` timed
    loops of `iterations` decisions, `per_call` a call (and, with `memory`, the tracemalloc
    pass); `redis`'s CPU per decision is the median of the loops'."""
    if code is not None and _code(answer := await call()) != code:
        raise BenchError(f"{name}: expected code {code}: {answer!r}")
    calls = max(iterations // per_call, 1)
    await _timed(call, max(calls // 10, 10), per_call, None)
    timings = [await _timed(call, calls, per_call, redis) for _ in range(repeats)]
    peak, retained = await _memory(call) if memory else (0, 0)
    return InProcess(
        name=name,
        description=description,
        wall_us=min(t[0] for t in timings),
        cpu_us=min(t[1] for t in timings),
        peak_bytes=peak,
        retained_bytes_per_1k=retained,
        redis_cpu_us=statistics.median(t[2] for t in timings),
    )


async def _run(material: Material, *, iterations: int, repeats: int) -> list[InProcess]:
    current, verifier = snapshot(sidecar_policy(material)), Verifier()
    warm, bare = servicer(current, verifier), servicer(current, verifier, telemetry=False)
    cold = servicer(current, Verifier(cache_size=0))
    valid, anonymous = check_request(token=material.token), check_request(token=None)
    wire, valid_input = valid.SerializeToString(), to_check_input(valid)

    async def parse_check_serialize() -> bytes:
        return (await warm.check(pb.CheckRequest.FromString(wire))).SerializeToString()

    async def decide_only() -> Decision:
        return await decide(current, valid_input, verifier=verifier, now=time.time())

    calls: dict[str, Call] = {
        "decide-warm": decide_only,
        "check-bare": lambda: bare.check(valid),
        "check-warm": lambda: warm.check(valid),
        "check-traced": lambda: warm.check(valid),
        "wire-warm": parse_check_serialize,
        "check-cold": lambda: cold.check(valid),
        "h2-warm": EngineCall(warm, valid),
        "deny-no-token": lambda: warm.check(anonymous),
    }
    results = []
    for name, call in calls.items():
        with traced() if name == "check-traced" else contextlib.nullcontext():
            once = functools.partial(measure, iterations=iterations, repeats=repeats, memory=True)
            results.append(
                await once(name, SCENARIOS[name], call, code=16 * (name == "deny-no-token"))
            )
    return results


def run_micro(material: Material, *, iterations: int = 10_000, repeats: int = 7) -> list[InProcess]:
    return asyncio.run(_run(material, iterations=iterations, repeats=repeats))
