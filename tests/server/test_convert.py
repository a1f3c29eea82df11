"""CheckRequest -> CheckInput and Decision -> CheckResponse."""

from __future__ import annotations

import json

import pytest

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.pipeline import decision as d
from authz.pipeline.decision import Decision
from authz.server.convert import deny_body, to_check_input, to_check_response
from tests.support.grpcclient import check_request

OVERWRITE = pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def test_check_input_from_a_request() -> None:
    request = check_request(
        host="Orders.Test:8443",
        path="/orders?x=1",
        method="get",
        headers={"authorization": "Bearer t", "x-request-id": "r1"},
        source_ip="10.1.2.3",
    )
    request.attributes.request.http.id = "req-7"
    checked = to_check_input(request)
    assert checked.method == "GET"
    assert checked.host == "orders.test"
    assert checked.raw_path == "/orders?x=1"
    assert checked.headers["authorization"] == "Bearer t"
    assert checked.source_ip == "10.1.2.3"
    assert checked.request_id == "r1"  # x-request-id: what Envoy and the upstream log too
    request.attributes.request.http.headers.pop("x-request-id")
    assert to_check_input(request).request_id == "req-7"  # else Envoy's stream id


@pytest.mark.parametrize(
    ("http_host", "headers", "host"),
    [
        ("a.test", {":authority": "b.test", "host": "c.test"}, "a.test"),
        ("", {":authority": "B.test:80", "host": "c.test"}, "b.test"),
        ("", {"host": "c.test:8080"}, "c.test"),
        ("", {}, ""),
        ("", {":authority": "[::1]:9000"}, "[::1]"),
    ],
)
def test_host_falls_back_to_authority_then_host(
    http_host: str, headers: dict[str, str], host: str
) -> None:
    request = pb.CheckRequest()
    request.attributes.request.http.host = http_host
    request.attributes.request.http.headers.update(headers)
    assert to_check_input(request).host == host


def test_path_falls_back_to_the_path_pseudo_header() -> None:
    request = pb.CheckRequest()
    request.attributes.request.http.headers[":path"] = "/from/header"
    assert to_check_input(request).raw_path == "/from/header"
    request.attributes.request.http.path = "/from/field"
    assert to_check_input(request).raw_path == "/from/field"
    assert to_check_input(pb.CheckRequest()).raw_path == ""


def test_an_empty_request_converts() -> None:
    checked = to_check_input(pb.CheckRequest())
    assert (checked.method, checked.host, checked.raw_path, checked.source_ip) == ("", "", "", "")
    assert dict(checked.headers) == {}


ALLOW = Decision(
    True,
    "allowed",
    200,
    policy="shop/orders",
    rule="read",
    subject="alice",
    set_headers=(("x-user-id", "alice"), ("x-gateway", "authz")),
    remove_headers=("authorization", "x-tenant"),
    decision_id="abc123",
)


def test_allow() -> None:
    response = to_check_response(ALLOW)
    assert response.status.code == 0
    assert response.WhichOneof("http_response") == "ok_response"
    ok = response.ok_response
    assert [(o.header.key, o.header.value, o.append_action) for o in ok.headers] == [
        ("x-user-id", "alice", OVERWRITE),
        ("x-gateway", "authz", OVERWRITE),
        ("x-authz-ext-proc", "skip", OVERWRITE),  # nothing to redact: Envoy may skip ext_proc
    ]
    assert list(ok.headers_to_remove) == ["authorization", "x-tenant"]
    assert list(ok.response_headers_to_add) == []
    assert dict(response.dynamic_metadata) == {
        "policy": "shop/orders",
        "rule": "read",
        "subject": "alice",
    }


def test_allow_without_subject_or_rule() -> None:
    response = to_check_response(Decision(True, "allowed", 200))
    assert dict(response.dynamic_metadata) == {"policy": "", "rule": ""}
    assert [h.header.key for h in response.ok_response.headers] == ["x-authz-ext-proc"]


@pytest.mark.parametrize(
    ("decision", "grpc_code"),
    [
        (d.invalid_path("the path climbs above the root"), 3),
        (d.missing_token("orders.test"), 16),
        (d.invalid_token("orders.test", "token has expired"), 16),
        (d.no_policy("x.test"), 7),
        (d.access_denied(), 7),
        (d.insufficient_scope("orders.test", "orders:read"), 7),
        (d.issuer_unavailable("keys"), 14),
        (d.internal_error(), 14),
        (d.deny(429, "rate_limited", "slow down"), 8),
        (d.deny(418, "teapot", "unmapped statuses are permission denied"), 7),
    ],
)
def test_deny(decision: Decision, grpc_code: int) -> None:
    located = decision._replace(decision_id="id-1", policy="shop/orders")
    response = to_check_response(located)
    assert response.status.code == grpc_code
    assert response.status.message == decision.reason
    assert response.WhichOneof("http_response") == "denied_response"
    denied = response.denied_response
    assert denied.status.code == decision.status
    headers = [(o.header.key, o.header.value, o.append_action) for o in denied.headers]
    assert headers == [
        ("content-type", "application/json", OVERWRITE),
        ("x-authz-decision-id", "id-1", OVERWRITE),
        *((name, value, OVERWRITE) for name, value in decision.response_headers),
    ]
    assert json.loads(denied.body) == {
        "error": decision.reason,
        "error_description": decision.description,
        "decision_id": "id-1",
    }
    assert len(response.dynamic_metadata) == 0


def test_deny_body_is_json_whatever_the_description() -> None:
    decision = d.invalid_token("h", 'quote " backslash \\ newline \n unicode \u00e9')
    assert json.loads(deny_body(decision))["error_description"] == decision.description


def test_a_challenge_reaches_the_client() -> None:
    response = to_check_response(d.missing_token("orders.test"))
    values = {o.header.key: o.header.value for o in response.denied_response.headers}
    assert values["www-authenticate"] == 'Bearer realm="orders.test"'
