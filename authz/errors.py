"""The check path's exception tree and the deny reasons users see.

Deny reasons are part of the public contract: they appear as `error` in deny bodies, in logs
and as metric label values, so each is a named constant here and nowhere else (the habit of
OPA-Envoy's internal/errors.go). The policy sources extend the tree with their own errors and
reasons (authz.controller.errors: the Kubernetes API, watch restarts, AuthPolicy status), and
the token checks add two that never answer a check as such (authz.jwt.secrets.SecretUnavailable
becomes IntrospectionUnavailable; authz.jwt.revocation.RevocationError refuses an admin request).

    AuthzError                      base; `code` is a stable reason string
    +-- PolicyError                 a policy document is invalid (carries Problems)
    +-- TokenError                  a bearer token is not acceptable -> 401 invalid_token
    |   +-- ProofError              a DPoP proof is not acceptable -> 401 invalid_dpop_proof
    +-- KeysUnavailable             an issuer's keys were never fetched -> 503 issuer_unavailable
    |   +-- IntrospectionUnavailable    (authz.jwt.introspection) the endpoint failed -> 503 too
    +-- PathError                   a request path cannot be normalized safely -> 400 invalid_path
    +-- ConfigError                 a flag or environment variable is wrong (CLI exits 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Decision reasons (stable; used in deny bodies, logs and metric labels).
ALLOWED: Final = "allowed"
NO_POLICY: Final = "no_policy"
INVALID_PATH: Final = "invalid_path"
ACCESS_DENIED: Final = "access_denied"
MISSING_TOKEN: Final = "missing_token"
INVALID_TOKEN: Final = "invalid_token"
INVALID_DPOP_PROOF: Final = "invalid_dpop_proof"
USE_DPOP_NONCE: Final = "use_dpop_nonce"
INSUFFICIENT_SCOPE: Final = "insufficient_scope"
ISSUER_UNAVAILABLE: Final = "issuer_unavailable"
INTERNAL_ERROR: Final = "internal_error"
IP_DENIED: Final = "ip_denied"
RATE_LIMITED: Final = "rate_limited"
RATELIMIT_UNAVAILABLE: Final = "ratelimit_unavailable"
CONDITION_FAILED: Final = "condition_failed"
#: A response on a rule with responseBody redactions that cannot be redacted (ext_proc, 502).
RESPONSE_UNPARSEABLE: Final = "response_unparseable"
BLOCKED: Final = "blocked"


class AuthzError(Exception):
    """Base of every error the sidecar raises on purpose."""

    code: str = INTERNAL_ERROR


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy document: where (a field path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PolicyError(AuthzError):
    """A policy document failed validation or compilation."""

    code = "invalid_policy"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


class TokenError(AuthzError):
    """The bearer token is malformed, forged, expired or not meant for us."""

    code = INVALID_TOKEN


class ProofError(TokenError):
    """The DPoP proof sent with a DPoP-bound token is missing, malformed, forged or replayed."""

    code = INVALID_DPOP_PROOF


class KeysUnavailable(AuthzError):
    """The issuer's signing keys have never been fetched: a temporary condition (503)."""

    code = ISSUER_UNAVAILABLE


class PathError(AuthzError):
    """The request path cannot be normalized without guessing what the upstream would see."""

    code = INVALID_PATH


class ConfigError(AuthzError):
    """A command-line flag or environment variable has an unusable value."""

    code = "invalid_config"
