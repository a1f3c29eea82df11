"""Compile what an issuer says about tokens beyond their signature: introspection and lifetime.

`issuers[].introspection` becomes an IntrospectionSpec (the endpoint, the client and the
reference to its secret - never the secret, which is read at call time from --secrets-dir), and
`issuers[].maxTokenLifetime` a number of seconds. The CRD's schema and CEL rule catch most
mistakes; here are the checks that need code (a URL the sidecar may call, a Secret reference
that names a file safely), with messages that say how to fix them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authz.errors import Problem
from authz.jwt.introspection import IntrospectionSpec
from authz.jwt.secrets import SecretRef, ref_problem
from authz.jwt.sources import check_fetch_url
from authz.ratelimit.spec import parse_window

#: Shared with the CRD's CEL rule (tests/crd keeps them in step).
MSG_INTROSPECTION_ENDPOINT = "introspection needs an endpoint, or discovery true to find it"
#: cacheSeconds when the policy does not say.
DEFAULT_CACHE_SECONDS = 60


def max_lifetime(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> float | None:
    text = raw.get("maxTokenLifetime")
    if text is None:
        return None
    try:
        return float(parse_window(text))
    except ValueError as exc:
        problems.append(Problem(f"{where}.maxTokenLifetime", str(exc)))
        return None


def introspection(
    raw: Mapping[str, Any], where: str, *, namespace: str, problems: list[Problem]
) -> IntrospectionSpec | None:
    spec = raw.get("introspection")
    if spec is None:
        return None
    where = f"{where}.introspection"
    endpoint = spec.get("endpoint")
    if endpoint is None and not raw.get("discovery"):
        problems.append(Problem(where, MSG_INTROSPECTION_ENDPOINT))
        return None
    if endpoint is not None:
        refusal = check_fetch_url(endpoint)
        if refusal:
            problems.append(Problem(f"{where}.endpoint", refusal))
            return None
    ref = spec["clientSecretRef"]
    problem = ref_problem(ref["name"], ref["key"])
    if problem:
        problems.append(Problem(f"{where}.clientSecretRef", problem))
        return None
    return IntrospectionSpec(
        issuer=raw["issuer"],
        endpoint=endpoint,
        client_id=spec["clientId"],
        secret=SecretRef(namespace, ref["name"], ref["key"]),
        cache_seconds=float(spec.get("cacheSeconds", DEFAULT_CACHE_SECONDS)),
    )
