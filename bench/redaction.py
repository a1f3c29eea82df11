"""Response redaction in-process: the sidecar CPU one ext_proc exchange costs (docs/performance.md).

Not part of `make bench`. usage: python -m bench.redaction [ITERATIONS]
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys

import yaml

from authz._gen.authz.envoy.ext_proc.v3 import ext_proc_pb2 as pb
from authz.server.extproc import ExtProcServicer
from bench.micro import measure, snapshot

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


def messages(path: str) -> list[pb.ProcessingRequest]:
    """The Process messages of one request: its headers, the response's headers, its body."""
    request = {":authority": "crm.test", ":method": "GET", ":path": path}
    request |= {"x-request-id": "0b3c1f8e-6a8e-4a8f-9d0e-3f1b2c4d5e6f", "accept": "*/*"}
    response = {":status": "200", "content-type": "application/json"}
    response["content-length"] = str(len(BODY))
    return [
        pb.ProcessingRequest(request_headers=_headers(**request)),
        pb.ProcessingRequest(response_headers=_headers(**response)),
        pb.ProcessingRequest(response_body=pb.HttpBody(body=BODY, end_of_stream=True)),
    ]


def main(iterations: int = 2000, repeats: int = 5) -> None:
    current = snapshot(yaml.safe_load(POLICY))
    servicer = ExtProcServicer(snapshot=lambda: current, max_body_bytes=1 << 20)

    async def exchange(wire: list[bytes]) -> list[bytes]:
        stream = servicer.stream()
        return [stream.answer(pb.ProcessingRequest.FromString(m)).SerializeToString() for m in wire]

    redacted = [m.SerializeToString() for m in messages("/customers/1")]
    last = pb.ProcessingResponse.FromString(asyncio.run(exchange(redacted))[-1])
    body = last.response_body.response.body_mutation.body
    assert json.loads(body)["customers"][0]["ssn"] == "***", "not redacted"
    open_route = [messages("/open")[0].SerializeToString()]
    for label, wire in (
        ("redacted JSON response (3 messages)", redacted),
        ("route without redaction (1 message)", open_route),
    ):
        call = functools.partial(exchange, wire)
        timed = measure(label, "", call, iterations=iterations, repeats=repeats, code=None)
        cpu_us = asyncio.run(timed).cpu_us  # the best of the repeats: interference only ever adds
        print(f"{label}: {cpu_us:.1f} us CPU per exchange (body {len(BODY)} bytes)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
