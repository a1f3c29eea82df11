"""Revoke and ListRevocations over real gRPC: a revocation bites the very next Explain."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from authz._gen.authz.v1 import admin_pb2 as apb
from authz.app import WORKERS_CANNOT_REVOKE
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.policy.store import PolicyStore, SourceDocument
from authz.server.admin import AdminServer, AdminServicer
from authz.server.listen import ListenAddress
from tests.support.keys import claims, rsa_key
from tests.support.policies import auth_policy, issuer, rule

KEY = rsa_key("k1")
Call = Callable[..., Any]


@pytest.fixture
async def admin(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Call]]:
    options: dict[str, Any] = getattr(request, "param", {})
    store = PolicyStore(bind=offline_provider)
    document = auth_policy(
        "shop",
        issuers=[issuer(keys=[KEY], **options.get("issuer", {}))],
        rules=[rule("any", paths=["/**"])],
    )
    snap = store.update("files", [SourceDocument("file:shop.yaml:0", document)])
    servicer = AdminServicer(
        snapshot=lambda: snap,
        verifier=Verifier(),
        revoke_refusal=options.get("refusal"),
    )
    server = AdminServer(servicer, ListenAddress("127.0.0.1", 0))
    await server.start()
    async with grpc.aio.insecure_channel(str(server.address)) as channel:
        calls: dict[str, Call] = {}
        parsers: dict[str, Callable[[bytes], Any]] = {
            "Explain": apb.ExplainResponse.FromString,
            "Revoke": apb.RevokeResponse.FromString,
            "ListRevocations": apb.ListRevocationsResponse.FromString,
        }
        for name, parse in parsers.items():
            calls[name] = channel.unary_unary(
                f"/authz.v1.Admin/{name}",
                request_serializer=lambda message: message.SerializeToString(),
                response_deserializer=parse,
            )
        yield calls
    await server.stop(0)


async def explain(admin: dict[str, Call], token: str) -> apb.ExplainResponse:
    answer: apb.ExplainResponse = await admin["Explain"](
        apb.ExplainRequest(
            host="shop.test", path="/x", headers={"authorization": f"Bearer {token}"}
        ),
        timeout=10,
    )
    return answer


async def test_revoke_a_subject_then_list_it(admin: dict[str, Call]) -> None:
    old = KEY.sign(claims(sub="mallory", iat=int(time.time()) - 60))
    assert (await explain(admin, old)).allowed
    answer = await admin["Revoke"](apb.RevokeRequest(subject="mallory"), timeout=10)
    assert (answer.revocation.kind, answer.revocation.value, answer.shared) == (
        "subject",
        "mallory",
        False,
    )
    denied = await explain(admin, old)
    assert (denied.allowed, denied.reason, denied.description) == (
        False,
        "invalid_token",
        "token has been revoked",
    )
    newer = KEY.sign(claims(sub="mallory", iat=int(time.time()) + 5))
    assert (await explain(admin, newer)).allowed  # issued after the revocation
    listed = await admin["ListRevocations"](apb.ListRevocationsRequest(), timeout=10)
    assert [(r.kind, r.value) for r in listed.revocations] == [("subject", "mallory")]


@pytest.mark.parametrize(
    "fields",
    [{}, {"jti": "a", "subject": "b"}, {"jti": "a", "until": 1.0}, {"jti": "x" * 3000}],
)
async def test_bad_revoke_requests_are_invalid_argument(
    admin: dict[str, Call], fields: dict[str, Any]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin["Revoke"](apb.RevokeRequest(**fields), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("admin", [{"refusal": WORKERS_CANNOT_REVOKE}], indirect=True)
async def test_a_supervisor_of_workers_refuses_to_revoke(admin: dict[str, Call]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin["Revoke"](apb.RevokeRequest(jti="a"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--redis-url" in (caught.value.details() or "")


@pytest.mark.parametrize("admin", [{"issuer": {"maxTokenLifetime": "15m"}}], indirect=True)
async def test_an_entry_is_kept_as_long_as_a_matching_token_can_live(
    admin: dict[str, Call],
) -> None:
    before = time.time()
    answer = await admin["Revoke"](apb.RevokeRequest(jti="j1"), timeout=10)
    # maxTokenLifetime plus the issuer's leeway (30 s by default), from the revocation on.
    assert answer.revocation.until - answer.revocation.revoked_at == pytest.approx(15 * 60 + 30)
    assert answer.revocation.revoked_at >= before
    explicit = await admin["Revoke"](apb.RevokeRequest(jti="j3", until=before + 5), timeout=10)
    assert explicit.revocation.until == before + 5


async def test_without_a_lifetime_bound_an_entry_is_kept_a_day(admin: dict[str, Call]) -> None:
    answer = await admin["Revoke"](apb.RevokeRequest(jti="j1"), timeout=10)
    assert answer.revocation.until - answer.revocation.revoked_at == pytest.approx(86_400)
