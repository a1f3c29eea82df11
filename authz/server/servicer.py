"""The ext_authz Check servicer: one snapshot per check, every error a deny.

Each check gets a decision id, reported once through the observer (metrics, decision log,
span attributes) and carried by the deny body, so all of them name the same decision. With
tracing on, the check runs inside a server span continuing the caller's trace.

Registered on Envoy's method path with our own generated messages (see
protos/authz/envoy/v3/ext_authz.proto): as bytes in, bytes out on the h2 engine
(`check_wire`), as a generic handler on the grpcio engine (`handler`). Allow answers come
serialized from a cache keyed by the decision (see server.convert.AllowResponses); deny
answers carry the decision id and are built per check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.trace import Span

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.verify import Verifier
from authz.pipeline import decision as d
from authz.pipeline.decide import decide_now
from authz.pipeline.request import CheckInput
from authz.policy.snapshot import Snapshot
from authz.ratelimit.blocks import BlockStore
from authz.ratelimit.limiter import Limiter
from authz.server.convert import AllowResponses, to_check_input, to_check_response
from authz.server.grpcwire import Metadata, RpcError, Status
from authz.server.ids import DECISION_IDS
from authz.server.observe import CheckObserver
from authz.telemetry import tracing

log = logging.getLogger(__name__)

SERVICE = "envoy.service.auth.v3.Authorization"
METHOD = "Check"
#: The server span of each check (OpenTelemetry's rpc naming: service/method).
CHECK_SPAN = f"{SERVICE}/{METHOD}"
_SPAN_ATTRIBUTES = {"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": METHOD}

#: A check's answer: serialized (a cached allow) or a message (everything else).
Answer = bytes | pb.CheckResponse


class CallContext(Protocol):
    """The part of a gRPC call context the servicer reads (grpc.aio's, or the h2 engine's)."""

    def invocation_metadata(self) -> Iterable[tuple[str, str | bytes]] | None: ...


class _WireContext:
    __slots__ = ("_metadata",)

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> Metadata:
        return self._metadata


def _serialize(answer: Answer) -> bytes:
    return answer if isinstance(answer, bytes) else answer.SerializeToString()


@dataclass(kw_only=True, slots=True, eq=False)
class AuthorizationServicer:
    """Answers checks against `snapshot()`. The limiter is the service's own (memory or Redis):
    a servicer that made up a private one would silently ignore the configured backend."""

    snapshot: Callable[[], Snapshot]
    verifier: Verifier
    limiter: Limiter
    block_store: BlockStore | None = None
    observer: CheckObserver | None = None
    trusted_proxy_hops: int = 0
    decision_ids: Callable[[], str] = DECISION_IDS
    _allows: AllowResponses = field(default_factory=AllowResponses, init=False)

    async def check(
        self, request: pb.CheckRequest, context: CallContext | None = None
    ) -> pb.CheckResponse:
        """The answer as a message (tests, tools); the servers use the methods below."""
        answer = await self._answer(request, context)
        return pb.CheckResponse.FromString(answer) if isinstance(answer, bytes) else answer

    def check_wire(
        self, message: bytes, metadata: Metadata, _send: Callable[[bytes], None]
    ) -> bytes | Awaitable[bytes]:
        """The h2 engine's handler: a serialized CheckRequest in, a serialized answer out - at
        once when nothing in the check waits (see pipeline.decide.decide_now), else later."""
        try:
            request = pb.CheckRequest.FromString(message)
        except DecodeError:
            raise RpcError(Status.INVALID_ARGUMENT, "malformed CheckRequest") from None
        if tracing.enabled():
            return self._wire_later(self._answer(request, _WireContext(metadata)))
        answer = self._check(request, None)
        if isinstance(answer, bytes | pb.CheckResponse):
            return _serialize(answer)
        return self._wire_later(answer)

    async def _wire_later(self, answer: Awaitable[Answer]) -> bytes:
        return _serialize(await answer)

    async def _answer(self, request: pb.CheckRequest, context: CallContext | None) -> Answer:
        span: Span | None = None
        if not tracing.enabled():  # the common case: no span object is ever made
            answer = self._check(request, span)
            return answer if isinstance(answer, bytes | pb.CheckResponse) else await answer
        metadata = context.invocation_metadata() if context is not None else None
        with tracing.server_span(
            CHECK_SPAN,
            headers=request.attributes.request.http.headers,
            metadata=metadata,
            attributes=_SPAN_ATTRIBUTES,
        ) as span:
            answer = self._check(request, span)
            return answer if isinstance(answer, bytes | pb.CheckResponse) else await answer

    def _check(self, request: pb.CheckRequest, span: Span | None) -> Answer | Awaitable[Answer]:
        started = time.perf_counter()
        decision_id = self.decision_ids()
        check_input: CheckInput | None = None
        try:
            check_input = to_check_input(request)
            decision = decide_now(
                self.snapshot(),
                check_input,
                verifier=self.verifier,
                now=time.time(),
                limiter=self.limiter,
                trusted_proxy_hops=self.trusted_proxy_hops,
                block_store=self.block_store,
            )
        except Exception:
            return self._failed(check_input, decision_id, started, span)
        if isinstance(decision, d.Decision):
            return self._respond(check_input, decision, decision_id, started, span)
        return self._respond_later(check_input, decision, decision_id, started, span)

    async def _respond_later(
        self,
        check_input: CheckInput,
        waiting: Awaitable[d.Decision],
        decision_id: str,
        started: float,
        span: Span | None,
    ) -> Answer:
        try:
            decision = await waiting
        except Exception:
            return self._failed(check_input, decision_id, started, span)
        return self._respond(check_input, decision, decision_id, started, span)

    def _respond(
        self,
        check_input: CheckInput,
        decision: d.Decision,
        decision_id: str,
        started: float,
        span: Span | None,
    ) -> Answer:
        try:
            self._report(check_input, decision, decision_id, started, span)
            if decision.allowed or decision.dry_run:
                return self._allows.get(decision)
            return to_check_response(decision, decision_id=decision_id)
        except Exception:
            return self._failed(check_input, decision_id, started, span)

    def _failed(
        self, check_input: CheckInput | None, decision_id: str, started: float, span: Span | None
    ) -> pb.CheckResponse:
        """Every error in a check is a deny: internal_error, reported like any decision."""
        log.exception("check failed; denying (decision %s)", decision_id)
        decision = d.internal_error()
        try:
            self._report(check_input, decision, decision_id, started, span)
        except Exception:
            log.exception("reporting decision %s failed", decision_id)
        return to_check_response(decision, decision_id=decision_id)

    def _report(
        self,
        check_input: CheckInput | None,
        decision: d.Decision,
        decision_id: str,
        started: float,
        span: Span | None,
    ) -> None:
        if self.observer is not None:
            self.observer.observe(
                check_input,
                decision,
                decision_id=decision_id,
                seconds=time.perf_counter() - started,
                span=span,
            )

    async def _check_grpcio(
        self,
        request: pb.CheckRequest,
        context: grpc.aio.ServicerContext[pb.CheckRequest, bytes],
    ) -> Answer:
        return await self._answer(request, context)

    def handler(self) -> grpc.GenericRpcHandler:
        """The grpcio engine's handler (authz.server.grpc_server)."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: grpc.unary_unary_rpc_method_handler(
                    self._check_grpcio,
                    request_deserializer=pb.CheckRequest.FromString,
                    response_serializer=_serialize,
                )
            },
        )
