"""Compiled policy state: frozen, precomputed, and cheap to evaluate on the check path.

Raw documents are validated dictionaries (see schema.py); everything the pipeline touches per
request lives here in its final form - lower-cased hosts, method sets, compiled path matchers,
scope sets, the WWW-Authenticate scope text, header templates with parsed claim paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from authz.jwt.verify import IssuerSpec
from authz.policy.conditions import Condition
from authz.policy.matchers import PathMatcher
from authz.policy.redact import ResponseBody
from authz.policy.traffic import IPFilter
from authz.ratelimit.blocks import Protection
from authz.ratelimit.spec import FailureMode, LimitSpec


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    #: None matches every method.
    methods: frozenset[str] | None
    #: None matches every path.
    paths: PathMatcher | None
    anonymous: bool
    all_of: frozenset[str]
    any_of: frozenset[str]
    #: The scopes to name in `WWW-Authenticate: Bearer error="insufficient_scope", scope="..."`.
    scope_text: str
    #: rateLimits: every one must admit a request; counted only when the request is allowed.
    rate_limits: tuple[LimitSpec, ...] = ()
    #: when: every one must hold (checked after the scopes).
    conditions: tuple[Condition, ...] = ()
    #: Whether match.paths capture path parameters ("{name}" segments).
    captures: bool = False
    #: responseBody: JSON fields redacted from responses (None: the body is left alone).
    response_body: ResponseBody | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.paths is None or self.paths.matches(path)


@dataclass(frozen=True, slots=True)
class HeaderTemplate:
    """A header (or query parameter) set on allowed requests: a literal value, or a claim
    (dotted path) of the token."""

    name: str
    value: str | None
    claim: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    namespace: str
    name: str
    hosts: tuple[str, ...]
    issuers: Mapping[str, IssuerSpec]
    rules: tuple[Rule, ...]
    set_headers: tuple[HeaderTemplate, ...]
    remove_headers: tuple[str, ...]
    #: metadata.creationTimestamp (RFC 3339) when known: the older policy wins a host conflict.
    created: str | None
    generation: int | None
    #: spec.mode dryRun: decisions are evaluated, logged and counted, and the request allowed.
    dry_run: bool = False
    #: spec.sourceIPs, checked before authentication (None: any client address).
    source_ips: IPFilter | None = None
    #: spec.rateLimitFailureMode: what limits do while the shared (Redis) backend is away.
    rate_limit_failure_mode: FailureMode = FailureMode.FALLBACK
    #: spec.response.setQueryParameters / removeQueryParameters, applied on allow.
    set_query: tuple[HeaderTemplate, ...] = ()
    remove_query: tuple[str, ...] = ()
    #: spec.protection.bruteForce: clients that keep failing authentication are blocked.
    brute_force: tuple[Protection, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
