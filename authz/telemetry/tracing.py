"""OpenTelemetry tracing, configured only by the standard OTEL_* environment variables.

Tracing is off unless an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and OTEL_TRACES_EXPORTER is not "none". Off means free:
`enabled()` is one global read, `span()` returns a shared null context, and the check path
creates no span objects at all: the check path's cost is counted in microseconds.

The tracer provider is ours, not OpenTelemetry's process-global one, so `configure` can be
called again (tests do) and nothing else in the process changes behaviour by importing the SDK.

Parents come from the caller: `server_span` extracts a context first from the gRPC metadata
(Envoy's ext_authz client injects its egress span there when Envoy traces) and then from the
CheckRequest's HTTP headers (the client's own traceparent/tracestate, or b3 when
OTEL_PROPAGATORS names it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from urllib.parse import unquote

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from authz import __version__
from authz.errors import ConfigError

log = logging.getLogger(__name__)

Attributes = Mapping[str, AttributeValue]

#: The instrumentation scope of every span the sidecar makes.
SCOPE = "authz"
DEFAULT_SERVICE_NAME = "authz"

_NULL: AbstractContextManager[None] = contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class _Tracing:
    provider: TracerProvider
    tracer: Tracer
    propagator: TextMapPropagator
    endpoint: str
    protocol: str


_state: _Tracing | None = None


def enabled() -> bool:
    """True when spans are recorded and exported. The check path tests this before anything."""
    return _state is not None


def span(
    name: str, attributes: Attributes | None = None, *, kind: SpanKind = SpanKind.INTERNAL
) -> AbstractContextManager[Span | None]:
    """A child span of the current one (e.g. a JWKS fetch, a Redis call, a reconcile).

    With tracing off this returns a shared null context: no span object, nothing allocated.
    Exceptions escaping the block are recorded on the span and mark it as an error.
    """
    state = _state
    if state is None:
        return _NULL
    return state.tracer.start_as_current_span(name, attributes=attributes, kind=kind)


def _metadata_carrier(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str):  # binary (-bin) metadata never carries a trace context
            carrier[key.lower()] = value
    return carrier


def extract(
    headers: Mapping[str, str], metadata: Iterable[tuple[str, str | bytes]] | None = None
) -> Context | None:
    """The caller's trace context: gRPC metadata first (Envoy's own span), then HTTP headers."""
    state = _state
    if state is None:
        return None
    for carrier in (_metadata_carrier(metadata), headers):
        if not carrier:
            continue
        context = state.propagator.extract(carrier)
        if trace.get_current_span(context).get_span_context().is_valid:
            return context
    return None


@contextlib.contextmanager
def server_span(
    name: str,
    *,
    headers: Mapping[str, str],
    metadata: Iterable[tuple[str, str | bytes]] | None = None,
    attributes: Attributes | None = None,
) -> Iterator[Span]:
    """A SERVER span continuing the caller's trace, current for the block (children nest in it).

    Callers check `enabled()` first; with tracing off this yields a non-recording span.
    """
    state = _state
    if state is None:
        yield trace.INVALID_SPAN
        return
    parent = extract(headers, metadata)
    with state.tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.SERVER, attributes=attributes
    ) as current:
        yield current


def trace_id(current: Span | None) -> str | None:
    """The W3C hex trace id of a recording span, for log lines; None otherwise."""
    if current is None:
        return None
    context = current.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


# --- configuration --------------------------------------------------------------------------


def _first(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return ""


def _sampler(env: Mapping[str, str]) -> sampling.Sampler:
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    raw_arg = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    ratio = 1.0
    if raw_arg:
        try:
            ratio = float(raw_arg)
        except ValueError:
            raise ConfigError(
                f"OTEL_TRACES_SAMPLER_ARG: expected a number, got {raw_arg!r}"
            ) from None
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG: expected 0..1, got {raw_arg!r}")
    samplers: dict[str, sampling.Sampler] = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        raise ConfigError(
            f"OTEL_TRACES_SAMPLER: unknown sampler {name!r} (known: {', '.join(samplers)})"
        )
    return samplers[name]


def _resource(env: Mapping[str, str]) -> Resource:
    attributes: dict[str, AttributeValue] = {
        "service.name": DEFAULT_SERVICE_NAME,
        "service.version": __version__,
    }
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attributes[unquote(key.strip())] = unquote(value.strip())
    service = env.get("OTEL_SERVICE_NAME", "").strip()
    if service:
        attributes["service.name"] = service
    return Resource.create(attributes)


def _propagator(env: Mapping[str, str]) -> TextMapPropagator:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    known: dict[str, type[TextMapPropagator]] = {
        "tracecontext": TraceContextTextMapPropagator,
        "baggage": W3CBaggagePropagator,
        "b3": B3SingleFormat,
        "b3multi": B3MultiFormat,
    }
    chosen: list[TextMapPropagator] = []
    for name in env.get("OTEL_PROPAGATORS", "tracecontext,baggage").split(","):
        name = name.strip().lower()
        if not name or name == "none":
            continue
        if name not in known:
            raise ConfigError(
                f"OTEL_PROPAGATORS: unknown propagator {name!r} (known: {', '.join(known)}, none)"
            )
        chosen.append(known[name]())
    return CompositePropagator(chosen)


def _exporter(env: Mapping[str, str]) -> tuple[SpanExporter, str, str] | None:
    """The OTLP exporter the environment asks for, or None when tracing stays off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters = [e for e in exporters if e]
    if not exporters or exporters == ["none"]:
        return None
    unknown = [e for e in exporters if e not in ("otlp", "none")]
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not supported (use otlp or none; "
            "stdout carries the decision log)"
        )
    signal_endpoint = _first(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base_endpoint = _first(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if not signal_endpoint and not base_endpoint:
        return None
    protocol = _first(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = protocol.lower() or "grpc"
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        endpoint = signal_endpoint or base_endpoint
        return GrpcExporter(endpoint=endpoint), endpoint, protocol
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        endpoint = signal_endpoint or base_endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=endpoint), endpoint, protocol
    raise ConfigError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (use grpc or http/protobuf)"
    )


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on or off from the environment (default os.environ); returns whether it is on.

    Raises ConfigError naming the variable when a value is unusable. Spans are exported in
    batches off the check path (OTEL_BSP_* tune the batching).
    """
    env = os.environ if env is None else env
    chosen = _exporter(env)
    shutdown()
    if chosen is None:
        return False
    exporter, endpoint, protocol = chosen
    provider = TracerProvider(sampler=_sampler(env), resource=_resource(env))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    global _state
    _state = _Tracing(
        provider=provider,
        tracer=provider.get_tracer(SCOPE, __version__),
        propagator=_propagator(env),
        endpoint=endpoint,
        protocol=protocol,
    )
    log.info("tracing: exporting spans over OTLP/%s to %s", protocol, endpoint)
    return True


def shutdown() -> None:
    """Export what is buffered and turn tracing off."""
    global _state
    state, _state = _state, None
    if state is not None:
        state.provider.shutdown()


def force_flush(timeout_millis: int = 5000) -> bool:
    """Export buffered spans now (tests; shutdown does it too)."""
    state = _state
    return state.provider.force_flush(timeout_millis) if state is not None else True


def mark_error(message: str) -> None:
    """Mark the current span (if any is recording) as failed, e.g. a fetch that was handled."""
    if _state is not None:
        trace.get_current_span().set_status(trace.Status(trace.StatusCode.ERROR, message))


def record_span(name: str, *, seconds: float, attributes: Attributes | None = None) -> None:
    """Record a span that just ended after `seconds`, for work reported after the fact (a
    controller reconcile reports its duration through an observer). Free with tracing off."""
    state = _state
    if state is None:
        return
    end = time.time_ns()
    done = state.tracer.start_span(name, attributes=attributes, start_time=end - int(seconds * 1e9))
    done.end(end_time=end)
