"""sourceIPs: IPv4 and IPv6 allow/deny, deny wins, X-Forwarded-For hops, unknown addresses."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from authz.errors import PolicyError
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.address import client_address, parse_address
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.compile import compile_policy
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from tests.support.policies import auth_policy

SOURCE_IPS = {
    "allow": ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"],
    "deny": ["10.6.6.6/32", "10.7.0.0/16", "2001:db8:bad::/48"],
}
POLICY = auth_policy("net", namespace="t", sourceIPs=SOURCE_IPS)
DENY_ONLY = auth_policy(
    "deny-only", namespace="t", hosts=["deny.test"], sourceIPs={"deny": ["203.0.113.0/24"]}
)


def build(*documents: dict[str, Any]) -> Snapshot:
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    snapshot = store.update("t", [SourceDocument(f"p{i}", d) for i, d in enumerate(documents)])
    assert [s.state.value for s in snapshot.states] == ["ready"] * len(documents)
    return snapshot


SNAPSHOT = build(POLICY, DENY_ONLY)


async def check(
    ip: str,
    *,
    host: str = "net.test",
    xff: str | None = None,
    hops: int = 0,
    trace: Trace | None = None,
) -> Decision:
    headers = {"x-forwarded-for": xff} if xff is not None else {}
    request = CheckInput("GET", host, "/", headers, source_ip=ip)
    return await decide(
        SNAPSHOT, request, verifier=Verifier(), now=0.0, trace=trace, trusted_proxy_hops=hops
    )


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("192.168.1.7", True),  # a bare address is a /32
        ("192.168.1.8", False),
        ("11.0.0.1", False),  # not in allow
        ("10.6.6.6", False),  # deny wins over allow
        ("10.6.6.7", True),
        ("10.7.200.1", False),
        ("2001:db8::1", True),
        ("2001:db8:ffff::1", True),
        ("2001:db8:bad::1", False),  # deny wins, IPv6
        ("2001:db9::1", False),
        ("::ffff:10.1.2.3", True),  # IPv4-mapped IPv6 is the IPv4 address
        ("::ffff:10.6.6.6", False),
        ("", False),  # unknown peer (e.g. a Unix socket): refused
        ("not-an-ip", False),
    ],
)
async def test_allow_and_deny_lists(ip: str, allowed: bool) -> None:
    decision = await check(ip)
    assert decision.allowed is allowed
    if not allowed:
        assert (decision.status, decision.reason) == (403, "ip_denied")
        assert decision.policy == "t/net"
        assert ip not in decision.description or not ip  # the address is not echoed back


async def test_deny_only_list_lets_other_addresses_pass() -> None:
    assert (await check("198.51.100.1", host="deny.test")).allowed
    assert not (await check("203.0.113.9", host="deny.test")).allowed


@pytest.mark.parametrize(
    ("xff", "hops", "allowed"),
    [
        ("11.0.0.1, 10.1.1.1", 1, True),  # the rightmost entry, appended by our one proxy
        ("10.1.1.1, 11.0.0.1", 1, False),  # the client can prepend anything: not trusted
        ("10.1.1.1, 11.0.0.1", 2, True),
        ("10.1.1.1,11.0.0.1,12.0.0.1", 3, True),
        ("10.1.1.1", 2, False),  # fewer entries than hops: unknown, refused
        ("garbage, 10.1.1.1", 2, False),  # the chosen entry is not an address: refused
        ("2001:db8::5", 1, True),
        ("[2001:db8::5]:4711", 1, True),
        ("10.1.1.1:4711", 1, True),
        ("10.6.6.6", 1, False),
    ],
)
async def test_forwarded_for_hops(xff: str, hops: int, allowed: bool) -> None:
    # the peer (the proxy) is outside every allow entry: only the header decides
    decision = await check("172.16.0.1", xff=xff, hops=hops)
    assert decision.allowed is allowed


async def test_missing_forwarded_for_with_hops_is_refused() -> None:
    trace = Trace()
    decision = await check("10.1.1.1", hops=1, trace=trace)
    assert decision.reason == "ip_denied"
    assert decision.description == "the client address could not be determined"
    assert trace.steps[-1].name == "ip"
    assert trace.steps[-1].outcome == "fail"


async def test_zero_hops_ignores_forwarded_for() -> None:
    assert not (await check("11.0.0.1", xff="10.1.1.1", hops=0)).allowed
    assert (await check("10.1.1.1", xff="11.0.0.1", hops=0)).allowed


async def test_trace_names_the_matching_entry() -> None:
    trace = Trace()
    await check("10.6.6.6", trace=trace)
    assert (trace.steps[1].name, trace.steps[1].outcome) == ("ip", "fail")
    assert trace.steps[1].detail == "10.6.6.6 is in deny 10.6.6.6/32"
    trace = Trace()
    await check("192.168.1.7", trace=trace)
    assert trace.steps[1].detail == "192.168.1.7 (peer address) is in allow 192.168.1.7"


def test_most_specific_entry_is_reported() -> None:
    policy = SNAPSHOT.lookup("net.test")
    assert policy is not None
    assert policy.source_ips is not None
    assert policy.source_ips.deny.match(ipaddress.ip_address("10.7.0.1")) == "10.7.0.0/16"
    assert policy.source_ips.allow is not None
    assert policy.source_ips.allow.match(ipaddress.ip_address("10.7.0.1")) == "10.0.0.0/8"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("10.0.0.1:80", "10.0.0.1"),
        ("[::1]:80", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("[::1", None),
        ("1.2.3", None),
        ("", None),
    ],
)
def test_parse_address(text: str, expected: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed is not None else None) == expected


def test_client_address_is_none_without_a_peer() -> None:
    assert client_address(CheckInput("GET", "h", "/"), trusted_proxy_hops=0) is None


@pytest.mark.parametrize(
    ("source_ips", "path", "message"),
    [
        (
            {"allow": ["10.0.0.1/8"]},
            "spec.sourceIPs.allow[0]",
            "'10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?",
        ),
        ({"deny": ["999.1.1.1"]}, "spec.sourceIPs.deny[0]", None),
        ({"allow": ["2001:db8::/200"]}, "spec.sourceIPs.allow[0]", None),
        ({}, "spec.sourceIPs", "set allow or deny"),
    ],
)
def test_bad_entries_are_reported_with_their_field_path(
    source_ips: dict[str, list[str]], path: str, message: str | None
) -> None:
    document = auth_policy("net", namespace="t", sourceIPs=source_ips)
    with pytest.raises(PolicyError) as raised:
        compile_policy(document, bind=offline_provider)
    problems = {p.path: p.message for p in raised.value.problems}
    assert path in problems, problems
    if message is not None:
        assert problems[path] == message
    else:
        assert problems[path].startswith("not an IP address or CIDR")
