"""compile_policy: the semantic checks a schema cannot express, and the compiled defaults."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from authz.errors import PolicyError, Problem
from authz.jwt.keys import SUPPORTED_ALGORITHMS
from authz.jwt.providers import KeyProvider, offline_provider
from authz.jwt.sources import KeySource, KeySourceKind
from authz.policy import compile as comp
from authz.policy.compile import compile_policy
from authz.policy.model import CompiledPolicy, HeaderTemplate
from tests.support import policies
from tests.support.keys import rsa_key

KEY = rsa_key("k1")
BASE = policies.auth_policy(
    "orders",
    namespace=None,
    hosts=["orders.example.com"],
    issuers=[
        policies.issuer(name="https://issuer.example", jwks_uri="https://issuer.example/jwks.json")
    ],
    rules=[
        policies.rule(
            "read", methods=["GET", "HEAD"], paths=["/orders", "/orders/*"], scopes=["orders:read"]
        ),
        policies.rule("open", anonymous=True),
    ],
)


class Binder:
    """Records the key sources a compile binds (offline: nothing is fetched)."""

    def __init__(self) -> None:
        self.sources: list[KeySource] = []

    def __call__(self, source: KeySource) -> KeyProvider:
        self.sources.append(source)
        return offline_provider(source)


def build(change: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(BASE)
    if change is not None:
        change(document)
    return document


def compiled(change: Callable[[dict[str, Any]], object] | None = None) -> CompiledPolicy:
    return compile_policy(build(change), bind=Binder())


def problems(change: Callable[[dict[str, Any]], object]) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        compile_policy(build(change), bind=Binder())
    assert caught.value.code == "invalid_policy"
    assert str(caught.value) == "; ".join(map(str, caught.value.problems))
    return caught.value.problems


def issuer(d: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = d["spec"]["issuers"][0]
    return first


# --- defaults -----------------------------------------------------------------------------------


def test_defaults() -> None:
    policy = compiled()
    assert policy.namespace == "default"
    assert policy.key == "default/orders"
    spec = policy.issuers["https://issuer.example"]
    assert spec.leeway == 30.0
    assert spec.algorithms == SUPPORTED_ALGORITHMS
    assert spec.audiences == {"orders-api"}
    assert spec.scope_claim is None
    assert (spec.require_bound, spec.dpop_nonce) == (False, False)
    assert spec.dpop_algorithms == SUPPORTED_ALGORITHMS
    assert policy.set_headers == ()
    assert policy.remove_headers == ()
    assert policy.created is None
    assert policy.generation is None


def test_explicit_settings() -> None:
    def change(d: dict[str, Any]) -> None:
        d["metadata"].update(
            namespace="shop", creationTimestamp="2024-05-01T10:00:00Z", generation=4
        )
        issuer(d).update(leewaySeconds=0, algorithms=["ES256", "ES256"], scopeClaim="realm.scopes")

    policy = compiled(change)
    assert policy.key == "shop/orders"
    assert policy.created == "2024-05-01T10:00:00Z"
    assert policy.generation == 4
    spec = policy.issuers["https://issuer.example"]
    assert spec.leeway == 0.0
    assert spec.algorithms == {"ES256"}
    assert spec.scope_claim == ("realm", "scopes")


def test_sender_constrained_settings() -> None:
    policy = compiled(
        lambda d: issuer(d).update(
            requireBoundTokens=True, dpopAlgorithms=["ES256", "EdDSA"], dpopNonce=True
        )
    )
    spec = policy.issuers["https://issuer.example"]
    assert (spec.require_bound, spec.dpop_nonce) == (True, True)
    assert spec.dpop_algorithms == {"ES256", "EdDSA"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dpopAlgorithms", ["HS256"]),
        ("dpopAlgorithms", ["none"]),
        ("dpopAlgorithms", []),
        ("requireBoundTokens", "yes"),
        ("dpopNonce", 1),
    ],
)
def test_bad_sender_constrained_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(PolicyError) as caught:
        compiled(lambda d: issuer(d).update({field: value}))
    assert caught.value.problems[0].path.startswith(f"spec.issuers[0].{field}")


def test_rules_are_compiled_in_order() -> None:
    def change(d: dict[str, Any]) -> None:
        d["spec"]["rules"][0]["scopes"] = {"allOf": ["b", "a", "b"], "anyOf": ["c", "a"]}

    read, open_ = compiled(change).rules
    assert read.name == "read"
    assert read.methods == frozenset({"GET", "HEAD"})
    assert read.paths is not None
    assert read.matches("GET", "/orders/1")
    assert not read.matches("POST", "/orders/1")
    assert read.all_of == {"a", "b"}
    assert read.any_of == {"a", "c"}
    assert read.scope_text == "b a c"  # duplicates named once
    assert not read.anonymous
    assert open_.methods is None
    assert open_.paths is None
    assert open_.anonymous
    assert open_.scope_text == ""
    assert open_.matches("DELETE", "/anything")


def test_hosts_are_normalized_and_deduplicated() -> None:
    policy = compiled(
        lambda d: d["spec"].update(
            hosts=["Orders.Example.com", "orders.example.com", "*.Shop.test"]
        )
    )
    assert policy.hosts == ("orders.example.com", "*.shop.test")


def test_response_headers() -> None:
    def change(d: dict[str, Any]) -> None:
        d["spec"]["response"] = {
            "setHeaders": [
                {"name": "X-User", "claim": "sub"},
                {"name": "x-tenant", "claim": "org.tenant"},
                {"name": "x-gateway", "value": "authz"},
            ],
            "removeHeaders": ["Authorization", "authorization", "X-User", "cookie"],
        }

    policy = compiled(change)
    assert policy.set_headers == (
        HeaderTemplate("x-user", None, ("sub",)),
        HeaderTemplate("x-tenant", None, ("org", "tenant")),
        HeaderTemplate("x-gateway", "authz", None),
    )
    # Removing a header the policy sets would undo the set: it is dropped from the removals.
    assert policy.remove_headers == ("authorization", "cookie")


@pytest.mark.parametrize(
    ("key_member", "kind", "location"),
    [
        ("jwksUri", KeySourceKind.JWKS_URI, "https://issuer.example/jwks.json"),
        ("discovery", KeySourceKind.DISCOVERY, "https://issuer.example"),
    ],
)
def test_remote_key_sources(key_member: str, kind: KeySourceKind, location: str) -> None:
    def change(d: dict[str, Any]) -> None:
        issuer(d).pop("jwksUri")
        issuer(d)[key_member] = True if key_member == "discovery" else location

    binder = Binder()
    policy = compile_policy(build(change), bind=binder)
    assert binder.sources == [KeySource(kind, location)]
    assert policy.issuers["https://issuer.example"].provider.source == KeySource(kind, location)


def test_inline_keys_are_bound_as_canonical_json() -> None:
    def change(d: dict[str, Any]) -> None:
        issuer(d).pop("jwksUri")
        issuer(d)["jwks"] = {"keys": [KEY.jwk]}

    binder = Binder()
    policy = compile_policy(build(change), bind=binder)
    assert binder.sources == [KeySource.inline({"keys": [KEY.jwk]})]
    provider = policy.issuers["https://issuer.example"].provider
    assert provider.keys is not None
    assert [k.kid for k in provider.keys.keys] == ["k1"]


def test_loopback_http_is_allowed_for_keys() -> None:
    policy = compiled(lambda d: issuer(d).update(jwksUri="http://127.0.0.1:8080/jwks.json"))
    assert policy.issuers["https://issuer.example"].provider.source.location == (
        "http://127.0.0.1:8080/jwks.json"
    )


# --- the checks that mirror the CRD's CEL rules -------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: issuer(d).pop("jwksUri"), id="none"),
        pytest.param(lambda d: issuer(d).update(jwks={"keys": [KEY.jwk]}), id="jwksUri+jwks"),
        pytest.param(lambda d: issuer(d).update(discovery=True), id="jwksUri+discovery"),
        pytest.param(
            lambda d: [issuer(d).pop("jwksUri"), issuer(d).update(discovery=False)],
            id="discovery-false-only",
        ),
    ],
)
def test_exactly_one_key_source(change: Callable[[dict[str, Any]], object]) -> None:
    assert problems(change) == [Problem("spec.issuers[0]", comp.MSG_ONE_KEY_SOURCE)]


def test_discovery_false_beside_a_jwks_uri_is_fine() -> None:
    assert compiled(lambda d: issuer(d).update(discovery=False)).issuers


def test_issuers_are_unique() -> None:
    assert problems(lambda d: d["spec"]["issuers"].append(copy.deepcopy(issuer(d)))) == [
        Problem("spec.issuers", comp.MSG_UNIQUE_ISSUERS)
    ]


def test_rule_names_are_unique() -> None:
    assert problems(
        lambda d: d["spec"]["rules"].append({"name": "open", "allowAnonymous": True})
    ) == [Problem("spec.rules", comp.MSG_UNIQUE_RULES)]


def test_anonymous_rules_cannot_require_scopes() -> None:
    assert problems(lambda d: d["spec"]["rules"][1].update(scopes={"allOf": ["x"]})) == [
        Problem("spec.rules[1]", comp.MSG_ANONYMOUS_SCOPES)
    ]


@pytest.mark.parametrize("scopes", [{}, {"allOf": []}, {"anyOf": []}, {"allOf": [], "anyOf": []}])
def test_scopes_need_all_of_or_any_of(scopes: dict[str, Any]) -> None:
    assert problems(lambda d: d["spec"]["rules"][0].update(scopes=scopes)) == [
        Problem("spec.rules[0].scopes", comp.MSG_SCOPES_EMPTY)
    ]


@pytest.mark.parametrize(
    "header",
    [{"name": "x-a"}, {"name": "x-a", "claim": "sub", "value": "v"}],
    ids=["neither", "both"],
)
def test_set_headers_need_claim_or_value(header: dict[str, str]) -> None:
    assert problems(lambda d: d["spec"].update(response={"setHeaders": [header]})) == [
        Problem("spec.response.setHeaders[0]", comp.MSG_CLAIM_OR_VALUE)
    ]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d["spec"].pop("issuers"), id="absent"),
        pytest.param(lambda d: d["spec"].update(issuers=[]), id="empty"),
    ],
)
def test_token_rules_need_issuers(change: Callable[[dict[str, Any]], object]) -> None:
    assert problems(change) == [Problem("spec.issuers", comp.MSG_ISSUERS_NEEDED)]


def test_an_all_anonymous_policy_needs_no_issuers() -> None:
    def change(d: dict[str, Any]) -> None:
        d["spec"].pop("issuers")
        d["spec"]["rules"] = [{"name": "open", "allowAnonymous": True}]

    assert compiled(change).issuers == {}


# --- the checks that need code ------------------------------------------------------------------


def test_jwks_uri_must_be_fetchable() -> None:
    assert problems(lambda d: issuer(d).update(jwksUri="http://issuer.example/jwks")) == [
        Problem(
            "spec.issuers[0].jwksUri",
            "must use https (plain http is allowed only for loopback hosts)",
        )
    ]
    assert problems(lambda d: issuer(d).update(jwksUri="https://u:p@issuer.example/jwks")) == [
        Problem("spec.issuers[0].jwksUri", "URL must not carry credentials")
    ]


def test_discovery_needs_a_fetchable_issuer() -> None:
    def change(d: dict[str, Any]) -> None:
        issuer(d).pop("jwksUri")
        issuer(d).update(issuer="http://issuer.example", discovery=True)

    assert problems(change) == [
        Problem(
            "spec.issuers[0].issuer",
            "discovery needs an issuer URL that must use https (plain http is allowed only for "
            "loopback hosts)",
        )
    ]


def test_unusable_inline_keys_are_reported_at_compile_time() -> None:
    def change(d: dict[str, Any]) -> None:
        issuer(d).pop("jwksUri")
        issuer(d)["jwks"] = {"keys": [{**KEY.jwk, "use": "enc"}]}

    assert problems(change) == [
        Problem(
            "spec.issuers[0].jwks",
            "no usable signature key in JWKS: keys[0] (kid 'k1'): use is 'enc', not 'sig'",
        )
    ]


def test_malformed_inline_keys_are_problems_not_crashes() -> None:
    def change(d: dict[str, Any]) -> None:
        issuer(d).pop("jwksUri")
        issuer(d)["jwks"] = {"keys": [{"kty": "RSA", "kid": "bare"}]}

    (problem,) = problems(change)
    assert problem.path == "spec.issuers[0].jwks"
    assert problem.message.startswith("no usable signature key in JWKS: keys[0] (kid 'bare'): ")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("/a//b", "must not contain empty segments (//)"),
        ("/a/../b", "must not contain . or .. segments"),
        ("/a/**/b", '"**" is allowed only as the last segment ("/prefix/**")'),
        ("/a/b*", '"*" must be a whole segment ("/a/*/b"), not part of one'),
        ("/a?b", "must not contain a query or fragment"),
    ],
)
def test_path_patterns_must_match_normalized_paths(pattern: str, message: str) -> None:
    assert problems(lambda d: d["spec"]["rules"][0]["match"].update(paths=["/ok", pattern])) == [
        Problem("spec.rules[0].match.paths[1]", message)
    ]


@pytest.mark.parametrize(
    "name", ["host", "Host", "connection", "content-length", "Transfer-Encoding", "te", "upgrade"]
)
def test_forbidden_headers(name: str) -> None:
    assert problems(
        lambda d: d["spec"].update(response={"setHeaders": [{"name": name, "value": "x"}]})
    ) == [
        Problem("spec.response.setHeaders[0].name", f"{name.lower()!r} cannot be set by a policy")
    ]


def test_a_header_is_set_once() -> None:
    headers = [{"name": "x-user", "claim": "sub"}, {"name": "X-User", "value": "v"}]
    assert problems(lambda d: d["spec"].update(response={"setHeaders": headers})) == [
        Problem("spec.response.setHeaders[1].name", "header 'x-user' is set twice")
    ]


@pytest.mark.parametrize("value", ["a\r\nx-evil: 1", "a\nb", "a\0b"])
def test_literal_values_cannot_split_headers(value: str) -> None:
    assert problems(
        lambda d: d["spec"].update(response={"setHeaders": [{"name": "x-a", "value": value}]})
    ) == [Problem("spec.response.setHeaders[0].value", "must not contain CR, LF or NUL")]


def test_schema_problems_come_first_and_stop_compilation() -> None:
    binder = Binder()
    with pytest.raises(PolicyError) as caught:
        compile_policy(build(lambda d: d["spec"].update(hostz=[])), bind=binder)
    assert [p.path for p in caught.value.problems] == ["spec.hostz"]
    assert binder.sources == []


def test_every_semantic_problem_is_reported_at_once() -> None:
    def change(d: dict[str, Any]) -> None:
        issuer(d).update(jwksUri="http://issuer.example/jwks")
        d["spec"]["rules"][1].update(scopes={"allOf": ["x"]})
        d["spec"]["rules"][0]["match"].update(paths=["/a//b"])
        d["spec"]["response"] = {"setHeaders": [{"name": "host", "value": "x"}]}

    assert [p.path for p in problems(change)] == [
        "spec.issuers[0].jwksUri",
        "spec.rules[0].match.paths[0]",
        "spec.rules[1]",
        "spec.response.setHeaders[0].name",
    ]


def test_a_binder_value_error_is_a_problem() -> None:
    def refuse(source: KeySource) -> KeyProvider:
        raise ValueError(f"cannot bind {source.describe()}")

    with pytest.raises(PolicyError) as caught:
        compile_policy(build(), bind=refuse)
    assert caught.value.problems == [
        Problem("spec.issuers[0].jwksUri", "cannot bind https://issuer.example/jwks.json")
    ]


def test_the_document_is_not_modified() -> None:
    document = build()
    before = json.dumps(document, sort_keys=True)
    compile_policy(document, bind=Binder())
    assert json.dumps(document, sort_keys=True) == before
