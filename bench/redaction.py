"""Response redaction: the sidecar CPU one ext_proc exchange costs, in-process and over gRPC.

In-process: a request on a redacting rule is three Process messages (request headers, response
headers, the BUFFERED body), each parsed from bytes, answered and serialized as the grpcio
handler does, around a ~10 KB JSON body with masks under an array and a recursive removal; a
route without redaction is one message answered with a mode override. Over gRPC (`--grpc`): a
real `authz serve --ext-proc-listen`, measured by its own CPU time, answering Process streams of
one message (what every request costs with the filter present) and, for scale, h2 Checks. Each
number is the best of several timed loops. Not part of `make bench`.

usage: python -m bench.redaction [--grpc] [ITERATIONS]
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import yaml

from authz._gen.authz.envoy.ext_proc.v3 import ext_proc_pb2 as pb
from authz._gen.authz.envoy.v3 import ext_authz_pb2 as authz_pb
from authz.jwt.providers import offline_provider
from authz.policy.store import PolicyStore, SourceDocument
from authz.server.extproc import ExtProcServicer
from bench.procs import loopback, start_sidecar, stop_all, wait_ready

POLICY = """
apiVersion: authz.dev/v1alpha1
kind: AuthPolicy
metadata: {name: crm, namespace: bench}
spec:
  hosts: [crm.test]
  rules:
  - name: customers
    match: {paths: ["/customers/**"]}
    allowAnonymous: true
    responseBody:
      redact:
      - paths: ["$.customers[*].ssn", "$.customers[*].cards[*].number"]
        unlessScopes: [pii:read]
      - {paths: ["$..password"], action: remove}
  - name: open
    match: {paths: ["/open"]}
    allowAnonymous: true
"""
CUSTOMER = {
    "name": "Ada Lovelace",
    "ssn": "123-45-6789",
    "email": "ada@example.com",
    "cards": [{"number": "4111111111111111", "brand": "visa"}],
    "profile": {"password": "x", "city": "London"},
}
BODY = json.dumps({"customers": [{"id": i, **CUSTOMER} for i in range(55)]}).encode()


def _headers(**pairs: str) -> pb.HttpHeaders:
    values = [pb.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
    return pb.HttpHeaders(headers=pb.HeaderMap(headers=values))


def messages(path: str, body: bytes) -> list[bytes]:
    """The Process messages of one request: its headers, the response's headers, its body."""
    request = {":authority": "crm.test", ":method": "GET", ":path": path}
    request |= {"x-request-id": "0b3c1f8e-6a8e-4a8f-9d0e-3f1b2c4d5e6f", "accept": "*/*"}
    response = {":status": "200", "content-type": "application/json"}
    return [
        pb.ProcessingRequest(request_headers=_headers(**request)).SerializeToString(),
        pb.ProcessingRequest(
            response_headers=_headers(**response, **{"content-length": str(len(body))})
        ).SerializeToString(),
        pb.ProcessingRequest(
            response_body=pb.HttpBody(body=body, end_of_stream=True)
        ).SerializeToString(),
    ]


def best(
    run: Callable[[], object], *, seconds: Callable[[], float], count: int, repeats: int
) -> float:
    """µs of `seconds` (a CPU clock) per one of the `count` things a `run` does, best of repeats."""
    timings = []
    for _ in range(repeats):
        started = seconds()
        run()
        timings.append((seconds() - started) / count * 1e6)
    return min(timings)


def main(iterations: int = 2000, repeats: int = 5) -> None:
    snapshot = PolicyStore(bind=offline_provider).update(
        "bench", [SourceDocument("bench:0", yaml.safe_load(POLICY))]
    )
    servicer = ExtProcServicer(snapshot=lambda: snapshot, max_body_bytes=1 << 20)

    def exchange(wire: list[bytes]) -> list[pb.ProcessingResponse]:
        stream = servicer.stream()
        return [stream.answer(pb.ProcessingRequest.FromString(m)) for m in wire]

    redacted = exchange(messages("/customers/1", BODY))[-1].response_body.response
    assert json.loads(redacted.body_mutation.body)["customers"][0]["ssn"] == "***", "not redacted"
    for label, wire in (
        ("redacted JSON response (3 messages)", messages("/customers/1", BODY)),
        ("route without redaction (1 message)", messages("/open", BODY)[:1]),
    ):

        def loop(wire: list[bytes] = wire) -> None:
            for _ in range(iterations):
                for answer in exchange(wire):
                    answer.SerializeToString()

        cpu = best(loop, seconds=time.process_time, count=iterations, repeats=repeats)
        print(f"{label}: {cpu:.1f} us CPU per exchange (body {len(BODY)} bytes)")


async def _calls(call: Callable[[], Awaitable[object]], count: int, concurrency: int = 16) -> None:
    for _ in range(0, count, concurrency):
        await asyncio.gather(*(call() for _ in range(concurrency)))


def over_grpc(iterations: int = 3000, repeats: int = 3) -> None:
    message = pb.ProcessingRequest.FromString(messages("/open", b"")[0])
    check = authz_pb.CheckRequest()
    check.attributes.request.http.method = "GET"
    check.attributes.request.http.host, check.attributes.request.http.path = "crm.test", "/open"

    async def one_message() -> AsyncIterator[pb.ProcessingRequest]:
        yield message

    def calls(address: str, count: int, kind: str) -> None:
        asyncio.run(_over(address, count, kind))

    async def _over(address: str, count: int, kind: str) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            if kind == "check":
                send = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check")
                wire = check.SerializeToString()
                return await _calls(lambda: send(wire), count)
            process = channel.stream_stream(
                "/envoy.service.ext_proc.v3.ExternalProcessor/Process",
                request_serializer=pb.ProcessingRequest.SerializeToString,
                response_deserializer=pb.ProcessingResponse.FromString,
            )

            async def stream() -> None:
                async for _answer in process(one_message()):
                    pass

            return await _calls(stream, count)

    with tempfile.TemporaryDirectory(prefix="authz-redaction-") as tmp:
        (policies := Path(tmp) / "policies.yaml").write_text(POLICY)
        grpc_listen, http, ext_proc = loopback(), loopback(), loopback()
        flags = ["--ext-proc-listen", f"{ext_proc.host}:{ext_proc.port}"]
        check_at = f"{grpc_listen.host}:{grpc_listen.port}"
        sidecar = start_sidecar(
            "authz",
            policies=policies,
            grpc_listen=check_at,
            http=http,
            logs=Path(tmp),
            extra_args=flags,
        )
        try:
            wait_ready(f"http://{http.host}:{http.port}/readyz", sidecar)
            for label, address, kind in (
                ("Check, h2 engine", check_at, "check"),
                ("Process stream of 1 message, grpcio", flags[1], "process"),
            ):
                calls(address, iterations // 6, kind)  # warm up
                run = functools.partial(calls, address, iterations, kind)
                cpu = best(run, seconds=sidecar.cpu_seconds, count=iterations, repeats=repeats)
                print(f"{label}: {cpu:.0f} us sidecar CPU per call")
        finally:
            stop_all([sidecar])


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--grpc"]:
        over_grpc(*(int(a) for a in args[1:2]))
    else:
        main(*(int(a) for a in args[:1]))
