"""The CRD's CEL rules and the loader agree: every example passes both, every broken document
fails both with the same message (see tests/crd/cel.py for how CEL is evaluated)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.policy import compile as comp
from authz.policy.schema import validate_document
from tests.crd.cel import ROOT, cel_failures, loader_messages
from tests.support.policies import auth_policy, rule

EXAMPLES = sorted([*ROOT.glob("examples/**/*.yaml")])
Change = Callable[[dict[str, Any]], object]


def orders() -> dict[str, Any]:
    """The reference example: issuers, rules with and without tokens, response headers."""
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "examples/reference/orders.yaml").read_text())
    return loaded


def limited() -> dict[str, Any]:
    """A policy using every rate-limit and sourceIPs feature, at the edges of the windows."""
    limits = [
        {"name": "per-ip", "requests": 10, "window": "1m", "key": "sourceIP"},
        {
            "name": "daily",
            "requests": 1000,
            "window": "31d",
            "key": "header:x-api-key",
            "algorithm": "fixedWindow",
        },
        {
            "name": "hourly",
            "requests": 100,
            "window": "744h",
            "key": "global",
            "algorithm": "tokenBucket",
        },
        {"name": "nested", "requests": 5, "window": "44640m", "key": "claim:org.tenant"},
    ]
    return auth_policy(
        "rl",
        namespace="t",
        rateLimitFailureMode="closed",
        sourceIPs={"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.6.6.6"]},
        rules=[rule("open", anonymous=True, rateLimits=limits)],
    )


def guarded() -> dict[str, Any]:
    """A rule with one condition of each kind, the first binding a path parameter."""
    when = [
        {"claim": "tenant_id", "equalsParam": "tenant"},
        {"claim": "realm_access.roles", "containsAny": ["admin", "support"]},
        {"header": "x-api-version", "in": ["2", "3"]},
        {"cel": "claims.acr == 'mfa' || request.method == 'GET'"},
        {"param": "tenant", "matches": "[a-z]+"},
        {"claim": "email_verified", "exists": True},
    ]
    return auth_policy(
        "guarded",
        issuers=[{"issuer": "https://id.test", "audiences": ["a"], "jwksUri": "https://id.test/k"}],
        rules=[rule("orders", paths=["/tenants/{tenant}/orders/**"], scopes=["o:r"], when=when)],
    )


def first_condition(spec: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = spec["rules"][0]["when"][0]
    return found


def changed(base: Callable[[], dict[str, Any]], change: Change) -> dict[str, Any]:
    document = copy.deepcopy(base())
    change(document["spec"])
    return document


def customers() -> dict[str, Any]:
    """The response-protection example: redactions and query rewrites."""
    loaded: dict[str, Any] = yaml.safe_load(
        (ROOT / "examples/reference/customers.yaml").read_text()
    )
    return loaded


def first_limit(spec: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = spec["rules"][0]["rateLimits"][0]
    return found


BROKEN: dict[str, tuple[Callable[[], dict[str, Any]], Change, str]] = {
    "two key sources": (
        orders,
        lambda s: s["issuers"][0].update(discovery=True),
        comp.MSG_ONE_KEY_SOURCE,
    ),
    "no key source": (orders, lambda s: s["issuers"][0].pop("jwksUri"), comp.MSG_ONE_KEY_SOURCE),
    "duplicate issuer": (
        orders,
        lambda s: s["issuers"].append(copy.deepcopy(s["issuers"][0])),
        comp.MSG_UNIQUE_ISSUERS,
    ),
    "duplicate rule": (
        orders,
        lambda s: s["rules"].append(copy.deepcopy(s["rules"][0])),
        comp.MSG_UNIQUE_RULES,
    ),
    "anonymous with scopes": (
        orders,
        lambda s: s["rules"][0].update(scopes={"allOf": ["x"]}),
        comp.MSG_ANONYMOUS_SCOPES,
    ),
    "empty scopes": (
        orders,
        lambda s: s["rules"][1].update(scopes={"allOf": []}),
        comp.MSG_SCOPES_EMPTY,
    ),
    "claim and value": (
        orders,
        lambda s: s["response"]["setHeaders"][0].update(value="v"),
        comp.MSG_CLAIM_OR_VALUE,
    ),
    "neither claim nor value": (
        orders,
        lambda s: s["response"]["setHeaders"][0].pop("claim"),
        comp.MSG_CLAIM_OR_VALUE,
    ),
    "no issuers but a token rule": (orders, lambda s: s.pop("issuers"), comp.MSG_ISSUERS_NEEDED),
    "32 days": (limited, lambda s: first_limit(s).update(window="32d"), comp.MSG_WINDOW_MAX),
    "745 hours": (limited, lambda s: first_limit(s).update(window="745h"), comp.MSG_WINDOW_MAX),
    "44641 minutes": (
        limited,
        lambda s: first_limit(s).update(window="44641m"),
        comp.MSG_WINDOW_MAX,
    ),
    "2678401 seconds": (
        limited,
        lambda s: first_limit(s).update(window="2678401s"),
        comp.MSG_WINDOW_MAX,
    ),
    "duplicate limit": (
        limited,
        lambda s: s["rules"][0]["rateLimits"].append(copy.deepcopy(first_limit(s))),
        comp.MSG_UNIQUE_LIMITS,
    ),
    "empty sourceIPs": (limited, lambda s: s.update(sourceIPs={}), comp.MSG_SOURCE_IPS_EMPTY),
    "two subjects": (
        guarded,
        lambda s: first_condition(s).update(header="x-a"),
        comp.MSG_ONE_SUBJECT,
    ),
    "no subject": (guarded, lambda s: first_condition(s).pop("claim"), comp.MSG_ONE_SUBJECT),
    "cel and a subject": (
        guarded,
        lambda s: s["rules"][0]["when"][3].update(claim="sub"),
        comp.MSG_ONE_SUBJECT,
    ),
    "two operators": (
        guarded,
        lambda s: first_condition(s).update({"in": ["a"]}),
        comp.MSG_ONE_OPERATOR,
    ),
    "no operator": (
        guarded,
        lambda s: first_condition(s).pop("equalsParam"),
        comp.MSG_ONE_OPERATOR,
    ),
    "cel with an operator": (
        guarded,
        lambda s: s["rules"][0]["when"][3].update(exists=True),
        comp.MSG_ONE_OPERATOR,
    ),
    "introspection without endpoint or discovery": (
        orders,
        lambda s: s["issuers"][0].update(
            introspection={"clientId": "gw", "clientSecretRef": {"name": "idp", "key": "secret"}}
        ),
        comp.MSG_INTROSPECTION_ENDPOINT,
    ),
    "with on remove": (
        customers,
        lambda s: s["rules"][0]["responseBody"]["redact"][1].update({"with": "x"}),
        comp.MSG_WITH_REMOVE,
    ),
    "query claim and value": (
        customers,
        lambda s: s["response"]["setQueryParameters"][0].update(value="v"),
        comp.MSG_CLAIM_OR_VALUE,
    ),
    "query neither claim nor value": (
        customers,
        lambda s: s["response"]["setQueryParameters"][0].pop("claim"),
        comp.MSG_CLAIM_OR_VALUE,
    ),
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_cel_and_loader(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        assert list(cel_failures(document)) == []
        assert loader_messages(document) == set()


@pytest.mark.parametrize("base", [limited, guarded])
def test_every_feature_passes_schema_cel_and_loader(base: Callable[[], dict[str, Any]]) -> None:
    document = base()
    assert validate_document(document) == []
    assert list(cel_failures(document)) == []
    assert loader_messages(document) == set()


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_documents_fail_cel_and_loader_alike(name: str) -> None:
    base, change, message = BROKEN[name]
    document = changed(base, change)
    assert message in set(cel_failures(document))
    assert message in loader_messages(document)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: first_limit(s).update(key="claim:"), "key"),
        (lambda s: first_limit(s).update(key="claim:a b"), "key"),
        (lambda s: first_limit(s).update(key="header:a:b"), "key"),
        (lambda s: first_limit(s).update(window="0s"), "window"),
        (lambda s: first_limit(s).update(window="1.5m"), "window"),
        (lambda s: first_limit(s).update(requests=0), "requests"),
        (lambda s: first_limit(s).pop("key"), "key"),
        (lambda s: s.update(rateLimitFailureMode="maybe"), "rateLimitFailureMode"),
        (lambda s: s["sourceIPs"].update(allow=[]), "allow"),
        (lambda s: s["sourceIPs"].update(deny=["10.0.0.0/8 "]), "deny[0]"),
    ],
)
def test_the_schema_refuses_malformed_rate_limit_and_source_ip_fields(
    change: Change, field: str
) -> None:
    problems = validate_document(changed(limited, change))
    assert any(p.path.endswith(field) for p in problems), problems
