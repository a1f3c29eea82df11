"""Validate AuthPolicy documents against the CRD's openAPIV3Schema - the single source of truth.

The CRD (deploy/crds/authz.dev_authpolicies.yaml, shipped inside the package) is read once and
turned into a JSON Schema with one deliberate difference: unknown fields are errors, as with
`kubectl apply --validate=strict`, because a typo (`scope:` for `scopes:`) must not silently
drop a requirement. Cross-field rules (the CRD's x-kubernetes-validations) are enforced by the
compiler with the same messages; a test evaluates the CEL rules and checks that both agree.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any, cast

import yaml
from jsonschema import Draft4Validator, ValidationError

from authz.errors import Problem
from authz.policy.fastschema import Check, Unsupported, compile_schema

log = logging.getLogger(__name__)
_TRUSTED_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

API_VERSION = "authz.dev/v1alpha1"
KIND = "AuthPolicy"
CRD_RESOURCE = "authz.dev_authpolicies.yaml"

_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_NAMESPACE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

#: Files have no API server to fill metadata in, so the loader checks what it relies on.
_FILE_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": _NAME},
        "namespace": {"type": "string", "pattern": _NAMESPACE},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "creationTimestamp": {"type": ["string", "null"]},
        "generation": {"type": "integer"},
    },
}


def crd_text() -> str:
    """The CRD manifest shipped with the package."""
    return resources.files("authz.policy").joinpath("crd", CRD_RESOURCE).read_text("utf-8")


@functools.cache
def crd() -> Mapping[str, Any]:
    # Our own file, not user input: libyaml when present (a tenth of the pure-Python time).
    loaded: Mapping[str, Any] = yaml.load(crd_text(), Loader=_TRUSTED_LOADER)  # noqa: S506
    return loaded


def openapi_schema() -> Mapping[str, Any]:
    """The openAPIV3Schema of the served version, exactly as in the CRD."""
    for version in crd()["spec"]["versions"]:
        if version["name"] == API_VERSION.split("/")[1]:
            schema: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise LookupError(f"the CRD does not define {API_VERSION}")


def _strict(node: Any) -> Any:
    """Copy an openAPI schema, making unknown properties errors unless the CRD preserves them."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def _validator() -> Draft4Validator:
    schema = _strict(copy.deepcopy(dict(openapi_schema())))
    schema["properties"]["metadata"] = _FILE_METADATA
    schema["properties"]["apiVersion"] = {"enum": [API_VERSION]}
    schema["properties"]["kind"] = {"enum": [KIND]}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return Draft4Validator(schema)


def field_path(parts: Iterator[str | int] | Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems(error: ValidationError) -> Iterator[Problem]:
    where = field_path(error.absolute_path)
    join = (where + ".") if where else ""
    instance = error.instance
    expected: Any = error.validator_value
    schema: Any = error.schema
    if error.validator == "required" and isinstance(instance, Mapping):
        for name in expected:
            if name not in instance:
                yield Problem(f"{join}{name}", "required field is missing")
    elif error.validator == "additionalProperties" and isinstance(instance, Mapping):
        allowed = schema.get("properties", {})
        for name in sorted(k for k in instance if k not in allowed):
            hint = f" (known fields: {', '.join(sorted(allowed))})" if allowed else ""
            yield Problem(f"{join}{name}", f"unknown field{hint}")
    elif error.validator == "enum":
        options = ", ".join(repr(v) for v in expected)
        yield Problem(where, f"{instance!r} is not one of {options}")
    elif error.validator == "type":
        yield Problem(
            where, f"must be of type {error.validator_value}, not {type(instance).__name__}"
        )
    else:
        yield Problem(where, error.message)


@functools.cache
def _valid() -> Check | None:
    """The compiled yes/no check (fastschema.py), or None when the schema is beyond it."""
    try:
        return compile_schema(cast(Mapping[str, Any], _validator().schema))
    except Unsupported as exc:
        log.warning("policy validation takes the slow path only: the schema uses %s", exc)
        return None


def validate_document(document: object) -> list[Problem]:
    """Every schema problem of one document (empty when it is valid)."""
    if not isinstance(document, Mapping):
        return [Problem("", "a policy document must be a mapping")]
    valid = _valid()
    if valid is not None and valid(document):
        return []
    problems: list[Problem] = []
    for error in _validator().iter_errors(document):
        problems.extend(_problems(error))
    return sorted(set(problems), key=lambda p: (p.path, p.message))
