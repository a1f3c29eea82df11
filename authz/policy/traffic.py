"""Compile the traffic fields of an AuthPolicy: `spec.sourceIPs`, `rules[].rateLimits`, and
`spec.rateLimitFailureMode`.

CIDRs become per-prefix-length tables (a client lookup costs one dict probe per distinct prefix
length, however many entries a list has); windows, keys and Redis bucket prefixes are parsed
once here, never per request. The MSG_* texts are shared with the CRD's CEL rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from authz.errors import Problem
from authz.ratelimit.spec import (
    WINDOW_TOO_LONG,
    Algorithm,
    FailureMode,
    LimitSpec,
    bucket_prefix,
    parse_key,
    parse_window,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Messages shared with the CRD's CEL rules (re-exported by compile.py for the parity test).
MSG_SOURCE_IPS_EMPTY: Final = "set allow or deny"
MSG_UNIQUE_LIMITS: Final = "rate limit names must be unique within a rule"
MSG_WINDOW_MAX: Final = WINDOW_TOO_LONG


@dataclass(frozen=True, slots=True)
class NetworkSet:
    """Networks grouped by prefix length, most specific first: (shift, {address >> shift: CIDR})."""

    v4: tuple[tuple[int, Mapping[int, str]], ...] = ()
    v6: tuple[tuple[int, Mapping[int, str]], ...] = ()

    def match(self, address: IPAddress) -> str | None:
        """The most specific listed network containing the address (as written), or None."""
        tables = self.v4 if address.version == 4 else self.v6
        value = int(address)
        for shift, table in tables:
            found = table.get(value >> shift)
            if found is not None:
                return found
        return None

    @classmethod
    def build(
        cls, networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]
    ) -> NetworkSet:
        grouped: dict[tuple[int, int], dict[int, str]] = {}
        for network, text in networks:
            shift = network.max_prefixlen - network.prefixlen
            grouped.setdefault((network.version, shift), {}).setdefault(
                int(network.network_address) >> shift, text
            )
        ordered = sorted(grouped.items(), key=lambda item: item[0][1])
        return cls(
            v4=tuple((shift, table) for (version, shift), table in ordered if version == 4),
            v6=tuple((shift, table) for (version, shift), table in ordered if version == 6),
        )


@dataclass(frozen=True, slots=True)
class IPFilter:
    """`spec.sourceIPs`: deny wins; with an allow list, only addresses in it pass."""

    allow: NetworkSet | None
    deny: NetworkSet


def _networks(
    items: list[str], where: str, problems: list[Problem]
) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    out: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for index, text in enumerate(items):
        try:
            out.append((ipaddress.ip_network(text, strict=True), text))
        except ValueError as exc:
            loose = None
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                problems.append(Problem(f"{where}[{index}]", f"not an IP address or CIDR: {exc}"))
                continue
            problems.append(
                Problem(f"{where}[{index}]", f"{text!r} has host bits set; did you mean {loose}?")
            )
    return out


def compile_source_ips(raw: Mapping[str, Any] | None, problems: list[Problem]) -> IPFilter | None:
    if raw is None:
        return None
    where = "spec.sourceIPs"
    if "allow" not in raw and "deny" not in raw:
        problems.append(Problem(where, MSG_SOURCE_IPS_EMPTY))
        return None
    allow = (
        NetworkSet.build(_networks(raw["allow"], f"{where}.allow", problems))
        if "allow" in raw
        else None
    )
    deny = NetworkSet.build(_networks(raw.get("deny", []), f"{where}.deny", problems))
    return IPFilter(allow=allow, deny=deny)


def compile_rate_limits(
    items: list[Mapping[str, Any]],
    where: str,
    *,
    policy: str,
    rule: str,
    problems: list[Problem],
) -> tuple[LimitSpec, ...]:
    limits: list[LimitSpec] = []
    names: set[str] = set()
    for index, raw in enumerate(items):
        at = f"{where}[{index}]"
        if raw["name"] in names:
            problems.append(Problem(where, MSG_UNIQUE_LIMITS))
        names.add(raw["name"])
        try:
            seconds = parse_window(raw["window"])
        except ValueError as exc:
            problems.append(Problem(f"{at}.window", str(exc)))
            continue
        try:
            key = parse_key(raw["key"])
        except ValueError as exc:
            problems.append(Problem(f"{at}.key", str(exc)))
            continue
        algorithm = Algorithm(raw.get("algorithm", Algorithm.SLIDING_WINDOW.value))
        limits.append(
            LimitSpec(
                name=raw["name"],
                requests=int(raw["requests"]),
                window_ms=seconds * 1000,
                algorithm=algorithm,
                key=key,
                prefix=bucket_prefix(
                    policy=policy,
                    rule=rule,
                    limit=raw["name"],
                    algorithm=algorithm,
                    window_seconds=seconds,
                ),
                window_text=raw["window"],
            )
        )
    return tuple(limits)


def failure_mode(spec: Mapping[str, Any]) -> FailureMode:
    return FailureMode(spec.get("rateLimitFailureMode", FailureMode.FALLBACK.value))
