"""Compile one schema-valid AuthPolicy document into a CompiledPolicy.

Here live the checks a JSON schema cannot express. The first group mirrors the CRD's
x-kubernetes-validations (CEL) rules with the same messages, so files and the API server reject
the same documents; the second group needs code (URLs we may fetch, usable inline keys, path
patterns that can match a normalized path, headers a policy must not set).

Thousands of policies often repeat an issuer (with its inline JWKS) and rules word for word.
Those compile once: a compiled issuer or rule is remembered by its raw content (a pickle, which
tells types apart) and handed to every policy with the same content, so they share one frozen
object instead of each holding a copy. Only clean compilations are remembered (problems name
the policy's own paths), and an issuer is bound again on every use: the binder decides which
provider serves a key source now, and a cached issuer never outlives the provider it names.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from authz.errors import PolicyError, Problem
from authz.jwt.keys import SUPPORTED_ALGORITHMS
from authz.jwt.providers import KeyProvider
from authz.jwt.sources import KeySource, KeySourceKind, check_fetch_url
from authz.jwt.verify import IssuerSpec
from authz.policy.conditions import MSG_ONE_OPERATOR as MSG_ONE_OPERATOR
from authz.policy.conditions import MSG_ONE_SUBJECT as MSG_ONE_SUBJECT
from authz.policy.conditions import compile_conditions
from authz.policy.matchers import (
    PathMatcher,
    normalize_host_pattern,
    path_parameters,
    path_pattern_problem,
)
from authz.policy.model import CompiledPolicy, HeaderTemplate, Rule
from authz.policy.protection import MSG_BLOCK_FOR_MAX as MSG_BLOCK_FOR_MAX
from authz.policy.protection import MSG_FAILURE_WINDOW_MAX as MSG_FAILURE_WINDOW_MAX
from authz.policy.protection import MSG_UNIQUE_PROTECTIONS as MSG_UNIQUE_PROTECTIONS
from authz.policy.protection import compile_protection
from authz.policy.redact import MSG_WITH_REMOVE as MSG_WITH_REMOVE
from authz.policy.redact import compile_response_body
from authz.policy.schema import validate_document
from authz.policy.tokens import MSG_INTROSPECTION_ENDPOINT as MSG_INTROSPECTION_ENDPOINT
from authz.policy.tokens import introspection, max_lifetime
from authz.policy.traffic import MSG_SOURCE_IPS_EMPTY as MSG_SOURCE_IPS_EMPTY
from authz.policy.traffic import MSG_UNIQUE_LIMITS as MSG_UNIQUE_LIMITS
from authz.policy.traffic import MSG_WINDOW_MAX as MSG_WINDOW_MAX
from authz.policy.traffic import compile_rate_limits, compile_source_ips, failure_mode

#: Binds a key source to the provider that will hold its keys.
KeyBinder = Callable[[KeySource], KeyProvider]

DEFAULT_LEEWAY = 30.0
#: spec.mode values; the default is enforce.
MODE_ENFORCE = "enforce"
MODE_DRY_RUN = "dryRun"
DEFAULT_NAMESPACE = "default"
#: Headers a policy may not set: they would break the request or the connection.
FORBIDDEN_SET_HEADERS = frozenset(
    {
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "expect",
        # The check's own marker for Envoy (see server.convert.EXT_PROC_HEADER).
        "x-authz-ext-proc",
    }
)

# Messages shared with the CRD's CEL rules (tests/crd/test_cel.py keeps them in step).
MSG_ONE_KEY_SOURCE = "set exactly one of jwksUri, jwks or discovery"
MSG_UNIQUE_ISSUERS = "each issuer may appear only once"
MSG_UNIQUE_RULES = "rule names must be unique"
MSG_ANONYMOUS_SCOPES = "an anonymous rule cannot require scopes"
MSG_SCOPES_EMPTY = "set allOf or anyOf"
MSG_CLAIM_OR_VALUE = "set exactly one of claim or value"
MSG_ISSUERS_NEEDED = "issuers must list at least one issuer when a rule requires a token"

#: Bounded: emptied when full, so what removed policies compiled to does not stay forever.
_MEMO_MAX = 4096
_issuers: dict[bytes, tuple[KeySource, IssuerSpec]] = {}
_rules: dict[bytes, Rule] = {}
_T = TypeVar("_T")


def _content_key(*parts: object) -> bytes | None:
    """Equal only for equal raw content; None for content that is not plain data."""
    try:
        return pickle.dumps(parts, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


def _remember(memo: dict[bytes, _T], key: bytes, value: _T) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


def _shared_issuer(
    raw: Mapping[str, Any], where: str, bind: KeyBinder, problems: list[Problem], namespace: str
) -> IssuerSpec | None:
    """_issuer, compiled once per distinct raw issuer (and namespace: introspection's secrets
    are the namespace's) and bound to `bind`'s current provider on every use."""
    key = _content_key(namespace, raw)
    found = _issuers.get(key) if key is not None else None
    if found is None:
        before = len(problems)
        spec = _issuer(raw, where, bind, problems, namespace)
        if spec is not None and key is not None and len(problems) == before:
            _remember(_issuers, key, (spec.provider.source, spec))
        return spec
    source, spec = found
    try:
        provider = bind(source)
    except ValueError as exc:  # not from a source that bound before, but the binder decides
        problems.append(Problem(f"{where}.{source.kind.value}", str(exc)))
        return None
    if provider is not spec.provider:
        spec = replace(spec, provider=provider)
        _remember(_issuers, key, (source, spec))  # type: ignore[arg-type]  # not None here
    return spec


def _shared_rule(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> Rule:
    """_rule, compiled once per distinct raw rule (its rate limits are the policy's own)."""
    key = _content_key(raw)
    found = _rules.get(key) if key is not None else None
    if found is not None:
        return found
    before = len(problems)
    rule = _rule(raw, where, problems)
    if key is not None and len(problems) == before:
        _remember(_rules, key, rule)
    return rule


def _issuer(
    raw: Mapping[str, Any], where: str, bind: KeyBinder, problems: list[Problem], namespace: str
) -> IssuerSpec | None:
    chosen = [k for k in ("jwksUri", "jwks") if k in raw] + (
        ["discovery"] if raw.get("discovery") else []
    )
    if len(chosen) != 1:
        problems.append(Problem(where, MSG_ONE_KEY_SOURCE))
        return None
    issuer = raw["issuer"]
    source: KeySource
    if chosen[0] == "jwksUri":
        refusal = check_fetch_url(raw["jwksUri"])
        if refusal:
            problems.append(Problem(f"{where}.jwksUri", refusal))
            return None
        source = KeySource(KeySourceKind.JWKS_URI, raw["jwksUri"])
    elif chosen[0] == "discovery":
        refusal = check_fetch_url(issuer)
        if refusal:
            problems.append(
                Problem(f"{where}.issuer", f"discovery needs an issuer URL that {refusal}")
            )
            return None
        source = KeySource(KeySourceKind.DISCOVERY, issuer)
    else:
        source = KeySource.inline(raw["jwks"])
    try:
        provider = bind(source)
    except ValueError as exc:
        problems.append(Problem(f"{where}.{chosen[0]}", str(exc)))
        return None
    claim = raw.get("scopeClaim")
    return IssuerSpec(
        issuer=issuer,
        audiences=frozenset(raw["audiences"]),
        algorithms=frozenset(raw.get("algorithms", SUPPORTED_ALGORITHMS)),
        leeway=float(raw.get("leewaySeconds", DEFAULT_LEEWAY)),
        provider=provider,
        scope_claim=tuple(claim.split(".")) if claim else None,
        max_lifetime=max_lifetime(raw, where, problems),
        introspection=introspection(raw, where, namespace=namespace, problems=problems),
        require_bound=bool(raw.get("requireBoundTokens", False)),
        dpop_algorithms=frozenset(raw.get("dpopAlgorithms", SUPPORTED_ALGORITHMS)),
        dpop_nonce=bool(raw.get("dpopNonce", False)),
    )


def _rule(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> Rule:
    match = raw.get("match", {})
    anonymous = bool(raw.get("allowAnonymous", False))
    scopes = raw.get("scopes")
    if scopes is not None:
        if anonymous:
            problems.append(Problem(where, MSG_ANONYMOUS_SCOPES))
        if not scopes.get("allOf") and not scopes.get("anyOf"):
            problems.append(Problem(f"{where}.scopes", MSG_SCOPES_EMPTY))
    paths = match.get("paths")
    params: set[str] = set()
    usable: list[str] = []  # a bad pattern is reported, not compiled
    for index, pattern in enumerate(paths or ()):
        problem = path_pattern_problem(pattern)
        if problem:
            problems.append(Problem(f"{where}.match.paths[{index}]", problem))
        else:
            usable.append(pattern)
            params.update(path_parameters(pattern))
    conditions = compile_conditions(
        raw.get("when", ()), f"{where}.when", params=frozenset(params), problems=problems
    )
    all_of = tuple(dict.fromkeys((scopes or {}).get("allOf", [])))
    any_of = tuple(dict.fromkeys((scopes or {}).get("anyOf", [])))
    return Rule(
        name=raw["name"],
        methods=frozenset(match["methods"]) if match.get("methods") else None,
        paths=PathMatcher.compile(usable) if paths else None,
        anonymous=anonymous,
        all_of=frozenset(all_of),
        any_of=frozenset(any_of),
        scope_text=" ".join(dict.fromkeys(all_of + any_of)),
        conditions=conditions,
        captures=bool(params),
        response_body=compile_response_body(
            raw.get("responseBody"), f"{where}.responseBody", problems
        ),
    )


def _response(
    raw: Mapping[str, Any], problems: list[Problem]
) -> tuple[tuple[HeaderTemplate, ...], tuple[str, ...]]:
    templates: list[HeaderTemplate] = []
    seen: set[str] = set()
    for index, item in enumerate(raw.get("setHeaders", [])):
        where = f"spec.response.setHeaders[{index}]"
        name = item["name"].lower()
        if ("claim" in item) == ("value" in item):
            problems.append(Problem(where, MSG_CLAIM_OR_VALUE))
        if name in FORBIDDEN_SET_HEADERS:
            problems.append(Problem(f"{where}.name", f"{name!r} cannot be set by a policy"))
        if name in seen:
            problems.append(Problem(f"{where}.name", f"header {name!r} is set twice"))
        if "value" in item and any(c in item["value"] for c in "\r\n\0"):
            problems.append(Problem(f"{where}.value", "must not contain CR, LF or NUL"))
        seen.add(name)
        claim = item.get("claim")
        templates.append(
            HeaderTemplate(name, item.get("value"), tuple(claim.split(".")) if claim else None)
        )
    removed = tuple(
        dict.fromkeys(h.lower() for h in raw.get("removeHeaders", []) if h.lower() not in seen)
    )
    return tuple(templates), removed


def _query(
    raw: Mapping[str, Any], problems: list[Problem]
) -> tuple[tuple[HeaderTemplate, ...], tuple[str, ...]]:
    """setQueryParameters / removeQueryParameters: names are compared as written (the query
    is case-sensitive), each set at most once; a name both set and removed is set."""
    templates: list[HeaderTemplate] = []
    seen: set[str] = set()
    for index, item in enumerate(raw.get("setQueryParameters", [])):
        where = f"spec.response.setQueryParameters[{index}]"
        name = item["name"]
        if ("claim" in item) == ("value" in item):
            problems.append(Problem(where, MSG_CLAIM_OR_VALUE))
        if name in seen:
            problems.append(Problem(f"{where}.name", f"query parameter {name!r} is set twice"))
        seen.add(name)
        claim = item.get("claim")
        templates.append(
            HeaderTemplate(name, item.get("value"), tuple(claim.split(".")) if claim else None)
        )
    removed = tuple(dict.fromkeys(n for n in raw.get("removeQueryParameters", []) if n not in seen))
    return tuple(templates), removed


def compile_policy(document: Mapping[str, Any], *, bind: KeyBinder) -> CompiledPolicy:
    """Validate and compile one document. Raises PolicyError listing every problem found."""
    problems = validate_document(document)
    if problems:
        raise PolicyError(problems)
    meta, spec = document["metadata"], document["spec"]
    namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    hosts: list[str] = []
    for index, pattern in enumerate(spec["hosts"]):
        try:
            hosts.append(normalize_host_pattern(pattern))
        except ValueError as exc:
            problems.append(Problem(f"spec.hosts[{index}]", str(exc)))
    issuers: dict[str, IssuerSpec] = {}
    for index, raw in enumerate(spec.get("issuers", [])):
        if raw["issuer"] in issuers:
            problems.append(Problem("spec.issuers", MSG_UNIQUE_ISSUERS))
            continue
        compiled = _shared_issuer(raw, f"spec.issuers[{index}]", bind, problems, namespace)
        if compiled is not None:
            issuers[compiled.issuer] = compiled
    rules = [_shared_rule(raw, f"spec.rules[{i}]", problems) for i, raw in enumerate(spec["rules"])]
    policy_key = f"{meta.get('namespace') or DEFAULT_NAMESPACE}/{meta['name']}"
    rules = [
        replace(
            rule,
            rate_limits=compile_rate_limits(
                raw.get("rateLimits", []),
                f"spec.rules[{i}].rateLimits",
                policy=policy_key,
                rule=rule.name,
                problems=problems,
            ),
        )
        if raw.get("rateLimits")
        else rule
        for i, (rule, raw) in enumerate(zip(rules, spec["rules"], strict=True))
    ]
    source_ips = compile_source_ips(spec.get("sourceIPs"), problems)
    brute_force = compile_protection(spec.get("protection"), policy=policy_key, problems=problems)
    if len({r.name for r in rules}) != len(rules):
        problems.append(Problem("spec.rules", MSG_UNIQUE_RULES))
    if not spec.get("issuers") and not all(r.anonymous for r in rules):
        problems.append(Problem("spec.issuers", MSG_ISSUERS_NEEDED))
    set_headers, remove_headers = _response(spec.get("response", {}), problems)
    set_query, remove_query = _query(spec.get("response", {}), problems)
    if problems:
        raise PolicyError(problems)
    generation = meta.get("generation")
    created = meta.get("creationTimestamp")
    return CompiledPolicy(
        namespace=meta.get("namespace") or DEFAULT_NAMESPACE,
        name=meta["name"],
        hosts=tuple(dict.fromkeys(hosts)),
        issuers=issuers,
        rules=tuple(rules),
        set_headers=set_headers,
        remove_headers=remove_headers,
        created=str(created) if created else None,
        generation=generation if isinstance(generation, int) else None,
        dry_run=spec.get("mode") == MODE_DRY_RUN,
        source_ips=source_ips,
        rate_limit_failure_mode=failure_mode(spec),
        set_query=set_query,
        remove_query=remove_query,
        brute_force=brute_force,
    )
