"""The request as the pipeline sees it: plain values, independent of Envoy's wire types."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class CheckInput(NamedTuple):
    """Immutable, and a tuple rather than a frozen dataclass: one is built for every check, and
    a frozen dataclass pays for an object.__setattr__ call per field."""

    method: str
    #: Host without port, lower-cased (see policy.snapshot.normalize_request_host).
    host: str
    #: The path as the client sent it, query included; normalized by the pipeline.
    raw_path: str
    #: Request headers with lower-case names, as Envoy forwards them.
    headers: Mapping[str, str] = NO_HEADERS
    #: The downstream peer's IP address ("" when unknown, e.g. a Unix socket peer).
    source_ip: str = ""
    #: Envoy's x-request-id, for correlation.
    request_id: str = ""
    #: The URL scheme Envoy saw ("http", "https"; "" when unknown), for a DPoP proof's htu.
    scheme: str = ""
    #: The Host / :authority as sent, port included, for a DPoP proof's htu.
    authority: str = ""
    #: The downstream peer's certificate as Envoy forwards it (URL-encoded PEM; "" when none),
    #: decoded only for a certificate-bound token.
    peer_certificate: str = ""
