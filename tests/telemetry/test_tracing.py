"""Tracing: off and free by default; on, one SERVER span per check that continues the caller's
trace, exported over OTLP/gRPC to a real receiver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import grpc
import pytest

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.errors import ConfigError
from authz.server.grpc_server import GrpcServer
from authz.server.listen import ListenAddress
from authz.server.observe import CheckTelemetry
from authz.server.servicer import CHECK_SPAN
from authz.telemetry import tracing
from authz.telemetry.adapters import ControllerMetrics
from authz.telemetry.decisionlog import DecisionLog
from authz.telemetry.metrics import Metrics
from tests.support.grpcclient import CHECK, check_request
from tests.support.keys import claims
from tests.support.otlp import OtlpReceiver
from tests.telemetry.fixtures import HOST, KEY, servicer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SPAN_KIND_SERVER = 2


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def tracing_off_afterwards() -> Iterator[None]:
    yield
    tracing.shutdown()


def otel_env(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "authz-test",
        **extra,
    }


def test_tracing_is_off_and_allocates_nothing_without_an_endpoint() -> None:
    assert tracing.configure({}) is False
    assert not tracing.enabled()
    # The helper hands out one shared null context: no span object per call.
    assert tracing.span("a") is tracing.span("b")
    with tracing.span("a") as current:
        assert current is None
    assert tracing.extract({"traceparent": TRACEPARENT}) is None


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_SDK_DISABLED": "true"},
    ],
)
def test_tracing_can_be_disabled_even_with_an_endpoint(
    receiver: OtlpReceiver, env: dict[str, str]
) -> None:
    assert tracing.configure(otel_env(receiver, **env)) is False
    assert not tracing.enabled()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "lots"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_PROPAGATORS", "jaeger"),
        ("OTEL_TRACES_EXPORTER", "console"),
    ],
)
def test_unusable_values_are_config_errors_naming_the_variable(
    receiver: OtlpReceiver, variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        tracing.configure(otel_env(receiver, **{variable: value}))
    assert not tracing.enabled()


async def test_check_span_continues_the_traceparent_of_the_request_headers(
    receiver: OtlpReceiver,
) -> None:
    assert tracing.configure(otel_env(receiver))
    lines: list[bytes] = []
    service = servicer(CheckTelemetry(metrics=Metrics(), log=DecisionLog(lines.append)))
    token = KEY.sign(claims(scope="other"))
    request = check_request(
        host=HOST,
        path="/orders/7?api_key=SECRET",
        headers={"traceparent": TRACEPARENT, "authorization": f"Bearer {token}"},
    )
    response = await service.check(request)
    assert response.denied_response.status.code == 403
    body = json.loads(response.denied_response.body)
    tracing.force_flush()

    (span,) = receiver.wait_for(lambda s: s.name == CHECK_SPAN)
    assert span.trace_id == TRACE_ID
    assert span.parent_span_id == PARENT_ID
    assert span.kind == SPAN_KIND_SERVER
    assert span.service == "authz-test"
    attributes = span.attributes
    assert attributes["authz.decision"] == "deny"
    assert attributes["authz.reason"] == "insufficient_scope"
    assert attributes["authz.policy"] == "t/p"
    assert attributes["authz.rule"] == "read"
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/orders/7"
    assert attributes["server.address"] == HOST
    # One decision id everywhere: span, deny body, decision log.
    (line,) = [json.loads(x) for x in lines]
    assert attributes["authz.decision_id"] == body["decision_id"] == line["decision_id"]
    assert line["trace_id"] == TRACE_ID
    text = repr(attributes)
    assert token not in text
    assert "SECRET" not in text


async def test_without_a_caller_context_the_check_starts_a_new_trace(
    receiver: OtlpReceiver,
) -> None:
    assert tracing.configure(otel_env(receiver))
    await servicer(CheckTelemetry()).check(check_request(host=HOST, path="/public/x"))
    tracing.force_flush()
    (span,) = receiver.wait_for(lambda s: s.name == CHECK_SPAN)
    assert span.parent_span_id == ""
    assert len(span.trace_id) == 32
    assert span.attributes["authz.decision"] == "allow"


async def test_grpc_metadata_context_wins_over_the_request_headers(
    receiver: OtlpReceiver,
) -> None:
    """Envoy's ext_authz client puts its own span in the gRPC metadata: that is the parent."""
    assert tracing.configure(otel_env(receiver))
    server = GrpcServer(servicer(), ListenAddress("127.0.0.1", 0))
    await server.start()
    envoy_trace, envoy_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    try:
        async with grpc.aio.insecure_channel(str(server.address)) as channel:
            call = channel.unary_unary(
                CHECK,
                request_serializer=pb.CheckRequest.SerializeToString,
                response_deserializer=pb.CheckResponse.FromString,
            )
            request = check_request(
                host=HOST, path="/public/a", headers={"traceparent": TRACEPARENT}
            )
            await call(request, metadata=(("traceparent", f"00-{envoy_trace}-{envoy_span}-01"),))
    finally:
        await server.stop(0)
    tracing.force_flush()
    (span,) = receiver.wait_for(lambda s: s.name == CHECK_SPAN)
    assert (span.trace_id, span.parent_span_id) == (envoy_trace, envoy_span)


async def test_b3_headers_are_continued_when_configured(receiver: OtlpReceiver) -> None:
    assert tracing.configure(otel_env(receiver, OTEL_PROPAGATORS="tracecontext,b3multi"))
    headers = {"x-b3-traceid": TRACE_ID, "x-b3-spanid": PARENT_ID, "x-b3-sampled": "1"}
    await servicer().check(check_request(host=HOST, path="/public/b", headers=headers))
    tracing.force_flush()
    (span,) = receiver.wait_for(lambda s: s.name == CHECK_SPAN)
    assert (span.trace_id, span.parent_span_id) == (TRACE_ID, PARENT_ID)


async def test_a_parent_that_was_not_sampled_is_respected(receiver: OtlpReceiver) -> None:
    assert tracing.configure(otel_env(receiver))
    unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"
    service = servicer(CheckTelemetry())
    await service.check(
        check_request(host=HOST, path="/public/c", headers={"traceparent": unsampled})
    )
    await service.check(check_request(host=HOST, path="/public/d"))
    tracing.force_flush()
    spans = receiver.wait_for(lambda s: s.name == CHECK_SPAN)
    assert [s.attributes["url.path"] for s in spans] == ["/public/d"]


async def test_child_spans_nest_and_record_errors(receiver: OtlpReceiver) -> None:
    assert tracing.configure(otel_env(receiver))

    async def failing() -> None:
        with tracing.span("inner"):
            await asyncio.sleep(0)
            raise RuntimeError("boom")

    with tracing.span("outer", {"k": "v"}) as outer:
        assert outer is not None
        with pytest.raises(RuntimeError):
            await failing()
    tracing.force_flush()
    spans = {s.name: s for s in receiver.wait_for(lambda s: True, count=2)}
    assert spans["inner"].parent_span_id == spans["outer"].span_id
    assert spans["inner"].trace_id == spans["outer"].trace_id
    assert spans["inner"].status_code == 2  # STATUS_CODE_ERROR
    assert spans["outer"].attributes == {"k": "v"}


def test_controller_lists_and_reconciles_become_spans(receiver: OtlpReceiver) -> None:
    class Counted:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def watch_event(self, event_type: str) -> None: ...
        def watch_restart(self, reason: str) -> None: ...
        def outage(self, active: bool) -> None: ...
        def listed(self, objects: int, seconds: float) -> None:
            self.calls.append("listed")

        def published(self, documents: int, seconds: float) -> None:
            self.calls.append("published")

        def status_write(self, reason: str, outcome: str) -> None: ...
        def leading(self, leader: bool) -> None: ...

    assert tracing.configure(otel_env(receiver))
    inner = Counted()
    observer = ControllerMetrics(Metrics(), inner)
    observer.listed(12, 0.5)
    observer.published(3, 0.25)
    tracing.force_flush()
    spans = {s.name: s for s in receiver.wait_for(lambda s: True, count=2)}
    assert spans["controller.reconcile"].attributes == {"authz.k8s.documents": 3}
    assert spans["controller.reconcile"].seconds == pytest.approx(0.25, abs=0.01)
    assert spans["controller.list"].attributes == {"authz.k8s.objects": 12}
    assert inner.calls == ["listed", "published"]  # still reported to the controller
