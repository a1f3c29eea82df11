"""The CRD's CEL rules evaluated where the API server would, and the loader asked the same.

The fake API server checks the structural schema but runs no CEL, so the CRD tests evaluate every
x-kubernetes-validations rule here with a CEL implementation (cel-python) and compare the
messages with what the loader (the compiler behind `authz validate` and status) says.

A field named like a CEL keyword (`in`) is written `self.__in__` in a CRD rule, as Kubernetes
requires; cel-python reads plain maps, so such a `has()` is asked as `'in' in self` here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy

from authz.errors import PolicyError, Problem
from authz.jwt.providers import offline_provider
from authz.policy.compile import compile_policy
from authz.policy.schema import openapi_schema

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "deploy/crds/authz.dev_authpolicies.yaml"
_ENV = celpy.Environment()
_ESCAPED_HAS = re.compile(r"has\(self\.__(\w+)__\)")


def _unescaped(rule: str) -> str:
    return _ESCAPED_HAS.sub(r"('\1' in self)", rule)


def cel_failures(document: Any, schema: dict[str, Any] | None = None) -> Iterator[str]:
    """Messages of every CEL rule the document fails, walking the schema like the API server."""
    node = dict(openapi_schema()) if schema is None else schema
    for rule in node.get("x-kubernetes-validations", []):
        program = _ENV.program(_ENV.compile(_unescaped(rule["rule"])))
        if not program.evaluate({"self": celpy.json_to_cel(document)}):
            yield rule["message"]
    if isinstance(document, dict):
        for name, sub in node.get("properties", {}).items():
            if name in document:
                yield from cel_failures(document[name], sub)
    elif isinstance(document, list) and "items" in node:
        for item in document:
            yield from cel_failures(item, node["items"])


def loader_problems(document: dict[str, Any]) -> list[Problem]:
    """What the loader says about a document, as `authz validate` and status report it."""
    try:
        compile_policy(document, bind=offline_provider)
    except PolicyError as exc:
        return list(exc.problems)
    return []


def loader_messages(document: dict[str, Any]) -> set[str]:
    """The loader's messages without their field paths, comparable with CEL's."""
    return {p.message for p in loader_problems(document)}
