"""The client's address and the policy's `sourceIPs` check (before authentication).

The address is Envoy's peer address by default. Behind proxies, `--trusted-proxy-hops N` takes
the Nth entry from the right of X-Forwarded-For instead: each trusted proxy appends the address
it received the request from, so the Nth from the right is the one the outermost trusted proxy
saw, and anything further left is whatever the client claimed. A header with fewer than N
entries, or an entry that is not an IP address, means the address is unknown - never guessed -
and a policy with `sourceIPs` then refuses the request (fail closed). IPv4-mapped IPv6
addresses (::ffff:10.0.0.1) count as the IPv4 address.
"""

from __future__ import annotations

import ipaddress

from authz.pipeline import decision as d
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.traffic import IPAddress, IPFilter

XFF = "x-forwarded-for"


def parse_address(text: str) -> IPAddress | None:
    """An IP address as peers and proxies write it: bare, "[v6]", "[v6]:port" or "v4:port"."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(request: CheckInput, *, trusted_proxy_hops: int) -> IPAddress | None:
    """The client's address, or None when it cannot be determined."""
    if trusted_proxy_hops <= 0:
        return parse_address(request.source_ip) if request.source_ip else None
    header = request.headers.get(XFF)
    if not header:
        return None
    entries = header.split(",")
    if len(entries) < trusted_proxy_hops:
        return None
    return parse_address(entries[-trusted_proxy_hops])


def _source(trusted_proxy_hops: int) -> str:
    if trusted_proxy_hops <= 0:
        return "peer address"
    return f"X-Forwarded-For entry {trusted_proxy_hops} from the right"


def check_source_ip(
    rules: IPFilter,
    address: IPAddress | None,
    *,
    trusted_proxy_hops: int,
    trace: Trace | None,
) -> Decision | None:
    """A denial, or None when the address may pass."""
    if address is None:
        if trace is not None:
            trace.add(
                "ip", "fail", f"the client address ({_source(trusted_proxy_hops)}) is unknown"
            )
        return d.ip_denied("the client address could not be determined")
    denied = rules.deny.match(address)
    if denied is not None:
        if trace is not None:
            trace.add("ip", "fail", f"{address} is in deny {denied}")
        return d.ip_denied("the client address is not allowed")
    if rules.allow is not None:
        allowed = rules.allow.match(address)
        if allowed is None:
            if trace is not None:
                trace.add("ip", "fail", f"{address} is in no allow entry")
            return d.ip_denied("the client address is not allowed")
        if trace is not None:
            trace.add(
                "ip", "pass", f"{address} ({_source(trusted_proxy_hops)}) is in allow {allowed}"
            )
    elif trace is not None:
        trace.add("ip", "pass", f"{address} ({_source(trusted_proxy_hops)}) is in no deny entry")
    return None
