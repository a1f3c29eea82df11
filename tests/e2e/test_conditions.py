"""Conditions end to end through the real Envoy: each operator, a CEL rule, and the tenant
binding (own tenant 200, another tenant 403, encoded and dot-segment variants)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.gateway import Gateway, start_gateway
from tests.support.http import Response, request
from tests.support.keys import claims, rsa_key
from tests.support.policies import auth_policy, issuer, rule, to_yaml
from tests.support.wait import wait_for

HOST = "conditions.test"
KEY = rsa_key("rsa-c")


def op(operator: str, condition: dict[str, Any], *, paths: list[str] | None = None) -> Any:
    return rule(f"op-{operator}", paths=paths or [f"/ops/{operator}"], when=[condition])


def policy(jwks_url: str) -> str:
    return to_yaml(
        auth_policy(
            "conditions",
            namespace="e2e",
            hosts=[HOST],
            issuers=[issuer(jwks_uri=jwks_url)],
            rules=[
                rule(
                    "tenant-orders",
                    methods=["GET"],
                    paths=["/tenants/{tenant}/orders/**"],
                    scopes=["orders:read"],
                    when=[{"claim": "tenant_id", "equalsParam": "tenant"}],
                ),
                rule(
                    "tenant-writes",
                    methods=["POST"],
                    paths=["/tenants/{tenant}/orders"],
                    when=[{"cel": "claims.tenant_id == params.tenant && claims.acr == 'mfa'"}],
                ),
                op("equals", {"claim": "acr", "equals": "mfa"}),
                op("notEquals", {"claim": "acr", "notEquals": "pwd"}),
                op("in", {"header": "X-Api-Version", "in": ["2", "3"]}),
                op("notIn", {"claim": "acr", "notIn": ["pwd"]}),
                op("contains", {"claim": "realm_access.roles", "contains": "admin"}),
                op("containsAny", {"claim": "roles", "containsAny": ["a", "b"]}),
                op("containsAll", {"claim": "groups", "containsAll": ["g1", "g2"]}),
                op("matches", {"header": "x-tag", "matches": "[a-z]{3}-[0-9]+"}),
                op("exists", {"claim": "email", "exists": True}),
                op("param", {"param": "id", "matches": "[0-9]+"}, paths=["/ops/param/{id}"]),
            ],
        )
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("conditions"), KEY)
    (gw.policies / "conditions.yaml").write_text(policy(gw.jwks_url))
    wait_for(
        lambda: call(gw, "/ops/equals").status == 401 or None,
        what="the conditions policy to be served",
    )
    yield gw
    gw.stop()


def call(
    gw: Gateway,
    path: str,
    *,
    method: str = "GET",
    token_claims: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    token = None if token_claims is None else KEY.sign(claims(**token_claims))
    return request(gw.url, path, method=method, host=HOST, token=token, headers=headers)


ACME = {"tenant_id": "acme"}


@pytest.mark.parametrize(
    ("path", "token_claims", "status"),
    [
        ("/tenants/acme/orders/1", ACME, 200),
        ("/tenants/globex/orders/1", ACME, 403),
        ("/tenants/%61cme/orders/1", ACME, 200),
        ("/tenants/%67lobex/orders/1", ACME, 403),
        ("/tenants/acme/../globex/orders/1", ACME, 403),
        ("/tenants/globex/orders/../../acme/orders/1", ACME, 200),
        ("/tenants/acme%2Fglobex/orders/1", ACME, 400),
        ("/tenants/acme/orders/1", {"tenant_id": ["acme"]}, 403),
        ("/tenants/acme/orders/1", {}, 403),
    ],
)
def test_the_tenant_binding(
    gateway: Gateway, path: str, token_claims: dict[str, Any], status: int
) -> None:
    response = call(gateway, path, token_claims=token_claims)
    assert response.status == status, response.body
    if status == 403:
        body = response.json()
        assert body["error"] == "condition_failed"
        assert body["error_description"] == (
            "condition when[0] of rule 'tenant-orders' does not hold for this request"
        )
        assert "acme" not in response.body.decode()


def test_the_cel_rule(gateway: Gateway) -> None:
    path = "/tenants/acme/orders"
    assert call(gateway, path, method="POST", token_claims={**ACME, "acr": "mfa"}).status == 200
    refused = call(gateway, path, method="POST", token_claims={**ACME, "acr": "pwd"})
    assert (refused.status, refused.json()["error"]) == (403, "condition_failed")
    other = call(gateway, "/tenants/globex/orders", method="POST", token_claims={"acr": "mfa"})
    assert other.status == 403


@pytest.mark.parametrize(
    ("operator", "allowed", "refused"),
    [
        ("equals", {"token_claims": {"acr": "mfa"}}, {"token_claims": {"acr": "pwd"}}),
        ("notEquals", {"token_claims": {"acr": "mfa"}}, {"token_claims": {"acr": "pwd"}}),
        (
            "in",
            {"token_claims": {}, "headers": {"x-api-version": "3"}},
            {"token_claims": {}, "headers": {"x-api-version": "4"}},
        ),
        ("notIn", {"token_claims": {"acr": "mfa"}}, {"token_claims": {}}),
        (
            "contains",
            {"token_claims": {"realm_access": {"roles": ["admin"]}}},
            {"token_claims": {"realm_access": {"roles": ["user"]}}},
        ),
        ("containsAny", {"token_claims": {"roles": ["b", "c"]}}, {"token_claims": {"roles": "c"}}),
        (
            "containsAll",
            {"token_claims": {"groups": ["g2", "g1", "g3"]}},
            {"token_claims": {"groups": ["g1"]}},
        ),
        (
            "matches",
            {"token_claims": {}, "headers": {"x-tag": "abc-12"}},
            {"token_claims": {}, "headers": {"x-tag": "abc-12x"}},
        ),
        ("exists", {"token_claims": {"email": "a@b.c"}}, {"token_claims": {"mail": "a@b.c"}}),
    ],
)
def test_each_operator(
    gateway: Gateway, operator: str, allowed: dict[str, Any], refused: dict[str, Any]
) -> None:
    assert call(gateway, f"/ops/{operator}", **allowed).status == 200
    response = call(gateway, f"/ops/{operator}", **refused)
    assert (response.status, response.json()["error"]) == (403, "condition_failed")


def test_a_path_parameter_condition(gateway: Gateway) -> None:
    assert call(gateway, "/ops/param/42", token_claims={}).status == 200
    assert call(gateway, "/ops/param/4x2", token_claims={}).status == 403


def test_a_repeated_header_cannot_satisfy_an_equality(gateway: Gateway) -> None:
    # Envoy hands the sidecar one value, "3,3", which is not one of the listed values
    response = request_twice(gateway, "x-api-version", "3", "3")
    assert (response.status, response.json()["error"]) == (403, "condition_failed")


def request_twice(gw: Gateway, name: str, *values: str) -> Response:
    conn = http.client.HTTPConnection(gw.url.split("://", 1)[1], timeout=10)
    try:
        conn.putrequest("GET", "/ops/in", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", HOST)
        conn.putheader("Authorization", f"Bearer {KEY.sign(claims())}")
        for value in values:
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return Response(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def test_refusals_are_counted_with_their_reason(gateway: Gateway) -> None:
    call(gateway, "/tenants/globex/orders/1", token_claims=ACME)
    metrics = request(f"http://127.0.0.1:{gateway.http_port}", "/metrics").body.decode()
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("authz_decisions_total{")
        and 'reason="condition_failed"' in line
        and 'policy="e2e/conditions"' in line
    ]
    assert counted, metrics
    assert float(counted[0].rsplit(" ", 1)[1]) >= 1
