"""The servicer: one snapshot per check, and every failure a logged 503 deny - nothing escapes."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.policy.snapshot import EMPTY, Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.memory import MemoryLimiter
from authz.server.grpc_server import GrpcServer
from authz.server.listen import ListenAddress
from authz.server.servicer import SERVICE, AuthorizationServicer
from tests.support.grpcclient import CHECK, check_request
from tests.support.policies import auth_policy, rule

POLICY = auth_policy(
    "open", namespace="t", rules=[rule("health", paths=["/healthz"], anonymous=True)]
)


def snapshot() -> Snapshot:
    published: list[Snapshot] = []
    store = PolicyStore(bind=offline_provider, publish=published.append)
    return store.update("test", [SourceDocument("open.yaml:0", POLICY)])


SNAPSHOT = snapshot()


def broken_snapshot() -> Snapshot:
    raise RuntimeError("the snapshot holder is broken")


def headers(response: pb.CheckResponse) -> dict[str, str]:
    return {o.header.key: o.header.value for o in response.denied_response.headers}


async def test_an_exception_in_the_pipeline_is_a_logged_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    servicer = AuthorizationServicer(
        snapshot=broken_snapshot, limiter=MemoryLimiter(), verifier=Verifier()
    )
    with caplog.at_level(logging.ERROR, logger="authz.server.servicer"):
        response = await servicer.check(check_request(host="open.test", path="/healthz"))
    assert response.status.code == 14
    assert response.denied_response.status.code == 503
    body = json.loads(response.denied_response.body)
    assert body["error"] == "internal_error"
    assert body["error_description"] == "the authorization service failed; the request was denied"
    decision_id = body["decision_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", decision_id)
    assert headers(response)["x-authz-decision-id"] == decision_id
    records = [r for r in caplog.records if r.name == "authz.server.servicer"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert decision_id in records[0].getMessage()
    assert records[0].exc_info is not None
    assert "the snapshot holder is broken" in str(records[0].exc_info[1])


async def test_the_snapshot_is_taken_once_per_check() -> None:
    calls: list[int] = []

    def counting() -> Snapshot:
        calls.append(1)
        return SNAPSHOT

    servicer = AuthorizationServicer(
        snapshot=counting, limiter=MemoryLimiter(), verifier=Verifier()
    )
    await servicer.check(check_request(host="open.test", path="/healthz"))
    await servicer.check(check_request(host="other.test", path="/"))
    assert len(calls) == 2


async def test_decisions_flow_through() -> None:
    servicer = AuthorizationServicer(
        snapshot=lambda: SNAPSHOT, limiter=MemoryLimiter(), verifier=Verifier()
    )
    allowed = await servicer.check(check_request(host="open.test", path="/healthz"))
    assert allowed.status.code == 0
    assert dict(allowed.dynamic_metadata)["rule"] == "health"
    denied = await servicer.check(check_request(host="open.test", path="/admin"))
    assert denied.denied_response.status.code == 403
    assert json.loads(denied.denied_response.body)["error"] == "access_denied"
    unknown = await servicer.check(check_request(host="nobody.test", path="/"))
    assert json.loads(unknown.denied_response.body)["error"] == "no_policy"


async def test_every_check_gets_its_own_decision_id() -> None:
    servicer = AuthorizationServicer(
        snapshot=lambda: EMPTY, limiter=MemoryLimiter(), verifier=Verifier()
    )
    ids = set()
    for _ in range(5):
        response = await servicer.check(check_request(host="a.test"))
        ids.add(json.loads(response.denied_response.body)["decision_id"])
    assert len(ids) == 5


@pytest.fixture
async def server() -> AsyncIterator[GrpcServer]:
    servicer = AuthorizationServicer(
        snapshot=broken_snapshot, limiter=MemoryLimiter(), verifier=Verifier()
    )
    running = GrpcServer(servicer, ListenAddress(host="127.0.0.1", port=0))
    await running.start()
    yield running
    await running.stop(0)


async def test_over_grpc_the_deny_is_an_answer_not_an_rpc_error(server: GrpcServer) -> None:
    assert server.address.port > 0
    async with grpc.aio.insecure_channel(server.address.grpc_target) as channel:
        call = channel.unary_unary(
            CHECK,
            request_serializer=pb.CheckRequest.SerializeToString,
            response_deserializer=pb.CheckResponse.FromString,
        )
        response = await call(check_request(host="open.test"), timeout=10)
        assert response.denied_response.status.code == 503
        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await server.set_serving(True)
        status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
