"""Label values shared by metrics, the decision log and spans: a closed, stable set.

Metric labels must have bounded cardinality, so every value a label can take is named here
(reasons are in authz.errors); subjects, client IPs, paths and tokens never become labels.
"""

from __future__ import annotations

from typing import Final

# The `decision` label and log field.
ALLOW: Final = "allow"
DENY: Final = "deny"

# authz_policies{state}: mirrors authz.policy.snapshot.PolicyStateKind.
POLICY_STATES: Final = ("ready", "invalid", "conflicted", "host_not_allowed")

# authz_jwks_fetch_total{result}.
FETCH_OK: Final = "success"
FETCH_ERROR: Final = "error"

# authz_ratelimit_backend_mode{mode}.
BACKEND_MODES: Final = ("redis", "fallback")


def decision_label(allowed: bool) -> str:
    return ALLOW if allowed else DENY


#: authz_introspection_total's result label.
INTROSPECTION_RESULTS: Final = ("active", "inactive", "cached", "error", "shed")
