"""The controller's errors and the stable reasons it reports.

Kubernetes API failures are errors of the policy source, never of a check, so they live with
the controller instead of beside the deny reasons in authz.errors:

    AuthzError (authz.errors)
    +-- KubeError                   the Kubernetes API answered with an error (`status`, `reason`)
        +-- KubeUnavailable         the API server could not be reached, or a request timed out
            +-- WatchStalled        a watch stream sent nothing (not even a bookmark) for too long

The reasons below are part of the public contract: they appear in AuthPolicy status and as
metric label values.
"""

from __future__ import annotations

from typing import Final

from authz.errors import AuthzError

# AuthPolicy status: the Ready condition's reasons (also status-write metric labels).
STATUS_ACCEPTED: Final = "Accepted"
STATUS_INVALID: Final = "Invalid"
STATUS_CONFLICTED: Final = "Conflicted"
STATUS_HOST_NOT_ALLOWED: Final = "HostNotAllowed"
STATUS_ISSUER_UNAVAILABLE: Final = "IssuerUnavailable"

# Why a watch was restarted (metric label values).
WATCH_ENDED: Final = "ended"  # the server closed it (timeoutSeconds): rewatch from the last version
WATCH_EXPIRED: Final = "expired"  # 410 Gone: the version is compacted away, so re-list
WATCH_STALLED: Final = "stalled"  # nothing arrived within the stall timeout
WATCH_UNAVAILABLE: Final = "unavailable"  # the API server could not be reached
WATCH_ERROR: Final = "error"  # the API server refused (e.g. 403) or answered garbage


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
