"""One exception tree and the stable codes users see.

Deny reasons are part of the public contract: they appear as `error` in deny bodies, in logs
and as metric label values, so each is a named constant here and nowhere else (the habit of
OPA-Envoy's internal/errors.go).

    AuthzError                      base; `code` is a stable reason string
    +-- PolicyError                 a policy document is invalid (carries Problems)
    +-- TokenError                  a bearer token is not acceptable -> 401 invalid_token
    +-- KeysUnavailable             an issuer's keys were never fetched -> 503 issuer_unavailable
    +-- PathError                   a request path cannot be normalized safely -> 400 invalid_path
    +-- ConfigError                 a flag or environment variable is wrong (CLI exits 2)
    +-- KubeError                   the Kubernetes API answered with an error (`status`, `reason`)
        +-- KubeUnavailable         the API server could not be reached, or a request timed out
            +-- WatchStalled        a watch stream sent nothing (not even a bookmark) for too long
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
INSUFFICIENT_SCOPE: Final = "insufficient_scope"
ISSUER_UNAVAILABLE: Final = "issuer_unavailable"
INTERNAL_ERROR: Final = "internal_error"
IP_DENIED: Final = "ip_denied"
RATE_LIMITED: Final = "rate_limited"
RATELIMIT_UNAVAILABLE: Final = "ratelimit_unavailable"

# AuthPolicy status: the Ready condition's reasons (stable; also status-write metric labels).
STATUS_ACCEPTED: Final = "Accepted"
STATUS_INVALID: Final = "Invalid"
STATUS_CONFLICTED: Final = "Conflicted"
STATUS_ISSUER_UNAVAILABLE: Final = "IssuerUnavailable"

# Why a Kubernetes watch was restarted (stable; metric label values).
WATCH_ENDED: Final = "ended"  # the server closed it (timeoutSeconds): rewatch from the last version
WATCH_EXPIRED: Final = "expired"  # 410 Gone: the version is compacted away, so re-list
WATCH_STALLED: Final = "stalled"  # nothing arrived within the stall timeout
WATCH_UNAVAILABLE: Final = "unavailable"  # the API server could not be reached
WATCH_ERROR: Final = "error"  # the API server refused (e.g. 403) or answered garbage


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


class KeysUnavailable(AuthzError):
    """The issuer's signing keys have never been fetched: a temporary condition (503)."""

    code = ISSUER_UNAVAILABLE


class PathError(AuthzError):
    """The request path cannot be normalized without guessing what the upstream would see."""

    code = INVALID_PATH


class ConfigError(AuthzError):
    """A command-line flag or environment variable has an unusable value."""

    code = "invalid_config"


class KubeError(AuthzError):
    """The Kubernetes API answered a request with an error status (e.g. 403, 409, 410)."""

    code = "kubernetes_error"

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeUnavailable(KubeError):
    """The API server could not be reached, or did not answer in time (an outage, not a refusal)."""

    code = "kubernetes_unavailable"


class WatchStalled(KubeUnavailable):
    """A watch stream was silent (no event, no bookmark) longer than the stall timeout."""

    code = "watch_stalled"
