"""The admin API (authz.v1.Admin) on its own listener: Explain, ListPolicies, Revoke and
ListRevocations, and the brute-force blocks (ListBlocks, ClearBlocks).

Explain answers "why was this request denied?" from the very code that decides real requests
(pipeline.decide, with a Trace recording each step, the policy's mode included), against the
current snapshot, without side effects: no quota is consumed, nothing is logged or counted. Its
request carries headers, tokens included, so the listener defaults to loopback and nothing here
logs a header.

Revoke adds to the verifier's revocation list, so the next check refuses the token, and with
--redis-url shares it with every replica (authz.sharedrevocations); `shared: false` in the
answer says it applies to this process only.

Registered as generic handlers, like the ext_authz servicer, so no grpc stubs are generated.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import grpc
from google.protobuf.message import Message

from authz._gen.authz.v1 import admin_pb2 as apb
from authz.jwt.revocation import JTI, SUBJECT, Revocation, RevocationError
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.compile import MODE_DRY_RUN, MODE_ENFORCE
from authz.policy.snapshot import Snapshot, normalize_request_host
from authz.ratelimit.blocks import BlockStore, split_key
from authz.ratelimit.limiter import Limiter
from authz.server.grpc_server import bind
from authz.server.listen import ListenAddress
from authz.server.tls import ServerTls

log = logging.getLogger(__name__)

SERVICE = "authz.v1.Admin"
_OUTCOMES = {
    "pass": apb.PASS,
    "fail": apb.FAIL,
    "skip": apb.SKIP,
    "info": apb.INFO,
}


@dataclass(frozen=True, kw_only=True)
class AdminServicer:
    snapshot: Callable[[], Snapshot]
    verifier: Verifier
    limiter: Limiter | None = None
    trusted_proxy_hops: int = 0
    #: Why this process cannot revoke (its checks run elsewhere); None when it can.
    revoke_refusal: str | None = None
    block_store: BlockStore | None = None
    clock: Callable[[], float] = time.time

    async def explain(
        self,
        request: apb.ExplainRequest,
        context: grpc.aio.ServicerContext[apb.ExplainRequest, apb.ExplainResponse],
    ) -> apb.ExplainResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        authority = request.host or headers.get(":authority") or headers.get("host", "")
        if not authority:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "host is required")
        if not request.path:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "path is required")
        snapshot = self.snapshot()
        check = CheckInput(
            method=(request.method or "GET").upper(),
            host=normalize_request_host(authority),
            raw_path=request.path,
            headers=headers,
            source_ip=request.source_ip,
            # A DPoP proof names the URL: the scheme comes as the ":scheme" header here.
            scheme=headers.get(":scheme", ""),
            authority=authority,
        )
        trace = Trace()
        decision = await decide(
            snapshot,
            check,
            verifier=self.verifier,
            now=self.clock(),
            trace=trace,
            limiter=self.limiter,
            trusted_proxy_hops=self.trusted_proxy_hops,
            consume=False,  # explaining a request must not use up its quota
            block_store=self.block_store,
        )
        return apb.ExplainResponse(
            allowed=decision.allowed,
            reason=decision.reason,
            http_status=decision.status,
            description=decision.description,
            policy=decision.policy or "",
            rule=decision.rule or "",
            steps=[
                apb.Step(
                    name=s.name,
                    outcome=_OUTCOMES.get(s.outcome, apb.OUTCOME_UNSPECIFIED),
                    detail=s.detail,
                )
                for s in trace.steps
            ],
            set_headers=[apb.Header(name=n, value=v) for n, v in decision.set_headers],
            remove_headers=decision.remove_headers,
            response_headers=[apb.Header(name=n, value=v) for n, v in decision.response_headers],
            dry_run=decision.dry_run,
            subject=decision.subject or "",
            snapshot_serial=snapshot.serial,
        )

    async def list_policies(
        self,
        request: apb.ListPoliciesRequest,
        context: grpc.aio.ServicerContext[apb.ListPoliciesRequest, apb.ListPoliciesResponse],
    ) -> apb.ListPoliciesResponse:
        snapshot = self.snapshot()
        served = {policy.key: policy for policy in snapshot.policies}
        statuses = []
        for state in snapshot.states:
            policy = served.get(state.key) if state.serving else None
            statuses.append(
                apb.PolicyStatus(
                    name=state.key,
                    source=state.location,
                    state=str(state.state),
                    message=state.message,
                    serving=state.serving,
                    generation=state.generation or 0,
                    hosts=policy.hosts if policy is not None else (),
                    mode=(MODE_DRY_RUN if policy.dry_run else MODE_ENFORCE) if policy else "",
                )
            )
        return apb.ListPoliciesResponse(policies=statuses, snapshot_serial=snapshot.serial)

    async def revoke(
        self,
        request: apb.RevokeRequest,
        context: grpc.aio.ServicerContext[apb.RevokeRequest, apb.RevokeResponse],
    ) -> apb.RevokeResponse:
        if self.revoke_refusal is not None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, self.revoke_refusal)
        if bool(request.jti) == bool(request.subject):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "set exactly one of jti, subject")
        kind, value = (JTI, request.jti) if request.jti else (SUBJECT, request.subject)
        now = time.time()
        until = request.until or _longest_life(self.snapshot(), request.issuer, now)
        try:
            entry = self.verifier.revocations.revoke(
                kind=kind, value=value, issuer=request.issuer, now=now, until=until
            )
        except RevocationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        publish = self.verifier.revocations.publish
        shared = await publish(entry) if publish is not None else False
        log.info(
            "revoked by %s (issuer %s) until %d%s",
            kind,
            entry.issuer or "any",
            entry.until,
            "" if shared else " (this replica only)",
        )
        return apb.RevokeResponse(revocation=_revocation(entry), shared=shared)

    async def list_revocations(
        self,
        request: apb.ListRevocationsRequest,
        context: grpc.aio.ServicerContext[apb.ListRevocationsRequest, apb.ListRevocationsResponse],
    ) -> apb.ListRevocationsResponse:
        entries = self.verifier.revocations.entries(time.time())
        shared = self.verifier.revocations.publish is not None
        return apb.ListRevocationsResponse(
            revocations=[_revocation(e) for e in entries], shared=shared
        )

    async def list_blocks(
        self,
        request: apb.ListBlocksRequest,
        context: grpc.aio.ServicerContext[apb.ListBlocksRequest, apb.ListBlocksResponse],
    ) -> apb.ListBlocksResponse:
        if self.block_store is None:
            return apb.ListBlocksResponse()
        now_ms = int(self.clock() * 1000)
        out = []
        for block in await self.block_store.blocks(now_ms):
            policy, protection, value = split_key(block.key)
            out.append(
                apb.BlockInfo(
                    key=block.key,
                    policy=policy,
                    protection=protection,
                    value=value,
                    until_unix_ms=block.until_ms,
                    seconds_left=math.ceil((block.until_ms - now_ms) / 1000),
                )
            )
        return apb.ListBlocksResponse(blocks=out)

    async def clear_blocks(
        self,
        request: apb.ClearBlocksRequest,
        context: grpc.aio.ServicerContext[apb.ClearBlocksRequest, apb.ClearBlocksResponse],
    ) -> apb.ClearBlocksResponse:
        if not request.key:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "key is required")
        if self.block_store is None:
            return apb.ClearBlocksResponse()
        try:
            cleared = await self.block_store.clear(request.key)
        except Exception as exc:  # the shared store is away: say so rather than pretend
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"the block store failed: {exc!s:.200}"
            )
        log.info("admin: cleared %d brute-force block(s) matching %r", cleared, request.key)
        return apb.ClearBlocksResponse(cleared=cleared)

    def handler(self) -> grpc.GenericRpcHandler:
        methods: dict[str, tuple[Callable[..., Awaitable[Message]], type[Message]]] = {
            "Explain": (self.explain, apb.ExplainRequest),
            "ListPolicies": (self.list_policies, apb.ListPoliciesRequest),
            "Revoke": (self.revoke, apb.RevokeRequest),
            "ListRevocations": (self.list_revocations, apb.ListRevocationsRequest),
            "ListBlocks": (self.list_blocks, apb.ListBlocksRequest),
            "ClearBlocks": (self.clear_blocks, apb.ClearBlocksRequest),
        }
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    method,
                    request_deserializer=request.FromString,
                    response_serializer=_serialize,
                )
                for name, (method, request) in methods.items()
            },
        )


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _longest_life(snapshot: Snapshot, issuer: str, now: float) -> float | None:
    """When every token a new entry could match has expired: now plus the longest
    maxTokenLifetime (and leeway) of the issuers it names, or None (the default) when one of
    them does not bound its tokens' lifetime."""
    longest = 0.0
    for policy in snapshot.policies:
        for spec in policy.issuers.values():
            if issuer and spec.issuer != issuer:
                continue
            if spec.max_lifetime is None:
                return None
            longest = max(longest, spec.max_lifetime + spec.leeway)
    return now + longest if longest else None


def _revocation(entry: Revocation) -> apb.Revocation:
    """The message has the dataclass's fields, by the same names."""
    return apb.Revocation(**asdict(entry))


class AdminServer:
    """The admin gRPC server on --admin-listen, over `tls` when given."""

    def __init__(
        self, servicer: AdminServicer, address: ListenAddress, *, tls: ServerTls | None = None
    ) -> None:
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self._server.add_generic_rpc_handlers([servicer.handler()])
        self.address = bind(self._server, address, flag="--admin-listen", tls=tls)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float) -> None:
        await self._server.stop(grace)
