"""Schema validation against the CRD: where each problem is and what it says (the CRD itself is
tested in tests/crd)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from authz.errors import Problem
from authz.policy.schema import field_path, openapi_schema, validate_document
from tests.support.policies import auth_policy, issuer, rule

VALID = auth_policy(
    "orders",
    namespace="shop",
    labels={"team": "orders"},
    metadata={"creationTimestamp": "2024-05-01T10:00:00Z", "generation": 3},
    hosts=["orders.example.com", "*.orders.example.com"],
    issuers=[
        issuer(
            name="https://issuer.example",
            jwks_uri="https://issuer.example/jwks.json",
            algorithms=["RS256", "ES256"],
            leewaySeconds=10,
            scopeClaim="realm.scopes",
        )
    ],
    rules=[
        rule("read", methods=["GET"], paths=["/orders/*"], scopes=["orders:read"]),
        rule("health", paths=["/healthz"], anonymous=True),
    ],
    response={
        "setHeaders": [{"name": "x-user", "claim": "sub"}, {"name": "x-gateway", "value": "authz"}],
        "removeHeaders": ["authorization"],
    },
)


def known(*path: str) -> str:
    """The "known fields" hint for an object of the CRD schema (the CRD may grow fields)."""
    node: Any = openapi_schema()
    for name in path:
        node = node["properties"][name]
        node = node.get("items", node)
    return f"unknown field (known fields: {', '.join(sorted(node['properties']))})"


def broken(change: Callable[[dict[str, Any]], object]) -> list[str]:
    document = copy.deepcopy(VALID)
    change(document)
    return [str(p) for p in validate_document(document)]


def test_a_valid_document_has_no_problems() -> None:
    assert validate_document(VALID) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda d: d["spec"].pop("rules"), ["spec.rules: required field is missing"], id="rules"
        ),
        pytest.param(lambda d: d.pop("spec"), ["spec: required field is missing"], id="spec"),
        pytest.param(
            lambda d: d.pop("metadata"), ["metadata: required field is missing"], id="metadata"
        ),
        pytest.param(
            lambda d: d["metadata"].pop("name"),
            ["metadata.name: required field is missing"],
            id="metadata.name",
        ),
        pytest.param(
            lambda d: [d.pop("apiVersion"), d.pop("kind")],
            ["apiVersion: required field is missing", "kind: required field is missing"],
            id="apiVersion-and-kind",
        ),
        pytest.param(
            lambda d: d["spec"]["issuers"][0].pop("audiences"),
            ["spec.issuers[0].audiences: required field is missing"],
            id="audiences",
        ),
        pytest.param(
            lambda d: d["spec"]["response"]["setHeaders"][0].pop("name"),
            ["spec.response.setHeaders[0].name: required field is missing"],
            id="header-name",
        ),
    ],
)
def test_required_fields(change: Callable[[dict[str, Any]], object], expected: list[str]) -> None:
    assert broken(change) == expected


def test_unknown_fields_are_errors_naming_the_known_ones() -> None:
    assert broken(lambda d: d["spec"]["rules"][0].update(scope={"allOf": ["x"]})) == [
        f"spec.rules[0].scope: {known('spec', 'rules')}"
    ]
    assert broken(lambda d: d["spec"].update(rule=[], hostz=[])) == [
        f"spec.hostz: {known('spec')}",
        f"spec.rule: {known('spec')}",
    ]
    assert known("spec").startswith("unknown field (known fields: hosts, issuers, ")
    assert broken(lambda d: d.update(status={"x": 1})) == [f"status.x: {known('status')}"]
    # Metadata is the API server's: fields it adds (uid, resourceVersion) are not typos.
    assert broken(lambda d: d["metadata"].update(uid="123", resourceVersion="9")) == []


def test_inline_keys_keep_unknown_members() -> None:
    document = copy.deepcopy(VALID)
    issuer = document["spec"]["issuers"][0]
    del issuer["jwksUri"]
    issuer["jwks"] = {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "x5t": "anything"}]}
    assert validate_document(document) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda d: d.update(apiVersion="authz.dev/v1"),
            ["apiVersion: 'authz.dev/v1' is not one of 'authz.dev/v1alpha1'"],
            id="apiVersion",
        ),
        pytest.param(
            lambda d: d.update(kind="Policy"),
            ["kind: 'Policy' is not one of 'AuthPolicy'"],
            id="kind",
        ),
        pytest.param(
            lambda d: d["spec"]["rules"][0]["match"].update(methods=["get"]),
            [
                "spec.rules[0].match.methods[0]: 'get' is not one of 'GET', 'HEAD', 'POST', "
                "'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE'"
            ],
            id="method",
        ),
        pytest.param(
            lambda d: d["spec"]["issuers"][0].update(algorithms=["HS256"]),
            [
                "spec.issuers[0].algorithms[0]: 'HS256' is not one of 'RS256', 'RS384', 'RS512', "
                "'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'"
            ],
            id="hmac",
        ),
        pytest.param(
            lambda d: d["spec"]["issuers"][0].update(algorithms=["none"]),
            [
                "spec.issuers[0].algorithms[0]: 'none' is not one of 'RS256', 'RS384', 'RS512', "
                "'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'"
            ],
            id="none",
        ),
    ],
)
def test_enums(change: Callable[[dict[str, Any]], object], expected: list[str]) -> None:
    assert broken(change) == expected


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda d: d["spec"]["rules"][1].update(allowAnonymous="yes"),
            ["spec.rules[1].allowAnonymous: must be of type boolean, not str"],
            id="boolean",
        ),
        pytest.param(
            lambda d: d["spec"].update(hosts="orders.example.com"),
            ["spec.hosts: must be of type array, not str"],
            id="array",
        ),
        pytest.param(
            lambda d: d["spec"]["issuers"][0].update(leewaySeconds=1.5),
            ["spec.issuers[0].leewaySeconds: must be of type integer, not float"],
            id="integer",
        ),
        pytest.param(
            lambda d: d["spec"].update(rules=[{"name": 7}]),
            ["spec.rules[0].name: must be of type string, not int"],
            id="string",
        ),
        pytest.param(
            lambda d: d["metadata"].update(generation="3"),
            ["metadata.generation: must be of type integer, not str"],
            id="generation",
        ),
    ],
)
def test_types(change: Callable[[dict[str, Any]], object], expected: list[str]) -> None:
    assert broken(change) == expected


@pytest.mark.parametrize(
    ("change", "where", "value"),
    [
        pytest.param(
            lambda d: d["spec"]["hosts"].append("bad host"), "spec.hosts[2]", "bad host", id="host"
        ),
        pytest.param(
            lambda d: d["metadata"].update(name="Orders_1"), "metadata.name", "Orders_1", id="name"
        ),
        pytest.param(
            lambda d: d["metadata"].update(namespace="a.b"),
            "metadata.namespace",
            "a.b",
            id="namespace",
        ),
        pytest.param(
            lambda d: d["spec"]["issuers"][0].update(jwksUri="ftp://x"),
            "spec.issuers[0].jwksUri",
            "ftp://x",
            id="jwksUri",
        ),
        pytest.param(
            lambda d: d["spec"]["rules"][0]["match"].update(paths=["orders"]),
            "spec.rules[0].match.paths[0]",
            "orders",
            id="path",
        ),
        pytest.param(
            lambda d: d["spec"]["rules"][0]["scopes"].update(allOf=['a"b']),
            "spec.rules[0].scopes.allOf[0]",
            'a"b',
            id="scope-quote",
        ),
        pytest.param(
            lambda d: d["spec"]["response"]["setHeaders"][0].update(name="x user"),
            "spec.response.setHeaders[0].name",
            "x user",
            id="header-name",
        ),
        pytest.param(
            lambda d: d["spec"]["response"].update(removeHeaders=[":authority"]),
            "spec.response.removeHeaders[0]",
            ":authority",
            id="pseudo-header",
        ),
    ],
)
def test_patterns(change: Callable[[dict[str, Any]], object], where: str, value: str) -> None:
    problems = broken(change)
    assert len(problems) == 1
    assert problems[0].startswith(f"{where}: {value!r} does not match ")


def test_bounds() -> None:
    assert broken(lambda d: d["spec"].update(hosts=[])) == ["spec.hosts: [] should be non-empty"]
    problems = broken(lambda d: d["spec"]["issuers"][0].update(leewaySeconds=301))
    assert problems == ["spec.issuers[0].leewaySeconds: 301 is greater than the maximum of 300"]


def test_every_problem_is_reported_sorted_and_once() -> None:
    def many(d: dict[str, Any]) -> None:
        d["spec"].update(zzz=1, hosts=[])
        d["spec"]["rules"][0].update(allowAnonymous="no")
        d["metadata"].pop("name")

    assert broken(many) == [
        "metadata.name: required field is missing",
        "spec.hosts: [] should be non-empty",
        "spec.rules[0].allowAnonymous: must be of type boolean, not str",
        f"spec.zzz: {known('spec')}",
    ]


@pytest.mark.parametrize("document", [None, [VALID], "apiVersion: x", 3])
def test_a_document_must_be_a_mapping(document: object) -> None:
    assert validate_document(document) == [Problem("", "a policy document must be a mapping")]


def test_field_path() -> None:
    assert field_path(iter(["spec", "rules", 0, "match", "paths", 2])) == (
        "spec.rules[0].match.paths[2]"
    )
    assert field_path(iter([])) == ""
    assert str(Problem("", "whole document")) == "whole document"
