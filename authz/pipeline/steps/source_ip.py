"""The sourceIPs step: the policy's allow and deny lists, before any token is looked at.

Deny entries win over allow entries; an address that cannot be determined (no peer, a short or
forged X-Forwarded-For, see pipeline.address) is refused, never guessed. The trace names the
entry that matched, so an operator sees which CIDR let a client in or kept it out; the denial
does not echo the address back to the client.
"""

from __future__ import annotations

from authz.pipeline import decision as d
from authz.pipeline.context import Context
from authz.pipeline.decision import Decision


def _source(trusted_proxy_hops: int) -> str:
    if trusted_proxy_hops <= 0:
        return "peer address"
    return f"X-Forwarded-For entry {trusted_proxy_hops} from the right"


def _unknown(hops: int) -> str:
    return f"the client address ({_source(hops)}) is unknown"


def _not_denied(address: object, hops: int) -> str:
    return f"{address} ({_source(hops)}) is in no deny entry"


def _allowed(address: object, hops: int, entry: str) -> str:
    return f"{address} ({_source(hops)}) is in allow {entry}"


def check_source_ip(ctx: Context) -> Decision | None:
    rules = ctx.policy.source_ips
    if rules is None:  # (no trace step: policies without sourceIPs read as before)
        return None
    trace = ctx.trace
    address = ctx.address()
    if address is None:
        trace.add("ip", "fail", _unknown, ctx.trusted_proxy_hops)
        return d.ip_denied("the client address could not be determined")
    denied = rules.deny.match(address)
    if denied is not None:
        trace.add("ip", "fail", "{} is in deny {}", address, denied)
        return d.ip_denied("the client address is not allowed")
    if rules.allow is None:
        trace.add("ip", "pass", _not_denied, address, ctx.trusted_proxy_hops)
        return None
    allowed = rules.allow.match(address)
    if allowed is None:
        trace.add("ip", "fail", "{} is in no allow entry", address)
        return d.ip_denied("the client address is not allowed")
    trace.add("ip", "pass", _allowed, address, ctx.trusted_proxy_hops, allowed)
    return None
