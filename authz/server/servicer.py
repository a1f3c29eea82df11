"""The ext_authz Check servicer: one snapshot per check, every error a deny.

Each check gets a decision id, reported once through the observer (metrics, decision log,
span attributes) and carried by the deny body, so all of them name the same decision. With
tracing on, the check runs inside a server span continuing the caller's trace.

Registered as a generic handler on Envoy's method path, so the request and response types can
be our own generated messages (see protos/authz/envoy/v3/ext_authz.proto).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace

import grpc
from opentelemetry.trace import Span

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.verify import Verifier
from authz.pipeline import decision as d
from authz.pipeline.mode import decide_in_mode
from authz.pipeline.request import CheckInput
from authz.policy.snapshot import Snapshot
from authz.ratelimit.limiter import Limiter
from authz.ratelimit.memory import MemoryLimiter
from authz.server.convert import to_check_input, to_check_response
from authz.server.observe import CheckObserver
from authz.telemetry import tracing

log = logging.getLogger(__name__)

SERVICE = "envoy.service.auth.v3.Authorization"
METHOD = "Check"
#: The server span of each check (OpenTelemetry's rpc naming: service/method).
CHECK_SPAN = f"{SERVICE}/{METHOD}"
_SPAN_ATTRIBUTES = {"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": METHOD}


class AuthorizationServicer:
    def __init__(
        self,
        *,
        snapshot: Callable[[], Snapshot],
        verifier: Verifier,
        observer: CheckObserver | None = None,
        limiter: Limiter | None = None,
        trusted_proxy_hops: int = 0,
    ) -> None:
        self._snapshot = snapshot
        self._verifier = verifier
        self._observer = observer
        self._limiter: Limiter = limiter if limiter is not None else MemoryLimiter()
        self._trusted_proxy_hops = trusted_proxy_hops

    async def check(
        self,
        request: pb.CheckRequest,
        context: grpc.aio.ServicerContext[pb.CheckRequest, pb.CheckResponse] | None = None,
    ) -> pb.CheckResponse:
        if not tracing.enabled():  # the common case: no span object is ever made
            return await self._check(request, None)
        metadata = context.invocation_metadata() if context is not None else None
        with tracing.server_span(
            CHECK_SPAN,
            headers=request.attributes.request.http.headers,
            metadata=metadata,
            attributes=_SPAN_ATTRIBUTES,
        ) as span:
            return await self._check(request, span)

    async def _check(self, request: pb.CheckRequest, span: Span | None) -> pb.CheckResponse:
        started = time.perf_counter()
        decision_id = secrets.token_hex(8)
        check_input: CheckInput | None = None
        try:
            check_input = to_check_input(request)
            decision = await decide_in_mode(
                self._snapshot(),
                check_input,
                verifier=self._verifier,
                now=time.time(),
                limiter=self._limiter,
                trusted_proxy_hops=self._trusted_proxy_hops,
            )
            decision = replace(decision, decision_id=decision_id)
            if self._observer is not None:
                self._observer.observe(
                    check_input, decision, seconds=time.perf_counter() - started, span=span
                )
            return to_check_response(decision)
        except Exception:
            log.exception("check failed; denying (decision %s)", decision_id)
            decision = replace(d.internal_error(), decision_id=decision_id)
            if self._observer is not None:
                try:
                    self._observer.observe(
                        check_input, decision, seconds=time.perf_counter() - started, span=span
                    )
                except Exception:
                    log.exception("reporting decision %s failed", decision_id)
            return to_check_response(decision)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: grpc.unary_unary_rpc_method_handler(
                    self.check,
                    request_deserializer=pb.CheckRequest.FromString,
                    response_serializer=pb.CheckResponse.SerializeToString,
                )
            },
        )
