"""The host step: which policy protects the request's host - first of all.

Every later step is evaluated within that policy (its issuers, rules, mode), so this one runs
before the check's Context exists and hands it its policy. A host that no policy claims is
refused (403 no_policy): an unprotected host is a mistake to surface, not traffic to let by.
"""

from __future__ import annotations

from authz.pipeline import decision as d
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Tracer
from authz.policy.model import CompiledPolicy
from authz.policy.snapshot import Snapshot


def find_policy(
    snapshot: Snapshot, request: CheckInput, *, trace: Tracer
) -> CompiledPolicy | Decision:
    policy = snapshot.lookup(request.host)
    if policy is None:
        trace.add("host", "fail", "no policy claims host {!r}", request.host)
        return d.no_policy(request.host)
    trace.add("host", "pass", "{!r} -> policy {.key}", request.host, policy)
    return policy
