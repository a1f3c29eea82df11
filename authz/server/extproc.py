"""The ext_proc Process servicer: response bodies redacted by scope, one stream per request.

Envoy's external processing filter, placed after ext_authz, opens one bidirectional stream per
HTTP request and sends what its processing mode asks for (README, Response protection):

- request headers: the policy and rule are found again from the request (pipeline.response).
  A rule without `responseBody`, or whose redactions this token's scopes all waive, answers
  with a mode override, so Envoy skips the response headers and body. (With the recommended
  filter wrapper such requests never get here: the check marks them and Envoy skips the
  filter, see server.convert.) A rule that redacts removes `accept-encoding` from the upstream request, so
  the body arrives uncompressed and can be read.
- response headers: a body that is not JSON (`application/json`, `*/*+json`), is compressed,
  or announces more than --response-body-max-bytes cannot be redacted: the stream answers 502
  at once (or, with `onUnparseable: passThrough`, lets it through unread).
- response body (BUFFERED, so whole): parsed, redacted, re-serialized, `content-length` set.

The scopes come from the check: ext_authz's allow answer carries the waiving scopes the token
grants in its dynamic metadata (see pipeline.steps.allow), which Envoy forwards here through
the filter's `metadata_options` - nothing a client sends can forge them. Without that metadata
every redaction applies (fail closed). A response that cannot be redacted is a decision: it is
reported like a check (decision log, metrics) with reason `response_unparseable`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import grpc

from authz import errors
from authz._gen.authz.envoy.ext_proc.v3 import ext_proc_pb2 as pb
from authz.pipeline import decision as d
from authz.pipeline.request import CheckInput
from authz.pipeline.response import response_rule
from authz.policy.redact import Redaction, Unparseable, redact_json
from authz.policy.snapshot import Snapshot
from authz.server.convert import deny_body
from authz.server.ids import DECISION_IDS
from authz.server.observe import CheckObserver

log = logging.getLogger(__name__)

SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
METHOD = "Process"
#: Where Envoy files ext_authz's dynamic metadata (the filter's canonical name).
EXT_AUTHZ_NAMESPACE = "envoy.filters.http.ext_authz"

_SKIP_RESPONSE = pb.ProcessingMode(
    response_header_mode=pb.ProcessingMode.SKIP,
    response_body_mode=pb.ProcessingMode.NONE,
    response_trailer_mode=pb.ProcessingMode.SKIP,
)
_SKIP_BODY = pb.ProcessingMode(
    response_body_mode=pb.ProcessingMode.NONE, response_trailer_mode=pb.ProcessingMode.SKIP
)
_CONTINUE = pb.CommonResponse()
_OVERWRITE = pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
#: Distinct passThrough warnings logged per process, at most.
_WARNED = 1024


#: The only headers read; repeated ones are joined with "," (so a duplicate cannot hide).
_READ = frozenset(
    {
        ":authority",
        "host",
        ":method",
        ":path",
        "x-request-id",
        "content-type",
        "content-encoding",
        "content-length",
    }
)


def _headers(message: pb.HttpHeaders) -> dict[str, str]:
    """The headers this servicer reads, names lower-cased; Envoy sends values in raw_value
    (bytes) or value."""
    out: dict[str, str] = {}
    for header in message.headers.headers:
        name = header.key.lower()
        if name not in _READ:
            continue
        value = header.raw_value.decode("latin-1") if header.raw_value else header.value
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.endswith("+json") and "/" in media)


def _granted(request: pb.ProcessingRequest) -> frozenset[str] | None:
    """The waiving scopes the check reported; None when the message carries no metadata."""
    metadata = request.metadata_context.filter_metadata
    if EXT_AUTHZ_NAMESPACE not in metadata:
        return None
    scopes = metadata[EXT_AUTHZ_NAMESPACE].fields.get("scopes")
    if scopes is None or not scopes.HasField("list_value"):
        return frozenset()
    return frozenset(v.string_value for v in scopes.list_value.values if v.string_value)


class _Stream:
    """One HTTP request's exchange: what the request headers decided, applied to the response."""

    def __init__(self, servicer: ExtProcServicer) -> None:
        self._servicer = servicer
        self._redactions: tuple[Redaction, ...] = ()
        self._pass = False
        self.request = CheckInput(method="", host="", raw_path="")
        self._where: tuple[str | None, str | None] = (None, None)

    def answer(self, request: pb.ProcessingRequest) -> pb.ProcessingResponse:
        kind = request.WhichOneof("request")
        try:
            if kind == "request_headers":
                return self._request_headers(request)
            if kind == "response_headers":
                return self._response_headers(request.response_headers)
            if kind == "response_body":
                return self._response_body(request.response_body)
        except Unparseable as exc:
            return self._unparseable(str(exc), phase=kind)
        if kind == "request_body":
            return pb.ProcessingResponse(request_body=pb.BodyResponse(response=_CONTINUE))
        if kind == "request_trailers":
            return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
        return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())

    def _request_headers(self, request: pb.ProcessingRequest) -> pb.ProcessingResponse:
        headers = _headers(request.request_headers)
        self.request = CheckInput(
            method=headers.get(":method", "").upper(),
            host=headers.get(":authority", headers.get("host", "")),
            raw_path=headers.get(":path", ""),
            request_id=headers.get("x-request-id", ""),
        )
        found = response_rule(
            self._servicer.snapshot(),
            method=self.request.method,
            authority=self.request.host,
            raw_path=self.request.raw_path,
        )
        body = found[1].response_body if found is not None else None
        if found is not None and body is not None:
            self._where = (found[0].key, found[1].name)
            self._redactions = body.redactions_for(_granted(request) or frozenset())
            self._pass = body.pass_unparseable
        if not self._redactions:
            return pb.ProcessingResponse(
                request_headers=pb.HeadersResponse(response=_CONTINUE), mode_override=_SKIP_RESPONSE
            )
        identity = pb.HeaderMutation(remove_headers=["accept-encoding"])
        return pb.ProcessingResponse(
            request_headers=pb.HeadersResponse(response=pb.CommonResponse(header_mutation=identity))
        )

    def _response_headers(self, message: pb.HttpHeaders) -> pb.ProcessingResponse:
        continued = pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=_CONTINUE))
        if not self._redactions or message.end_of_stream:
            return continued
        headers = _headers(message)
        if not _is_json(headers.get("content-type", "")):
            raise Unparseable("the response is not JSON")
        if headers.get("content-encoding", "identity").strip().lower() != "identity":
            raise Unparseable("the response body is compressed")
        length = headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > self._servicer.max_body_bytes:
            raise Unparseable("the response body exceeds the size limit")
        return continued

    def _response_body(self, message: pb.HttpBody) -> pb.ProcessingResponse:
        if not self._redactions:
            return pb.ProcessingResponse(response_body=pb.BodyResponse(response=_CONTINUE))
        if not message.end_of_stream:
            raise Unparseable("the response body did not arrive whole (use BUFFERED mode)")
        if len(message.body) > self._servicer.max_body_bytes:
            raise Unparseable("the response body exceeds the size limit")
        body = redact_json(message.body, self._redactions)
        length = pb.HeaderValueOption(
            header=pb.HeaderValue(key="content-length", raw_value=str(len(body)).encode()),
            append_action=_OVERWRITE,
        )
        return pb.ProcessingResponse(
            response_body=pb.BodyResponse(
                response=pb.CommonResponse(
                    status=pb.CommonResponse.CONTINUE_AND_REPLACE,
                    header_mutation=pb.HeaderMutation(set_headers=[length]),
                    body_mutation=pb.BodyMutation(body=body),
                )
            )
        )

    def _unparseable(self, description: str, *, phase: str) -> pb.ProcessingResponse:
        policy, rule = self._where
        if self._pass:
            self._servicer.warn_once(policy, rule, description)
            self._redactions = ()
            if phase == "response_body":
                return pb.ProcessingResponse(response_body=pb.BodyResponse(response=_CONTINUE))
            return pb.ProcessingResponse(
                response_headers=pb.HeadersResponse(response=_CONTINUE), mode_override=_SKIP_BODY
            )
        return self._servicer.refuse(
            d.deny(502, errors.RESPONSE_UNPARSEABLE, description, policy=policy, rule=rule),
            self.request,
        )


class ExtProcServicer:
    """Answers Process streams against `snapshot()` (the check's policy store)."""

    def __init__(
        self,
        *,
        snapshot: Callable[[], Snapshot],
        max_body_bytes: int,
        observer: CheckObserver | None = None,
        decision_ids: Callable[[], str] = DECISION_IDS,
    ) -> None:
        self.snapshot = snapshot
        self.max_body_bytes = max_body_bytes
        self._observer = observer
        self._ids = decision_ids
        self._warned: set[tuple[str | None, str | None, str]] = set()

    def warn_once(self, policy: str | None, rule: str | None, description: str) -> None:
        """A passThrough rule let an unreadable response by: worth a line, not one per request
        (a misbehaving upstream would flood the log). At most _WARNED distinct lines."""
        key = (policy, rule, description)
        if key in self._warned or len(self._warned) >= _WARNED:
            return
        self._warned.add(key)
        log.warning(
            "%s/%s: %s; passed through unredacted (onUnparseable: passThrough; said once)",
            policy,
            rule,
            description,
        )

    def stream(self) -> _Stream:
        """The state of one Process stream (tests drive it message by message)."""
        return _Stream(self)

    def refuse(self, decision: d.Decision, request: CheckInput) -> pb.ProcessingResponse:
        """An immediate error response for the client, reported like a denied check."""
        decision_id = self._ids()
        if self._observer is not None:
            try:
                self._observer.observe(
                    request, decision, decision_id=decision_id, seconds=0.0, span=None
                )
            except Exception:
                log.exception("reporting decision %s failed", decision_id)
        headers = pb.HeaderMutation(
            set_headers=[
                pb.HeaderValueOption(
                    header=pb.HeaderValue(key=name, raw_value=value.encode()),
                    append_action=_OVERWRITE,
                )
                for name, value in (
                    ("content-type", "application/json"),
                    ("x-authz-decision-id", decision_id),
                )
            ]
        )
        return pb.ProcessingResponse(
            immediate_response=pb.ImmediateResponse(
                status=pb.HttpStatus(code=decision.status),
                headers=headers,
                body=deny_body(decision, decision_id=decision_id).encode(),
                details=decision.reason,
            )
        )

    async def process(
        self,
        requests: AsyncIterator[pb.ProcessingRequest],
        _context: grpc.aio.ServicerContext[pb.ProcessingRequest, pb.ProcessingResponse],
    ) -> AsyncIterator[pb.ProcessingResponse]:
        stream = _Stream(self)
        async for request in requests:
            try:
                answer = stream.answer(request)
            except Exception:
                log.exception("ext_proc failed; answering with an error (fail closed)")
                yield self.refuse(d.internal_error(), stream.request)
                return
            yield answer

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: grpc.stream_stream_rpc_method_handler(
                    self.process,
                    request_deserializer=pb.ProcessingRequest.FromString,
                    response_serializer=pb.ProcessingResponse.SerializeToString,
                )
            },
        )
