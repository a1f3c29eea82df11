"""The CRD's CEL rules and the loader agree: evaluate each x-kubernetes-validations rule with a
CEL implementation (cel-python) where the API server would, and compare with the loader."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from authz.errors import PolicyError
from authz.jwt.providers import offline_provider
from authz.policy import compile as comp
from authz.policy.compile import compile_policy
from authz.policy.schema import openapi_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted([*ROOT.glob("examples/**/*.yaml")])
_ENV = celpy.Environment()


def cel_failures(schema: dict[str, Any], value: Any) -> Iterator[str]:
    """Messages of every CEL rule that fails, walking the schema like the API server does."""
    for rule in schema.get("x-kubernetes-validations", []):
        program = _ENV.program(_ENV.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            yield rule["message"]
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from cel_failures(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from cel_failures(schema["items"], item)


def loader_messages(document: dict[str, Any]) -> set[str]:
    try:
        compile_policy(document, bind=offline_provider)
    except PolicyError as exc:
        return {p.message for p in exc.problems}
    return set()


def _good() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "examples/reference/orders.yaml").read_text())
    return loaded


def _mutate(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(_good())
    change(doc["spec"])
    return doc


BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "two key sources": (lambda s: s["issuers"][0].update(discovery=True), comp.MSG_ONE_KEY_SOURCE),
    "no key source": (lambda s: s["issuers"][0].pop("jwksUri"), comp.MSG_ONE_KEY_SOURCE),
    "duplicate issuer": (
        lambda s: s["issuers"].append(copy.deepcopy(s["issuers"][0])),
        comp.MSG_UNIQUE_ISSUERS,
    ),
    "duplicate rule": (
        lambda s: s["rules"].append(copy.deepcopy(s["rules"][0])),
        comp.MSG_UNIQUE_RULES,
    ),
    "anonymous with scopes": (
        lambda s: s["rules"][0].update(scopes={"allOf": ["x"]}),
        comp.MSG_ANONYMOUS_SCOPES,
    ),
    "empty scopes": (lambda s: s["rules"][1].update(scopes={"allOf": []}), comp.MSG_SCOPES_EMPTY),
    "claim and value": (
        lambda s: s["response"]["setHeaders"][0].update(value="v"),
        comp.MSG_CLAIM_OR_VALUE,
    ),
    "neither claim nor value": (
        lambda s: s["response"]["setHeaders"][0].pop("claim"),
        comp.MSG_CLAIM_OR_VALUE,
    ),
    "no issuers but a token rule": (lambda s: s.pop("issuers"), comp.MSG_ISSUERS_NEEDED),
}


def test_every_cel_message_is_a_loader_message() -> None:
    crd_messages: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            crd_messages.update(r["message"] for r in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(openapi_schema())
    loader = {v for k, v in vars(comp).items() if k.startswith("MSG_")}
    assert crd_messages == loader


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_cel_and_loader(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        assert list(cel_failures(dict(openapi_schema()), document)) == []
        assert loader_messages(document) == set()


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_documents_fail_cel_and_loader_alike(name: str) -> None:
    change, message = BROKEN[name]
    document = _mutate(change)
    assert message in set(cel_failures(dict(openapi_schema()), document))
    assert message in loader_messages(document)
