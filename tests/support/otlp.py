"""A real OTLP/gRPC trace receiver for tests: opentelemetry-proto's TraceService on a free port.

What an OpenTelemetry Collector's OTLP receiver does, minus the pipeline: it accepts
ExportTraceServiceRequests over gRPC (from the sidecar's OTLP exporter, or from Envoy's
OpenTelemetry tracer), keeps them, and lets a test wait for the spans it expects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tsvc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.procs import free_port
from tests.support.wait import TIMEOUT, wait_for

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, with ids as lower-case hex like W3C traceparent writes them."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    seconds: float


class OtlpReceiver:
    """Collects every span exported to it; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.requests: list[tsvc.ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(
            self._export,
            request_deserializer=tsvc.ExportTraceServiceRequest.FromString,
            response_serializer=tsvc.ExportTraceServiceResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, {"Export": handler})]
        )
        if self._server.add_insecure_port(f"127.0.0.1:{self.port}") != self.port:
            raise RuntimeError(f"OTLP receiver could not bind 127.0.0.1:{self.port}")
        self._server.start()

    def _export(
        self, request: tsvc.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> tsvc.ExportTraceServiceResponse:
        with self._lock:
            self.requests.append(request)
            self.metadata.append({k: str(v) for k, v in context.invocation_metadata()})
        return tsvc.ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self.requests)
        found: list[ReceivedSpan] = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            ReceivedSpan(
                                service=str(resource.get("service.name", "")),
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                kind=span.kind,
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                status_code=span.status.code,
                                seconds=(span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
                            )
                        )
        return found

    def wait_for(
        self, match: Callable[[ReceivedSpan], bool], *, count: int = 1, timeout: float = TIMEOUT
    ) -> list[ReceivedSpan]:
        """The spans that match, once at least `count` arrived; fails loudly after `timeout`."""

        def enough() -> list[ReceivedSpan] | None:
            matching = [s for s in self.spans() if match(s)]
            return matching if len(matching) >= count else None

        def described() -> str:
            names = sorted({(s.service, s.name) for s in self.spans()})
            return f"{count} matching span(s) (received: {names})"

        return wait_for(enough, what=described, within=timeout)

    def stop(self) -> None:
        self._server.stop(0)
