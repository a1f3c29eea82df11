"""The client's address: Envoy's peer, or X-Forwarded-For behind trusted proxies.

The address is Envoy's peer address by default. Behind proxies, `--trusted-proxy-hops N` takes
the Nth entry from the right of X-Forwarded-For instead: each trusted proxy appends the address
it received the request from, so the Nth from the right is the one the outermost trusted proxy
saw, and anything further left is whatever the client claimed. A header with fewer than N
entries, or an entry that is not an IP address, means the address is unknown - never guessed -
and a policy with `sourceIPs` then refuses the request (fail closed). IPv4-mapped IPv6
addresses (::ffff:10.0.0.1) count as the IPv4 address.
"""

from __future__ import annotations

import functools
import ipaddress

from authz.pipeline.request import CheckInput
from authz.policy.traffic import IPAddress

XFF = "x-forwarded-for"
#: Parsed addresses are remembered (a client sends many requests; parsing is most of the cost of
#: a sourceIP rule or key), for texts short enough to be an address, so the cache stays small.
_CACHED_TEXT = 64
_CACHE_SIZE = 4096


def parse_address(text: str) -> IPAddress | None:
    """An IP address as peers and proxies write it: bare, "[v6]", "[v6]:port" or "v4:port"."""
    return _parse_cached(text) if len(text) <= _CACHED_TEXT else _parse(text)


def _parse(text: str) -> IPAddress | None:
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


_parse_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(_parse)


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
