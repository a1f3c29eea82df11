"""Response redaction in-process: the sidecar CPU one ext_proc exchange costs, without sockets.

A request on a redacting rule is three Process messages (request headers, response headers,
the BUFFERED body); each is parsed from bytes, answered and serialized, as the grpcio handler
does, around a JSON body of about 10 KB with masks under an array and a recursive removal. A
route without redaction is one message answered with a mode override. CPU time per exchange is
the best of several timed loops (interference on a shared machine only adds time); grpcio's
own transport cost is not included. Not part of `make bench`.

usage: python -m bench.redaction [ITERATIONS]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import yaml

from authz._gen.authz.envoy.ext_proc.v3 import ext_proc_pb2 as pb
from authz.jwt.providers import offline_provider
from authz.policy.store import PolicyStore, SourceDocument
from authz.server.extproc import ExtProcServicer

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


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
