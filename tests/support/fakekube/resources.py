"""The resource types the fake serves, and how each one's write semantics differ.

Custom resources and built-in types are not handled alike by the real API server, and a controller
meets both (its AuthPolicies, its leader Lease, its Events). The flags below carry the differences
that matter to a client: CRs need apiVersion/kind in the body, refuse strategic merge patch, demand
a resourceVersion on PUT and track metadata.generation; built-ins do not. AuthPolicy's type is read
from its CRD so the fake cannot drift from the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BASE_FIELD_SELECTORS = ("metadata.name", "metadata.namespace")

# Core v1 Events also accept these (the real server's event field set).
_CORE_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


@dataclass(frozen=True)
class ResourceType:
    """One served resource: its names, and which API-server strategy applies to its writes."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    custom: bool = False
    allow_create_on_update: bool = False
    allow_unconditional_update: bool = True
    field_selectors: tuple[str, ...] = BASE_FIELD_SELECTORS
    # Typed fields the real server re-encodes on decode: metav1.Time (seconds) and MicroTime.
    time_fields: tuple[str, ...] = ()
    micro_time_fields: tuple[str, ...] = ()
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The group-qualified resource used in error messages: ``authpolicies.authz.dev``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def tracks_generation(self) -> bool:
        # Custom resources get metadata.generation; Lease and Event strategies never set it.
        return self.custom


def crd_resource_types(path: Path) -> list[ResourceType]:
    """One ResourceType per served version of the CRD in ``path``."""
    crd = yaml.safe_load(path.read_text())
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                status_subresource="status" in (version.get("subresources") or {}),
                custom=True,
                allow_unconditional_update=False,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            )
        )
    return types


LEASES = ResourceType(
    group="coordination.k8s.io",
    version="v1",
    plural="leases",
    kind="Lease",
    singular="lease",
    micro_time_fields=("spec.acquireTime", "spec.renewTime"),
)
CORE_EVENTS = ResourceType(
    group="",
    version="v1",
    plural="events",
    kind="Event",
    singular="event",
    short_names=("ev",),
    allow_create_on_update=True,
    field_selectors=BASE_FIELD_SELECTORS + _CORE_EVENT_FIELDS,
    time_fields=("firstTimestamp", "lastTimestamp", "series.lastObservedTime"),
    micro_time_fields=("eventTime",),
)
EVENTS_V1 = ResourceType(
    group="events.k8s.io",
    version="v1",
    plural="events",
    kind="Event",
    singular="event",
    short_names=("ev",),
    allow_create_on_update=True,
    time_fields=("deprecatedFirstTimestamp", "deprecatedLastTimestamp"),
    micro_time_fields=("eventTime", "series.lastObservedTime"),
)
BUILTIN_TYPES = (LEASES, CORE_EVENTS, EVENTS_V1)


class Registry:
    """Resource types by (group, version, plural), as the URL names them."""

    def __init__(self, types: list[ResourceType]) -> None:
        self.types = list(types)
        self._by_path = {(t.group, t.version, t.plural): t for t in self.types}

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, in registration order."""
        out: dict[str, list[str]] = {}
        for t in self.types:
            versions = out.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return out


def storage_key(rt: ResourceType) -> str:
    """Where the objects of ``rt`` live in the store and the state file."""
    return f"{rt.group or 'core'}/{rt.version}/{rt.plural}"
