"""The seam between the controller and the Kubernetes API: a Protocol and plain data types.

Everything in authz.controller talks to the cluster through `KubeApi`; only kube.py implements it
with the `kubernetes` client. Objects travel as raw JSON mappings (what the API server sent), so
the controller never depends on the client's generated model classes, and errors arrive as
authz.controller.errors.KubeError (status, reason) or KubeUnavailable (the server is away).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

GROUP: Final = "authz.dev"
VERSION: Final = "v1alpha1"
PLURAL: Final = "authpolicies"
KIND: Final = "AuthPolicy"

#: A Kubernetes object as JSON.
RawObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a list: its items, the list's resourceVersion, and the continue token."""

    items: tuple[RawObject, ...]
    resource_version: str
    continue_token: str | None


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """ADDED, MODIFIED, DELETED or BOOKMARK (ERROR events are raised as KubeError instead)."""

    type: str
    object: RawObject

    @property
    def resource_version(self) -> str | None:
        meta = self.object.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        return rv if isinstance(rv, str) and rv else None


class WatchStream(Protocol):
    """An open watch. Iterating blocks in the socket read; `close` may be called from any thread
    and makes the iteration end promptly (shutdown must not wait for the next event)."""

    def __iter__(self) -> Iterator[WatchEvent]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The fields of a coordination.k8s.io/v1 Lease that leader election uses."""

    holder: str | None
    duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int
    #: The stored object's resourceVersion: a replace must name it (optimistic concurrency).
    resource_version: str | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A core/v1 Event about one AuthPolicy (what `kubectl describe ap NAME` lists)."""

    #: The AuthPolicy the event is about (its apiVersion, kind and metadata are used).
    regarding: RawObject
    #: "Normal" or "Warning".
    type: str
    reason: str
    message: str
    #: Who reports it: the component ("authz") and this replica's identity.
    component: str
    instance: str
    time: datetime


class KubeApi(Protocol):
    """The requests the controller makes. Blocking: call them from worker threads.

    Raises authz.controller.errors.KubeUnavailable when the server cannot be reached (or times out) and
    KubeError(status=...) when it answers with an error.
    """

    def list_policies(
        self,
        namespace: str | None,
        *,
        selector: str | None,
        limit: int,
        continue_token: str | None,
    ) -> ListPage:
        """One page of AuthPolicies (namespace None: every namespace)."""

    def watch_policies(
        self,
        namespace: str | None,
        *,
        selector: str | None,
        resource_version: str,
        timeout_seconds: int,
        stall_timeout: float,
    ) -> WatchStream:
        """Watch from `resource_version` with bookmarks; a silent stream raises WatchStalled."""

    def patch_policy_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> RawObject:
        """A JSON merge patch on the status subresource; returns the updated object."""

    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        """The Lease, or None when it does not exist."""

    def create_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        """Create the Lease (KubeError 409 when another replica created it first)."""

    def replace_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        """Replace the Lease; `record.resource_version` must be current (else KubeError 409)."""

    def create_event(self, event: EventRecord) -> None:
        """Create a core/v1 Event in the namespace of the object it is about."""
