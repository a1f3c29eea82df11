"""Host ownership: which namespace's AuthPolicies may claim which hosts.

In a shared cluster any team can create an AuthPolicy, and a policy decides who reaches a host:
without a rule, the first team to claim a host (or a broad wildcard) takes it over. The cluster
admin therefore grants host patterns per namespace (`--allowed-hosts`), and a policy is served
only when every one of its hosts is covered by a grant of its own namespace:

    grant                   covers
    "orders.example.com"    that host only (never a wildcard policy host)
    "*.example.com"         every host below example.com, at any depth, and every wildcard
                            policy host at least as narrow ("*.example.com", "*.eu.example.com");
                            not example.com itself
    "*"                     every host and every wildcard: the namespace is trusted with all

A policy with one host outside its grants is refused whole: serving its other hosts would make
a half policy that nobody wrote. The check runs when a snapshot is built, never per request.
Grants are compared after the same normalization as policy hosts (lower case, no trailing dot);
host names must be ASCII, so an internationalized name is granted in its punycode form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from authz.errors import Problem
from authz.policy.matchers import normalize_host_pattern
from authz.policy.model import CompiledPolicy

#: The grant that covers every host.
ANY_HOST = "*"
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class NamespaceGrant:
    """The host patterns one namespace was granted, indexed for O(labels) lookups."""

    exact: frozenset[str] = frozenset()
    #: "*.example.com" is stored as "example.com".
    suffixes: frozenset[str] = frozenset()
    any_host: bool = False

    def covers(self, host: str) -> bool:
        """Whether this grant lets a policy claim `host` (a normalized policy host pattern)."""
        if self.any_host:
            return True
        if host.startswith("*."):
            return _under_a_suffix(host[2:], self.suffixes, inclusive=True)
        return host in self.exact or _under_a_suffix(host, self.suffixes, inclusive=False)


def _under_a_suffix(domain: str, suffixes: frozenset[str], *, inclusive: bool) -> bool:
    """Whether `domain` (or, when inclusive, the domain itself) lies below one of `suffixes`."""
    if inclusive and domain in suffixes:
        return True
    dot = domain.find(".")
    while dot >= 0:
        if domain[dot + 1 :] in suffixes:
            return True
        dot = domain.find(".", dot + 1)
    return False


@dataclass(frozen=True, slots=True)
class HostGrants:
    """Every namespace's grants; a namespace not listed may claim no host at all."""

    namespaces: Mapping[str, NamespaceGrant]
    #: Where the grants came from, for messages (e.g. "--allowed-hosts /etc/authz/hosts.yaml").
    origin: str

    def refused_hosts(self, namespace: str, hosts: Iterable[str]) -> list[str]:
        grant = self.namespaces.get(namespace)
        return [host for host in hosts if grant is None or not grant.covers(host)]

    def problems(self, policy: CompiledPolicy) -> tuple[Problem, ...]:
        """Why `policy` may not be served under these grants (empty when it may)."""
        return tuple(
            Problem(
                "spec.hosts",
                f"host {host!r} is not granted to namespace {policy.namespace!r} "
                f"(see {self.origin})",
            )
            for host in self.refused_hosts(policy.namespace, policy.hosts)
        )


def normalize_grant(pattern: object) -> str:
    """A grant pattern in its compared form. Raises ValueError saying what is wrong."""
    if not isinstance(pattern, str):
        raise ValueError(f"{pattern!r} is not a host pattern (a string)")
    text = pattern.strip()
    if not text:
        raise ValueError("an empty host pattern grants nothing; remove it")
    if text == ANY_HOST:
        return ANY_HOST
    if not text.isascii():
        try:
            suggestion = text.encode("idna").decode("ascii")
        except UnicodeError:
            suggestion = None
        hint = f"; write it in punycode: {suggestion!r}" if suggestion else ""
        raise ValueError(f"{pattern!r} is not an ASCII host name{hint}")
    try:
        return normalize_host_pattern(text)
    except ValueError:
        raise ValueError(
            f"{pattern!r} is not a host name, a *.domain wildcard or {ANY_HOST!r} (every host)"
        ) from None


def grants_from(data: object, *, origin: str) -> HostGrants:
    """HostGrants from a parsed `{namespace: [pattern, ...]}` mapping. Raises ValueError."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(
            "expected a mapping of namespace to a list of host patterns, e.g. "
            "{shop: [orders.example.com, '*.shop.example.com']}"
        )
    namespaces: dict[str, NamespaceGrant] = {}
    for namespace, patterns in data.items():
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ValueError(f"{namespace!r} is not a namespace name")
        if patterns is None:
            patterns = []
        if isinstance(patterns, str) or not isinstance(patterns, list):
            raise ValueError(f"{namespace}: expected a list of host patterns, got {patterns!r}")
        normalized = []
        for index, pattern in enumerate(patterns):
            try:
                normalized.append(normalize_grant(pattern))
            except ValueError as exc:
                raise ValueError(f"{namespace}[{index}]: {exc}") from None
        namespaces[namespace] = NamespaceGrant(
            exact=frozenset(p for p in normalized if p != ANY_HOST and not p.startswith("*.")),
            suffixes=frozenset(p[2:] for p in normalized if p.startswith("*.")),
            any_host=ANY_HOST in normalized,
        )
    return HostGrants(namespaces, origin)


def apply_grants(
    policies: Iterable[CompiledPolicy], grants: HostGrants | None
) -> tuple[list[CompiledPolicy], dict[str, tuple[Problem, ...]]]:
    """The policies `grants` allow, and why each other one is refused (key -> problems)."""
    if grants is None:
        return list(policies), {}
    allowed: list[CompiledPolicy] = []
    refused: dict[str, tuple[Problem, ...]] = {}
    for policy in policies:
        problems = grants.problems(policy)
        if problems:
            refused[policy.key] = problems
        else:
            allowed.append(policy)
    return allowed, refused
