"""`spec.protection.bruteForce` through the CRD's schema, its CEL rules and the loader: the same
documents pass and fail everywhere, with the same messages."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from authz.policy import compile as comp
from authz.policy.schema import validate_document
from authz.ratelimit.spec import KeyKind
from tests.bruteforce.support import PER_IP, build, policy
from tests.crd.cel import cel_failures, loader_messages, loader_problems

EDGES = [
    {**PER_IP, "name": "day", "window": "1d", "blockFor": "31d"},
    {**PER_IP, "name": "hours", "window": "24h", "blockFor": "744h", "key": "claim:org.tenant"},
    {**PER_IP, "name": "minutes", "window": "1440m", "blockFor": "44640m", "key": "header:X-Key"},
    {**PER_IP, "name": "seconds", "window": "86400s", "blockFor": "1s", "maxFailures": 1000},
]


def edited(change: Callable[[list[dict[str, Any]]], object]) -> dict[str, Any]:
    document = policy(copy.deepcopy(EDGES))
    change(document["spec"]["protection"]["bruteForce"])
    return document


def test_every_edge_passes_schema_cel_and_loader() -> None:
    document = policy(EDGES)
    assert validate_document(document) == []
    assert list(cel_failures(document)) == []
    assert loader_messages(document) == set()
    compiled = build(document).policies[0].brute_force
    assert [p.key.kind for p in compiled] == [
        KeyKind.SOURCE_IP,
        KeyKind.CLAIM,
        KeyKind.HEADER,
        KeyKind.SOURCE_IP,
    ]
    assert compiled[0].window_ms == 86_400_000
    assert compiled[0].block_ms == 31 * 86_400_000
    assert compiled[2].key.header == "x-key"
    assert compiled[1].prefix == "t/api:hours"


BROKEN: dict[str, tuple[Callable[[list[dict[str, Any]]], object], str]] = {
    "duplicate name": (lambda p: p.append(copy.deepcopy(p[0])), comp.MSG_UNIQUE_PROTECTIONS),
    "2 days": (lambda p: p[0].update(window="2d"), comp.MSG_FAILURE_WINDOW_MAX),
    "32 days": (lambda p: p[0].update(window="32d"), comp.MSG_FAILURE_WINDOW_MAX),
    "25 hours": (lambda p: p[0].update(window="25h"), comp.MSG_FAILURE_WINDOW_MAX),
    "86401 s": (lambda p: p[0].update(window="86401s"), comp.MSG_FAILURE_WINDOW_MAX),
    "block 32 days": (lambda p: p[0].update(blockFor="32d"), comp.MSG_BLOCK_FOR_MAX),
    "block 745 h": (lambda p: p[0].update(blockFor="745h"), comp.MSG_BLOCK_FOR_MAX),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_protections_fail_cel_and_loader_alike(name: str) -> None:
    change, message = BROKEN[name]
    document = edited(change)
    assert message in set(cel_failures(document))
    assert message in loader_messages(document)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p[0].update(key="global"), "key"),
        (lambda p: p[0].update(key="claim:"), "key"),
        (lambda p: p[0].update(key="header:a b"), "key"),
        (lambda p: p[0].update(key="sourceIP" * 40), "key"),
        (lambda p: p[0].update(maxFailures=0), "maxFailures"),
        (lambda p: p[0].update(maxFailures=1001), "maxFailures"),
        (lambda p: p[0].update(maxFailures="3"), "maxFailures"),
        (lambda p: p[0].update(window="1.5m"), "window"),
        (lambda p: p[0].update(blockFor="0s"), "blockFor"),
        (lambda p: p[0].update(blockFor="15 m"), "blockFor"),
        (lambda p: p[0].pop("blockFor"), "blockFor"),
        (lambda p: p[0].update(name="-x"), "name"),
        (lambda p: p[0].update(extra=1), "extra"),
        (lambda p: p.extend(copy.deepcopy(p) * 2), "bruteForce"),
    ],
)
def test_the_schema_refuses_malformed_fields(
    change: Callable[[list[dict[str, Any]]], object], field: str
) -> None:
    problems = validate_document(edited(change))
    assert any(field in p.path or field in p.message for p in problems), problems


def test_a_broken_protection_is_named_by_its_field() -> None:
    document = edited(lambda p: p[0].update(window="3d"))
    paths = [p.path for p in loader_problems(document)]
    assert "spec.protection.bruteForce[0].window" in paths


def test_a_policy_without_protection_compiles_to_none() -> None:
    document = policy()
    del document["spec"]["protection"]
    assert build(document).policies[0].brute_force == ()
    document["spec"]["protection"] = {}
    assert build(document).policies[0].brute_force == ()
