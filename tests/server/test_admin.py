"""The admin API over real gRPC: Explain (every step, no side effects) and ListPolicies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from authz._gen.authz.v1 import admin_pb2 as apb
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.memory import MemoryLimiter
from authz.server.admin import AdminServer, AdminServicer
from authz.server.listen import ListenAddress
from authz.server.observe import CheckTelemetry
from authz.server.servicer import AuthorizationServicer
from authz.telemetry.decisionlog import DecisionLog
from authz.telemetry.metrics import Metrics
from tests.support.grpcclient import check_request
from tests.support.keys import claims, rsa_key
from tests.support.policies import auth_policy, issuer, rule

KEY = rsa_key("k1")
POLICY = auth_policy(
    "shop",
    namespace="t",
    issuers=[issuer(keys=[KEY])],
    rules=[
        rule(
            "read",
            methods=["GET"],
            paths=["/orders/*"],
            scopes=["orders:read"],
            rateLimits=[{"name": "per-user", "requests": 2, "window": "1m", "key": "claim:sub"}],
        ),
        rule(
            "tenant",
            methods=["GET"],
            paths=["/tenants/{tenant}/orders"],
            when=[{"claim": "tenant_id", "equalsParam": "tenant"}],
        ),
    ],
    response={
        "setHeaders": [{"name": "x-user", "claim": "sub"}],
        "removeHeaders": ["authorization"],
    },
)
DRY = auth_policy(
    "trial",
    namespace="t",
    mode="dryRun",
    rules=[rule("open", paths=["/public/**"], anonymous=True)],
    response={"setHeaders": [{"name": "x-tier", "value": "gold"}]},
)
#: Claims trial.test too: listed as conflicted with t/trial.
CONFLICT = auth_policy("zcopy", namespace="t", hosts=["trial.test"])
#: No spec at all: listed as invalid.
BROKEN = {"apiVersion": "authz.dev/v1alpha1", "kind": "AuthPolicy", "metadata": {"name": "bad"}}


def build_snapshot() -> Snapshot:
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    return store.update(
        "files",
        [
            SourceDocument("file:shop.yaml:0", POLICY),
            SourceDocument("file:trial.yaml:0", DRY),
            SourceDocument("file:trial.yaml:1", CONFLICT),
            SourceDocument("file:bad.yaml:0", BROKEN),
        ],
    )


class Admin:
    def __init__(self, channel: grpc.aio.Channel, limiter: MemoryLimiter, snap: Snapshot) -> None:
        self.limiter = limiter
        self.snapshot = snap
        self._explain = channel.unary_unary(
            "/authz.v1.Admin/Explain",
            request_serializer=apb.ExplainRequest.SerializeToString,
            response_deserializer=apb.ExplainResponse.FromString,
        )
        self._list = channel.unary_unary(
            "/authz.v1.Admin/ListPolicies",
            request_serializer=apb.ListPoliciesRequest.SerializeToString,
            response_deserializer=apb.ListPoliciesResponse.FromString,
        )

    async def explain(self, **fields: Any) -> apb.ExplainResponse:
        answer: apb.ExplainResponse = await self._explain(apb.ExplainRequest(**fields), timeout=10)
        return answer

    async def list(self) -> apb.ListPoliciesResponse:
        answer: apb.ListPoliciesResponse = await self._list(apb.ListPoliciesRequest(), timeout=10)
        return answer


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    snap = build_snapshot()
    limiter = MemoryLimiter()
    servicer = AdminServicer(
        snapshot=lambda: snap, verifier=Verifier(cache_size=16), limiter=limiter
    )
    server = AdminServer(servicer, ListenAddress("127.0.0.1", 0))
    await server.start()
    async with grpc.aio.insecure_channel(str(server.address)) as channel:
        yield Admin(channel, limiter, snap)
    await server.stop(0)


def bearer(scope: str = "orders:read", sub: str = "alice") -> dict[str, str]:
    return {"authorization": f"Bearer {KEY.sign(claims(scope=scope, sub=sub))}"}


def steps(answer: apb.ExplainResponse) -> list[tuple[str, str]]:
    return [(s.name, apb.Outcome.Name(s.outcome)) for s in answer.steps]


async def test_explain_an_allowed_request_step_by_step(admin: Admin) -> None:
    headers = {"Authorization": bearer()["authorization"]}  # any case, like curl -H
    answer = await admin.explain(
        method="get", host="SHOP.test:443", path="/orders/1?x=1", headers=headers
    )
    assert answer.allowed
    assert (answer.reason, answer.http_status) == ("allowed", 200)
    assert (answer.policy, answer.rule, answer.subject) == ("t/shop", "read", "alice")
    assert steps(answer) == [
        ("host", "PASS"),
        ("path", "PASS"),
        ("rule", "PASS"),
        ("token", "PASS"),
        ("scopes", "PASS"),
        ("ratelimit", "PASS"),
        ("response", "INFO"),
    ]
    assert [(h.name, h.value) for h in answer.set_headers] == [("x-user", "alice")]
    assert list(answer.remove_headers) == ["authorization"]
    assert answer.snapshot_serial == admin.snapshot.serial


async def test_explain_a_denied_request_names_the_failing_step(admin: Admin) -> None:
    answer = await admin.explain(
        method="GET", host="shop.test", path="/orders/1", headers=bearer(scope="orders:write")
    )
    assert not answer.allowed
    assert (answer.reason, answer.http_status) == ("insufficient_scope", 403)
    assert steps(answer)[-1] == ("scopes", "FAIL")
    assert "orders:read" in answer.steps[-1].detail
    assert any(h.name == "www-authenticate" for h in answer.response_headers)


async def test_explain_names_the_condition_that_failed_and_why(admin: Admin) -> None:
    token = KEY.sign(claims(tenant_id="acme"))
    answer = await admin.explain(
        method="GET",
        host="shop.test",
        path="/tenants/globex/orders",
        headers={"authorization": f"Bearer {token}"},
    )
    assert (answer.allowed, answer.reason, answer.http_status) == (False, "condition_failed", 403)
    assert steps(answer)[-1] == ("conditions", "FAIL")
    assert answer.steps[-1].detail == (
        "when[0] claim tenant_id equalsParam 'tenant' does not hold:"
        " the claim is 'acme', the parameter is 'globex'"
    )


@pytest.mark.parametrize(
    ("host", "path", "headers", "reason", "last"),
    [
        ("nowhere.test", "/", {}, "no_policy", ("host", "FAIL")),
        ("shop.test", "/orders/1", {}, "missing_token", ("token", "FAIL")),
        ("shop.test", "/orders/%2F", {}, "invalid_path", ("path", "FAIL")),
        ("shop.test", "/admin", {}, "access_denied", ("rule", "FAIL")),
        ("shop.test", "/orders/1", {"authorization": "Bearer x.y.z"}, "invalid_token", None),
    ],
)
async def test_explain_every_kind_of_denial(
    admin: Admin,
    host: str,
    path: str,
    headers: dict[str, str],
    reason: str,
    last: tuple[str, str] | None,
) -> None:
    answer = await admin.explain(method="GET", host=host, path=path, headers=headers)
    assert (answer.allowed, answer.reason) == (False, reason)
    if last is not None:
        assert steps(answer)[-1] == last


async def test_explain_evaluates_rate_limits_without_consuming_quota(admin: Admin) -> None:
    headers = bearer(sub="bob")
    for _ in range(5):
        answer = await admin.explain(
            method="GET", host="shop.test", path="/orders/1", headers=headers
        )
        assert answer.allowed, steps(answer)
    # The quota (2 per minute for bob) is untouched: two real checks pass, the third is limited.
    checks = AuthorizationServicer(
        snapshot=lambda: admin.snapshot,
        verifier=Verifier(cache_size=16),
        limiter=admin.limiter,
        observer=CheckTelemetry(metrics=Metrics(), log=DecisionLog(lambda _l: None)),
    )
    request = check_request(host="shop.test", path="/orders/1", headers=headers)
    codes = [(await checks.check(request)).status.code for _ in range(3)]
    assert codes == [0, 0, 8]  # OK, OK, RESOURCE_EXHAUSTED
    for _ in range(3):
        answer = await admin.explain(
            method="GET", host="shop.test", path="/orders/1", headers=headers
        )
        assert (answer.allowed, answer.reason, answer.http_status) == (False, "rate_limited", 429)
        assert steps(answer)[-1] == ("ratelimit", "FAIL")
    # Another user still has a full quota: explaining bob consumed nothing of anyone's.
    assert (
        await checks.check(
            check_request(host="shop.test", path="/orders/1", headers=bearer(sub="carol"))
        )
    ).status.code == 0


async def test_explain_a_dry_run_policy(admin: Admin) -> None:
    answer = await admin.explain(method="GET", host="trial.test", path="/private")
    assert answer.dry_run
    assert (answer.allowed, answer.reason) == (False, "access_denied")
    assert ("mode", "INFO") in steps(answer)
    assert list(answer.remove_headers) == ["x-tier"]  # what the policy would set is stripped
    allowed = await admin.explain(method="GET", host="trial.test", path="/public/a")
    assert allowed.dry_run
    assert allowed.allowed


async def test_explain_needs_a_host_and_a_path(admin: Admin) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.explain(method="GET", path="/")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.explain(method="GET", host="shop.test")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_host_may_come_from_the_headers(admin: Admin) -> None:
    answer = await admin.explain(method="GET", path="/public/a", headers={"Host": "trial.test"})
    assert answer.policy == "t/trial"


async def test_list_policies_reports_source_state_and_message(admin: Admin) -> None:
    answer = await admin.list()
    assert answer.snapshot_serial == admin.snapshot.serial
    rows = {p.source: p for p in answer.policies}
    assert set(rows) == {
        "file:shop.yaml:0",
        "file:trial.yaml:0",
        "file:trial.yaml:1",
        "file:bad.yaml:0",
    }
    shop = rows["file:shop.yaml:0"]
    assert (shop.name, shop.state, shop.serving, shop.mode) == ("t/shop", "ready", True, "enforce")
    assert list(shop.hosts) == ["shop.test"]
    trial = rows["file:trial.yaml:0"]
    assert (trial.state, trial.mode) == ("ready", "dryRun")
    copy = rows["file:trial.yaml:1"]
    assert (copy.state, copy.serving) == ("conflicted", False)
    assert "t/trial" in copy.message
    bad = rows["file:bad.yaml:0"]
    assert (bad.name, bad.state, bad.serving, bad.mode) == ("default/bad", "invalid", False, "")
    assert "spec" in bad.message
