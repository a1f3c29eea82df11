"""CheckRequest -> CheckInput and Decision -> CheckResponse: pure functions, no I/O.

An allow answer is a function of the decision alone (it carries no decision id), and with a
warm token cache the same caller gets the same decision again and again: AllowResponses keeps
the serialized answer per decision, so building it (a protobuf Struct and header options,
about 8 µs) happens once per caller instead of once per check.

Every allow answer also says whether Envoy's ext_proc filter may skip the request: the header
EXT_PROC_HEADER is set when nothing of the response is to be redacted and removed otherwise, so
a client cannot send it (README, Response protection).
"""

from __future__ import annotations

import json

from google.protobuf.struct_pb2 import Struct

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.policy.snapshot import normalize_request_host

_OVERWRITE = pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
# google.rpc.Code values.
_GRPC_CODE = {400: 3, 401: 16, 403: 7, 429: 8, 503: 14}
_PERMISSION_DENIED = 7
_OK = pb.RpcStatus(code=0)
#: Set on allowed requests whose response needs no redaction (Envoy then skips ext_proc), and
#: removed from every other request, so a client cannot send it.
EXT_PROC_HEADER = "x-authz-ext-proc"


_SKIP_EXT_PROC = pb.HeaderValueOption(
    header=pb.HeaderValue(key=EXT_PROC_HEADER, value="skip"), append_action=_OVERWRITE
)


def to_check_input(request: pb.CheckRequest) -> CheckInput:
    attributes = request.attributes
    http = attributes.request.http
    headers = http.headers
    authority = http.host or headers.get(":authority") or headers.get("host", "")
    return CheckInput(
        method=http.method.upper(),
        host=normalize_request_host(authority),
        raw_path=http.path or headers.get(":path", ""),
        headers=headers,
        source_ip=attributes.source.address.socket_address.address,
        request_id=headers.get("x-request-id") or http.id,  # what the upstream logs too
        scheme=http.scheme or headers.get(":scheme", ""),
        authority=authority,
        peer_certificate=attributes.source.certificate,
    )


def _option(name: str, value: str) -> pb.HeaderValueOption:
    return pb.HeaderValueOption(
        header=pb.HeaderValue(key=name, value=value), append_action=_OVERWRITE
    )


def deny_body(decision: Decision, *, decision_id: str | None = None) -> str:
    return json.dumps(
        {
            "error": decision.reason,
            "error_description": decision.description,
            "decision_id": decision.decision_id if decision_id is None else decision_id,
        }
    )


def to_check_response(decision: Decision, *, decision_id: str | None = None) -> pb.CheckResponse:
    """The answer to Envoy; `decision_id` (default: the decision's own) goes into a denial."""
    if decision.allowed or decision.dry_run:
        metadata = Struct()
        metadata.update({"policy": decision.policy or "", "rule": decision.rule or ""})
        if decision.subject is not None:
            metadata["subject"] = decision.subject
        if decision.dry_run:
            metadata["dry_run"] = True
        if decision.scopes:
            metadata["scopes"] = list(decision.scopes)

        # A dry-run would-be denial is allowed; its challenge headers are not sent.
        response_headers = decision.response_headers if decision.allowed else ()
        return pb.CheckResponse(
            status=_OK,
            ok_response=pb.OkHttpResponse(
                headers=[
                    *(_option(n, v) for n, v in decision.set_headers),
                    *((_SKIP_EXT_PROC,) if decision.allowed and not decision.redacts else ()),
                ],
                headers_to_remove=[
                    *decision.remove_headers,
                    *(() if decision.allowed and not decision.redacts else (EXT_PROC_HEADER,)),
                ],
                response_headers_to_add=[_option(n, v) for n, v in response_headers],
                query_parameters_to_set=[
                    pb.QueryParameter(key=k, value=v) for k, v in decision.set_query
                ],
                query_parameters_to_remove=decision.remove_query,
            ),
            dynamic_metadata=metadata,
        )
    if decision_id is None:
        decision_id = decision.decision_id
    headers = [
        _option("content-type", "application/json"),
        _option("x-authz-decision-id", decision_id),
        *(_option(n, v) for n, v in decision.response_headers),
    ]
    return pb.CheckResponse(
        status=pb.RpcStatus(
            code=_GRPC_CODE.get(decision.status, _PERMISSION_DENIED), message=decision.reason
        ),
        denied_response=pb.DeniedHttpResponse(
            status=pb.HttpStatus(code=decision.status),
            headers=headers,
            body=deny_body(decision, decision_id=decision_id),
        ),
    )


class AllowResponses:
    """Serialized allow answers by decision; at most `size` kept (all dropped when full)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._answers: dict[Decision, bytes] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, decision: Decision) -> bytes:
        answer = self._answers.get(decision)
        if answer is None:
            if len(self._answers) >= self._size:
                self._answers.clear()
            answer = to_check_response(decision).SerializeToString()
            self._answers[decision] = answer
        return answer
