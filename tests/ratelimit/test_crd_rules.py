"""The CRD's CEL rules for sourceIPs and rateLimits agree with the loader (evaluated by cel-python)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from authz.policy import compile as comp
from authz.policy.schema import openapi_schema, validate_document
from tests.test_crd_cel import cel_failures, loader_messages

GOOD: dict[str, Any] = yaml.safe_load(
    """
apiVersion: authz.dev/v1alpha1
kind: AuthPolicy
metadata: {name: rl, namespace: t}
spec:
  hosts: [rl.test]
  rateLimitFailureMode: closed
  sourceIPs: {allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.6.6.6"]}
  rules:
  - name: open
    allowAnonymous: true
    rateLimits:
    - {name: per-ip, requests: 10, window: 1m, key: sourceIP}
    - {name: daily, requests: 1000, window: 31d, key: "header:x-api-key", algorithm: fixedWindow}
    - {name: hourly, requests: 100, window: 744h, key: global, algorithm: tokenBucket}
    - {name: nested, requests: 5, window: 44640m, key: "claim:org.tenant"}
"""
)


def _with(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(GOOD)
    change(document["spec"])
    return document


def test_a_full_document_passes_schema_cel_and_loader() -> None:
    assert validate_document(GOOD) == []
    assert list(cel_failures(dict(openapi_schema()), GOOD)) == []
    assert loader_messages(GOOD) == set()


BROKEN = {
    "32 days": (
        lambda s: s["rules"][0]["rateLimits"][0].update(window="32d"),
        comp.MSG_WINDOW_MAX,
    ),
    "745 hours": (
        lambda s: s["rules"][0]["rateLimits"][0].update(window="745h"),
        comp.MSG_WINDOW_MAX,
    ),
    "44641 minutes": (
        lambda s: s["rules"][0]["rateLimits"][0].update(window="44641m"),
        comp.MSG_WINDOW_MAX,
    ),
    "2678401 seconds": (
        lambda s: s["rules"][0]["rateLimits"][0].update(window="2678401s"),
        comp.MSG_WINDOW_MAX,
    ),
    "duplicate limit": (
        lambda s: s["rules"][0]["rateLimits"].append(copy.deepcopy(s["rules"][0]["rateLimits"][0])),
        comp.MSG_UNIQUE_LIMITS,
    ),
    "empty sourceIPs": (lambda s: s.update(sourceIPs={}), comp.MSG_SOURCE_IPS_EMPTY),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_documents_fail_cel_and_loader_alike(name: str) -> None:
    change, message = BROKEN[name]
    document = _with(change)
    assert message in set(cel_failures(dict(openapi_schema()), document))
    assert message in loader_messages(document)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s["rules"][0]["rateLimits"][0].update(key="claim:"), "key"),
        (lambda s: s["rules"][0]["rateLimits"][0].update(key="claim:a b"), "key"),
        (lambda s: s["rules"][0]["rateLimits"][0].update(key="header:a:b"), "key"),
        (lambda s: s["rules"][0]["rateLimits"][0].update(window="0s"), "window"),
        (lambda s: s["rules"][0]["rateLimits"][0].update(window="1.5m"), "window"),
        (lambda s: s["rules"][0]["rateLimits"][0].update(requests=0), "requests"),
        (lambda s: s["rules"][0]["rateLimits"][0].pop("key"), "key"),
        (lambda s: s.update(rateLimitFailureMode="maybe"), "rateLimitFailureMode"),
        (lambda s: s["sourceIPs"].update(allow=[]), "allow"),
        (lambda s: s["sourceIPs"].update(deny=["10.0.0.0/8 "]), "deny[0]"),
    ],
)
def test_the_schema_refuses_malformed_fields(change: Any, field: str) -> None:
    problems = validate_document(_with(change))
    assert any(p.path.endswith(field) for p in problems), problems
