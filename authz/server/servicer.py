"""The ext_authz Check servicer: one snapshot per check, every error a deny.

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

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.verify import Verifier
from authz.pipeline import decision as d
from authz.pipeline.decide import decide
from authz.policy.snapshot import Snapshot
from authz.server.convert import to_check_input, to_check_response

log = logging.getLogger(__name__)

SERVICE = "envoy.service.auth.v3.Authorization"
METHOD = "Check"


class AuthorizationServicer:
    def __init__(self, *, snapshot: Callable[[], Snapshot], verifier: Verifier) -> None:
        self._snapshot = snapshot
        self._verifier = verifier

    async def check(
        self,
        request: pb.CheckRequest,
        context: grpc.aio.ServicerContext[pb.CheckRequest, pb.CheckResponse] | None = None,
    ) -> pb.CheckResponse:
        decision_id = secrets.token_hex(8)
        try:
            decision = await decide(
                self._snapshot(), to_check_input(request), verifier=self._verifier, now=time.time()
            )
            return to_check_response(replace(decision, decision_id=decision_id))
        except Exception:
            log.exception("check failed; denying (decision %s)", decision_id)
            return to_check_response(replace(d.internal_error(), decision_id=decision_id))

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
