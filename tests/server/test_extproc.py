"""The ext_proc Process servicer, message by message and over a real grpcio stream.

What it must never do: let a redacting rule's body through unread (not JSON, compressed, too
big, chunked, malformed, no metadata), trust anything the client sent about scopes, or crash.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from authz._gen.authz.envoy.ext_proc.v3 import ext_proc_pb2 as pb
from authz.jwt.providers import offline_provider
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.server.extproc import EXT_AUTHZ_NAMESPACE, METHOD, SERVICE, ExtProcServicer
from authz.server.grpc_server import ExtProcServer
from authz.server.listen import ListenAddress
from tests.support.policies import auth_policy, rule

POLICY = auth_policy(
    "crm",
    namespace="t",
    rules=[
        rule(
            "customers",
            paths=["/customers/**"],
            anonymous=True,
            responseBody={"redact": [{"paths": ["$.ssn"], "unlessScopes": ["pii:read"]}]},
        ),
        rule(
            "loose",
            paths=["/loose"],
            anonymous=True,
            responseBody={"redact": [{"paths": ["$.ssn"]}], "onUnparseable": "passThrough"},
        ),
        rule("open", paths=["/open"], anonymous=True),
    ],
)
BODY = json.dumps({"ssn": "123-45-6789", "name": "Ada"}).encode()
LIMIT = 4096


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    built = PolicyStore(bind=offline_provider).update("test", [SourceDocument("p.yaml:0", POLICY)])
    assert [s.state.value for s in built.states] == ["ready"], built.states
    return built


class Observed:
    def __init__(self) -> None:
        self.decisions: list[tuple[str, Decision]] = []

    def observe(self, request: CheckInput | None, decision: Decision, **kw: Any) -> None:
        self.decisions.append((kw["decision_id"], decision))


def servicer(snapshot: Snapshot, observer: Observed | None = None) -> ExtProcServicer:
    return ExtProcServicer(
        snapshot=lambda: snapshot,
        max_body_bytes=LIMIT,
        observer=observer,
        decision_ids=lambda: "d-1",
    )


def headers(**values: str) -> pb.HeaderMap:
    return pb.HeaderMap(
        headers=[
            pb.HeaderValue(key=k.replace("_", "-"), raw_value=v.encode()) for k, v in values.items()
        ]
    )


def request_headers(
    path: str, *, scopes: list[str] | None = None, **extra: str
) -> pb.ProcessingRequest:
    message = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(
            headers=pb.HeaderMap(
                headers=[
                    pb.HeaderValue(key=":authority", raw_value=b"crm.test:8080"),
                    pb.HeaderValue(key=":method", raw_value=b"GET"),
                    pb.HeaderValue(key=":path", raw_value=path.encode()),
                    *headers(**extra).headers,
                ]
            )
        )
    )
    if scopes is not None:
        metadata = Struct()
        metadata.update({"policy": "t/crm", "scopes": scopes})
        message.metadata_context.filter_metadata[EXT_AUTHZ_NAMESPACE].CopyFrom(metadata)
    return message


def response_headers(
    values: dict[str, str] | None = None, *, end: bool = False
) -> pb.ProcessingRequest:
    values = {"content_type": "application/json", **(values or {})}
    return pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(headers=headers(**values), end_of_stream=end)
    )


def response_body(body: bytes, *, end: bool = True) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(response_body=pb.HttpBody(body=body, end_of_stream=end))


def exchange(
    service: ExtProcServicer, *messages: pb.ProcessingRequest
) -> list[pb.ProcessingResponse]:
    stream = service.stream()
    return [stream.answer(m) for m in messages]


def redacted(answer: pb.ProcessingResponse) -> Any:
    common = answer.response_body.response
    body = common.body_mutation.body
    length = {h.header.key: h.header.raw_value for h in common.header_mutation.set_headers}
    assert length["content-length"] == str(len(body)).encode()
    return json.loads(body)


def test_masked_without_the_scope_and_accept_encoding_removed(snapshot: Snapshot) -> None:
    first, _, body = exchange(
        servicer(snapshot),
        request_headers("/customers/1", scopes=[]),
        response_headers(),
        response_body(BODY),
    )
    assert list(first.request_headers.response.header_mutation.remove_headers) == [
        "accept-encoding"
    ]
    assert not first.HasField("mode_override")
    assert redacted(body) == {"ssn": "***", "name": "Ada"}


def test_the_waiving_scope_skips_the_body(snapshot: Snapshot) -> None:
    (first,) = exchange(servicer(snapshot), request_headers("/customers/1", scopes=["pii:read"]))
    assert first.mode_override.response_body_mode == pb.ProcessingMode.NONE
    assert first.mode_override.response_header_mode == pb.ProcessingMode.SKIP


@pytest.mark.parametrize("path", ["/open", "/nothing", "/%2e%2e/x", "/customers/%2F"])
def test_routes_without_redaction_are_skipped(snapshot: Snapshot, path: str) -> None:
    (first,) = exchange(servicer(snapshot), request_headers(path, scopes=["pii:read"]))
    assert first.mode_override.response_body_mode == pb.ProcessingMode.NONE


def test_client_headers_cannot_claim_scopes(snapshot: Snapshot) -> None:
    """Scopes come from ext_authz's metadata only; without it every redaction applies."""
    _, _, body = exchange(
        servicer(snapshot),
        request_headers("/customers/1", x_authz_scopes="pii:read", scopes=None),
        response_headers(),
        response_body(BODY),
    )
    assert redacted(body)["ssn"] == "***"


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ({"content_type": "text/plain"}, "not JSON"),
        ({"content_type": "application/jsonp"}, "not JSON"),
        ({"content_type": ""}, "not JSON"),
        ({"content_encoding": "gzip"}, "compressed"),
        ({"content_encoding": "identity, gzip"}, "compressed"),
        ({"content_length": str(LIMIT + 1)}, "size limit"),
    ],
)
def test_unreadable_headers_fail_closed(
    snapshot: Snapshot, response: dict[str, str], reason: str
) -> None:
    observed = Observed()
    _, answer = exchange(
        servicer(snapshot, observed),
        request_headers("/customers/1", scopes=[]),
        response_headers(response),
    )
    immediate = answer.immediate_response
    assert immediate.status.code == 502
    body = json.loads(immediate.body)
    assert (body["error"], body["decision_id"]) == ("response_unparseable", "d-1")
    [(decision_id, decision)] = observed.decisions
    assert (decision_id, decision.status, decision.rule) == ("d-1", 502, "customers")
    assert reason in decision.description


@pytest.mark.parametrize(
    "message",
    [
        response_body(b"x" * (LIMIT + 1)),
        response_body(BODY, end=False),
        response_body(b'{"ssn": "1"'),
        response_body(b"[" * 5000 + b"]" * 5000),
        response_body(b'{"ssn": "\xff"}'),
    ],
    ids=["too-big", "chunk", "malformed", "deep", "bad-utf8"],
)
def test_unreadable_bodies_fail_closed(snapshot: Snapshot, message: pb.ProcessingRequest) -> None:
    *_, answer = exchange(
        servicer(snapshot),
        request_headers("/customers/1", scopes=[]),
        response_headers(),
        message,
    )
    assert answer.immediate_response.status.code == 502
    assert b"123-45-6789" not in answer.SerializeToString()


def test_pass_through_rule_lets_unreadable_responses_by(snapshot: Snapshot) -> None:
    service = servicer(snapshot)
    _, answer = exchange(
        service, request_headers("/loose"), response_headers({"content_type": "text/plain"})
    )
    assert answer.mode_override.response_body_mode == pb.ProcessingMode.NONE
    *_, body = exchange(service, request_headers("/loose"), response_headers(), response_body(b"{"))
    assert body.response_body.response == pb.CommonResponse()


def test_a_response_without_body_continues(snapshot: Snapshot) -> None:
    _, answer = exchange(
        servicer(snapshot),
        request_headers("/customers/1"),
        response_headers({"content_type": "text/plain"}, end=True),
    )
    assert answer.response_headers.response == pb.CommonResponse()


async def test_process_over_grpc_and_errors_fail_closed(snapshot: Snapshot) -> None:
    def broken() -> Snapshot:
        raise RuntimeError("boom")

    server = ExtProcServer(
        ExtProcServicer(snapshot=lambda: snapshot, max_body_bytes=LIMIT),
        ListenAddress("127.0.0.1", 0),
        max_message_bytes=LIMIT,
    )
    failing = ExtProcServer(
        ExtProcServicer(snapshot=broken, max_body_bytes=LIMIT),
        ListenAddress("127.0.0.1", 0),
        max_message_bytes=LIMIT,
    )
    await server.start()
    await failing.start()
    try:
        answers = await call(
            server, request_headers("/customers/1"), response_headers(), response_body(BODY)
        )
        assert json.loads(answers[2].response_body.response.body_mutation.body)["ssn"] == "***"
        [refused] = await call(failing, request_headers("/customers/1"))
        assert refused.immediate_response.status.code == 503
    finally:
        await server.stop(0)
        await failing.stop(0)


async def call(
    server: ExtProcServer, *messages: pb.ProcessingRequest
) -> list[pb.ProcessingResponse]:
    async def requests() -> AsyncIterator[pb.ProcessingRequest]:
        for message in messages:
            yield message

    async with grpc.aio.insecure_channel(server.address.grpc_target) as channel:
        process = channel.stream_stream(
            f"/{SERVICE}/{METHOD}",
            request_serializer=pb.ProcessingRequest.SerializeToString,
            response_deserializer=pb.ProcessingResponse.FromString,
        )
        return [answer async for answer in process(requests())]


@pytest.mark.parametrize(
    "duplicated",
    [
        [("content-type", "application/json"), ("content-type", "text/html")],
        [("content-encoding", "identity"), ("content-encoding", "gzip")],
        [("content-length", "10"), ("content-length", str(LIMIT + 1))],
    ],
)
def test_duplicated_response_headers_fail_closed(
    snapshot: Snapshot, duplicated: list[tuple[str, str]]
) -> None:
    message = response_headers()
    for name, value in duplicated:
        message.response_headers.headers.headers.append(
            pb.HeaderValue(key=name.upper(), raw_value=value.encode())
        )
    _, answer = exchange(servicer(snapshot), request_headers("/customers/1", scopes=[]), message)
    if duplicated[0][0] == "content-length":
        # an unreadable length is not trusted either way: the body's own size is checked
        assert answer.response_headers.response == pb.CommonResponse()
        *_, body = exchange(
            servicer(snapshot),
            request_headers("/customers/1", scopes=[]),
            message,
            response_body(b'{"ssn": "1"}' + b" " * LIMIT),
        )
        assert body.immediate_response.status.code == 502
    else:
        assert answer.immediate_response.status.code == 502


def test_a_flood_of_request_headers_is_answered(snapshot: Snapshot) -> None:
    message = request_headers("/open")
    message.request_headers.headers.headers.extend(
        pb.HeaderValue(key=f"x-{i % 7}", raw_value=b"v" * 100) for i in range(2000)
    )
    (first,) = exchange(servicer(snapshot), message)
    assert first.mode_override.response_body_mode == pb.ProcessingMode.NONE


def test_pass_through_warns_once_per_rule_and_reason(
    snapshot: Snapshot, caplog: pytest.LogCaptureFixture
) -> None:
    service = servicer(snapshot)
    for _ in range(50):
        exchange(
            service, request_headers("/loose"), response_headers({"content_type": "text/plain"})
        )
    warnings = [r for r in caplog.records if "passed through unredacted" in r.getMessage()]
    assert len(warnings) == 1
    assert "t/crm/loose: the response is not JSON" in warnings[0].getMessage()
