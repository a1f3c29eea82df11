"""The rule a response belongs to: found again from the request, as the check found it.

Envoy's ext_proc filter runs after ext_authz and sees the same request: the host picks the
policy, the normalized path and the method pick the rule, through the same code the check's
host, path and rule steps use. The scopes are not read from the request (the check may have
removed the Authorization header, and nothing the client sends is trusted here): the check
hands them over in Envoy's dynamic metadata (see server.extproc).
"""

from __future__ import annotations

from authz.errors import PathError
from authz.pipeline.steps.path import normalize_path
from authz.policy.model import CompiledPolicy, Rule
from authz.policy.snapshot import Snapshot, normalize_request_host


def response_rule(
    snapshot: Snapshot, *, method: str, authority: str, raw_path: str
) -> tuple[CompiledPolicy, Rule] | None:
    """The policy and rule of a request; None when the check would not have allowed it."""
    policy = snapshot.lookup(normalize_request_host(authority))
    if policy is None:
        return None
    try:
        path = normalize_path(raw_path)
    except PathError:
        return None
    method = method.upper()
    for rule in policy.rules:
        if rule.matches(method, path):
            return policy, rule
    return None
