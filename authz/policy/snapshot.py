"""The immutable snapshot a check reads, and the host index inside it.

Host lookup is O(labels in the host), independent of how many policies exist: one dict probe
for the exact host, then one per parent domain for "*.suffix" wildcards, most specific first.
A snapshot is never changed after it is built; new policies mean a new snapshot, swapped in
with one reference assignment, so a check never sees half an update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from authz.errors import Problem
from authz.policy.model import CompiledPolicy


class PolicyStateKind(StrEnum):
    READY = "ready"
    INVALID = "invalid"
    CONFLICTED = "conflicted"
    #: A host of the policy is outside what its namespace was granted (authz.policy.ownership).
    HOST_NOT_ALLOWED = "host_not_allowed"


@dataclass(frozen=True, slots=True)
class PolicyState:
    """How one policy document fared: for logs, `authz validate`, ListPolicies and CR status."""

    key: str
    #: Where it came from, e.g. "file:policies/shop.yaml:0" or "kubernetes:shop/orders".
    location: str
    state: PolicyStateKind
    message: str
    #: True when some version of this policy is enforced (the current one, or the last good one).
    serving: bool
    generation: int | None = None
    #: The individual problems behind `message` (empty when ready).
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class HostIndex:
    exact: Mapping[str, CompiledPolicy] = field(default_factory=dict)
    #: "*.example.com" is stored under "example.com".
    wildcard: Mapping[str, CompiledPolicy] = field(default_factory=dict)

    def lookup(self, host: str) -> CompiledPolicy | None:
        found = self.exact.get(host)
        if found is not None:
            return found
        # "*" never matches an empty label: ".x.test" and "a..x.test" are not subdomains of x.test.
        if self.wildcard and not host.startswith(".") and ".." not in host:
            dot = host.find(".")
            while dot >= 0:
                found = self.wildcard.get(host[dot + 1 :])
                if found is not None:
                    return found
                dot = host.find(".", dot + 1)
        return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    index: HostIndex
    states: tuple[PolicyState, ...]
    #: Increases with every published snapshot.
    serial: int

    def lookup(self, host: str) -> CompiledPolicy | None:
        return self.index.lookup(host)

    @property
    def policies(self) -> tuple[CompiledPolicy, ...]:
        seen = {id(p): p for p in (*self.index.exact.values(), *self.index.wildcard.values())}
        return tuple(seen.values())


EMPTY = Snapshot(HostIndex(), (), 0)


def normalize_request_host(authority: str) -> str:
    """The host part of a Host/:authority value: port dropped, lower-cased, trailing dot removed."""
    host = authority.strip().lower()
    if host.startswith("["):  # IPv6 literal: [::1]:8080
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    colon = host.rfind(":")
    if colon >= 0 and host[colon + 1 :].isdigit():
        host = host[:colon]
    return host.rstrip(".")


def _age(policy: CompiledPolicy) -> tuple[bool, float, str, str]:
    """Sort key: policies with a creation time first, oldest first; then namespace/name."""
    created = _timestamp(policy.created)
    return (created is None, created or 0.0, policy.namespace, policy.name)


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def build_index(policies: list[CompiledPolicy]) -> tuple[HostIndex, dict[str, str]]:
    """Index policies by host. The older policy (creation time, then namespace/name) wins a host;
    a policy that loses any host is left out entirely and reported (key -> message)."""
    exact: dict[str, CompiledPolicy] = {}
    wildcard: dict[str, CompiledPolicy] = {}
    conflicts: dict[str, str] = {}
    for policy in sorted(policies, key=_age):
        taken = [
            (host, (wildcard if host.startswith("*.") else exact).get(host.removeprefix("*.")))
            for host in policy.hosts
        ]
        clashes = [(host, owner) for host, owner in taken if owner is not None]
        if clashes:
            conflicts[policy.key] = "; ".join(
                f"host {host!r} is already claimed by the older policy {owner.key}"
                for host, owner in clashes
            )
            continue
        for host in policy.hosts:
            if host.startswith("*."):
                wildcard[host[2:]] = policy
            else:
                exact[host] = policy
    return HostIndex(exact, wildcard), conflicts
