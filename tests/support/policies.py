"""AuthPolicy documents for tests: one builder with sensible defaults, overridden where it matters.

A test names only what it is about; the rest is a valid policy:

    auth_policy("shop")                                  # anonymous access to shop.test
    auth_policy("orders", hosts=["orders.test"], issuers=[issuer(keys=[KEY])],
                rules=[rule("read", paths=["/orders/*"], scopes=["orders:read"])])
    write_policies(tmp_path / "p.yaml", auth_policy("a"), auth_policy("b"))

Keyword arguments the builder does not name go into `spec` as they are (response, sourceIPs,
mode, rateLimitFailureMode, ...), so a field the CRD gains needs no change here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.keys import AUDIENCE, ISSUER, SigningKey

API_VERSION = "authz.dev/v1alpha1"
KIND = "AuthPolicy"
#: The response headers the orders policies of the decision and gateway tests set: three claims
#: of different shapes (a string, a nested member, a list) and one fixed value.
ORDERS_HEADERS = (
    {"name": "x-user-id", "claim": "sub"},
    {"name": "x-tenant", "claim": "org.tenant"},
    {"name": "x-roles", "claim": "roles"},
    {"name": "x-gateway", "value": "authz"},
)


def auth_policy(
    name: str = "test",
    *,
    namespace: str | None = "default",
    hosts: Sequence[str] | None = None,
    rules: Sequence[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A valid AuthPolicy: hosts default to `<name>.test`, rules to one anonymous rule "open".

    `namespace=None` leaves the namespace out (as a file may); `metadata` adds fields such as
    creationTimestamp or generation.
    """
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    meta.update(metadata or {})
    body: dict[str, Any] = {
        "hosts": list(hosts) if hosts is not None else [f"{name}.test"],
        "rules": list(rules) if rules is not None else [rule("open", anonymous=True)],
    }
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": body}


def issuer(
    *,
    jwks_uri: str | None = None,
    keys: Sequence[SigningKey] | None = None,
    name: str = ISSUER,
    audiences: Sequence[str] = (AUDIENCE,),
    **extra: Any,
) -> dict[str, Any]:
    """An issuer whose keys come from `jwks_uri`, or inline from `keys`."""
    entry: dict[str, Any] = {"issuer": name, "audiences": list(audiences)}
    if jwks_uri is not None:
        entry["jwksUri"] = jwks_uri
    if keys is not None:
        entry["jwks"] = {"keys": [k.jwk for k in keys]}
    entry.update(extra)
    return entry


def rule(
    name: str,
    *,
    paths: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    scopes: Sequence[str] | None = None,
    any_of: Sequence[str] | None = None,
    anonymous: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A rule: `scopes` are all required, `any_of` any one; `anonymous` needs no token."""
    entry: dict[str, Any] = {"name": name}
    match: dict[str, Any] = {}
    if methods is not None:
        match["methods"] = list(methods)
    if paths is not None:
        match["paths"] = list(paths)
    if match:
        entry["match"] = match
    required: dict[str, Any] = {}
    if scopes is not None:
        required["allOf"] = list(scopes)
    if any_of is not None:
        required["anyOf"] = list(any_of)
    if required:
        entry["scopes"] = required
    if anonymous:
        entry["allowAnonymous"] = True
    entry.update(extra)
    return entry


def to_yaml(*documents: dict[str, Any]) -> str:
    """Documents as one multi-document YAML text, the way a person writes policy files."""
    return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True)


def write_policies(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(to_yaml(*documents))
    return path
