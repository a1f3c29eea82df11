"""Response redaction: the sidecar CPU one ext_proc exchange costs, in-process and over gRPC.

In-process: a request on a redacting rule is three Process messages (request headers, response
headers, the BUFFERED body); each is parsed from bytes, answered and serialized, as the grpcio
handler does, around a JSON body of about 10 KB with masks under an array and a recursive
removal. A route without redaction is one message answered with a mode override. CPU time per
exchange is the best of several timed loops (interference on a shared machine only adds time).

Over gRPC (`--grpc`): a real `authz serve --ext-proc-listen`, measured by its own CPU time while
this process opens Process streams of one message (a route without redaction: what every
request costs with the filter present) and, for scale, sends Check calls to the h2 engine.
Not part of `make bench`.

usage: python -m bench.redaction [--grpc] [ITERATIONS]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import yaml

from authz._gen.authz.envoy.ext_proc.v3 import ext_proc_pb2 as pb
from authz._gen.authz.envoy.v3 import ext_authz_pb2 as authz_pb
from authz.jwt.providers import offline_provider
from authz.policy.store import PolicyStore, SourceDocument
from authz.server.extproc import ExtProcServicer
from bench.procs import Proc, loopback, start_sidecar, stop_all, wait_ready

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


def document(customers: int = 55) -> dict[str, Any]:
    return {
        "customers": [
            {
                "id": i,
                "name": "Ada Lovelace",
                "ssn": "123-45-6789",
                "email": "ada@example.com",
                "cards": [{"number": "4111111111111111", "brand": "visa"}],
                "profile": {"password": "x", "city": "London"},
            }
            for i in range(customers)
        ]
    }


def _header(name: str, value: str) -> pb.HeaderValue:
    return pb.HeaderValue(key=name, raw_value=value.encode())


def messages(path: str, body: bytes) -> list[bytes]:
    request = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(
            headers=pb.HeaderMap(
                headers=[
                    _header(":authority", "crm.test"),
                    _header(":method", "GET"),
                    _header(":path", path),
                    _header("x-request-id", "0b3c1f8e-6a8e-4a8f-9d0e-3f1b2c4d5e6f"),
                    _header("accept", "*/*"),
                ]
            )
        )
    )
    headers = pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(
            headers=pb.HeaderMap(
                headers=[
                    _header(":status", "200"),
                    _header("content-type", "application/json"),
                    _header("content-length", str(len(body))),
                ]
            )
        )
    )
    payload = pb.ProcessingRequest(response_body=pb.HttpBody(body=body, end_of_stream=True))
    return [m.SerializeToString() for m in (request, headers, payload)]


def main(iterations: int = 2000, repeats: int = 5) -> None:
    store = PolicyStore(bind=offline_provider)
    snapshot = store.update("bench", [SourceDocument("bench:0", yaml.safe_load(POLICY))])
    servicer = ExtProcServicer(snapshot=lambda: snapshot, max_body_bytes=1 << 20)
    body = json.dumps(document()).encode()
    cases = [
        ("redacted JSON response (3 messages)", messages("/customers/1", body)),
        ("route without redaction (1 message)", messages("/open", body)[:1]),
    ]
    for label, wire in cases:
        stream = servicer.stream()
        answers = [stream.answer(pb.ProcessingRequest.FromString(m)) for m in wire]
        if label.startswith("redacted"):
            redacted = json.loads(answers[-1].response_body.response.body_mutation.body)
            assert redacted["customers"][0]["ssn"] == "***", "the body was not redacted"
        best = float("inf")
        for _ in range(repeats):
            started = time.process_time()
            for _ in range(iterations):
                stream = servicer.stream()
                for m in wire:
                    stream.answer(pb.ProcessingRequest.FromString(m)).SerializeToString()
            best = min(best, (time.process_time() - started) / iterations)
        print(f"{label}: {best * 1e6:.1f} us CPU per exchange (body {len(body)} bytes)")


async def _streams(address: str, count: int, concurrency: int = 16) -> None:
    message = pb.ProcessingRequest.FromString(messages("/open", b"")[0])
    async with grpc.aio.insecure_channel(address) as channel:
        process = channel.stream_stream(
            "/envoy.service.ext_proc.v3.ExternalProcessor/Process",
            request_serializer=pb.ProcessingRequest.SerializeToString,
            response_deserializer=pb.ProcessingResponse.FromString,
        )

        async def one() -> None:
            call = process()
            await call.write(message)
            await call.read()
            await call.done_writing()
            await call.read()

        for _ in range(0, count, concurrency):
            await asyncio.gather(*(one() for _ in range(concurrency)))


async def _checks(address: str, count: int, concurrency: int = 16) -> None:
    request = authz_pb.CheckRequest()
    http = request.attributes.request.http
    http.method, http.host, http.path = "GET", "crm.test", "/open"
    async with grpc.aio.insecure_channel(address) as channel:
        check = channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=authz_pb.CheckRequest.SerializeToString,
            response_deserializer=authz_pb.CheckResponse.FromString,
        )
        for _ in range(0, count, concurrency):
            await asyncio.gather(*(check(request) for _ in range(concurrency)))


def over_grpc(iterations: int = 3000, repeats: int = 3) -> None:
    with tempfile.TemporaryDirectory(prefix="authz-redaction-") as tmp:
        policies = Path(tmp) / "policies.yaml"
        policies.write_text(POLICY)
        grpc_listen, http, ext_proc = loopback(), loopback(), loopback()
        sidecar = start_sidecar(
            "authz",
            policies=policies,
            grpc_listen=f"{grpc_listen.host}:{grpc_listen.port}",
            http=http,
            logs=Path(tmp),
            extra_args=["--ext-proc-listen", f"{ext_proc.host}:{ext_proc.port}"],
        )
        procs: list[Proc] = [sidecar]
        try:
            wait_ready(f"http://{http.host}:{http.port}/readyz", sidecar)
            cases: list[tuple[str, Callable[[int], Coroutine[Any, Any, None]]]] = [
                (
                    "Check, h2 engine",
                    lambda n: _checks(f"{grpc_listen.host}:{grpc_listen.port}", n),
                ),
                (
                    "Process stream of 1 message, grpcio",
                    lambda n: _streams(f"{ext_proc.host}:{ext_proc.port}", n),
                ),
            ]
            for label, run in cases:
                asyncio.run(run(iterations // 6))  # warm up
                best = float("inf")
                for _ in range(repeats):
                    started = sidecar.cpu_seconds()
                    asyncio.run(run(iterations))
                    best = min(best, (sidecar.cpu_seconds() - started) / iterations)
                print(f"{label}: {best * 1e6:.0f} us sidecar CPU per call")
        finally:
            stop_all(procs)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--grpc"]:
        over_grpc(*(int(a) for a in args[1:2]))
    else:
        main(*(int(a) for a in args[:1]))
