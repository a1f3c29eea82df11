"""Envoy bootstrap configurations for `make run`, the end-to-end tests and the benchmark.

One generator, so the tests exercise the configuration users are shown: ext_authz over gRPC
with failure_mode_allow false (fail closed), paths normalized by Envoy as well as by the
sidecar, escaped slashes rejected; with `ext_proc`, the external processing filter after
ext_authz for response redaction (README, Response protection). `normalize=False` builds the unsafe variant the tests use to
prove the sidecar's own normalization holds when Envoy's is missing.

X-Forwarded-For works as in the Helm chart's gateway: Envoy uses the connection's address
(`use_remote_address`) and appends it, trusting `trusted_proxy_hops` proxies in front, so the
sidecar's `--trusted-proxy-hops` means the same under `make run` as in a cluster (0: Envoy's peer;
behind T trusted proxies, T+1). Without it, Envoy would pass a client's X-Forwarded-For on
unchanged, and a setting that is safe in the cluster would trust a spoofed address locally.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from authz.server.convert import EXT_PROC_HEADER
from authz.server.listen import ListenAddress

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_EXT_AUTHZ = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
_EXT_PROC = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


def upstream_tls(
    *, ca: str, name: str, cert: str | None = None, key: str | None = None
) -> dict[str, Any]:
    """The cluster transport socket that calls `authz serve --tls-cert` over TLS: the sidecar's
    certificate checked against `ca` and its DNS name `name` (sent as SNI too), ALPN h2, and,
    for --tls-client-ca, Envoy's client certificate `cert` with its `key` (file paths)."""
    common: dict[str, Any] = {
        "alpn_protocols": ["h2"],
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
        "validation_context": {
            "trusted_ca": {"filename": ca},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": name}}],
        },
    }
    if cert is not None and key is not None:
        common["tls_certificates"] = [
            {"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}
        ]
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": _UPSTREAM_TLS, "sni": name, "common_tls_context": common},
    }


def _address(address: ListenAddress) -> dict[str, Any]:
    if address.path is not None:
        return {"pipe": {"path": address.path}}
    return {"socket_address": {"address": address.host, "port_value": address.port}}


def _cluster(
    name: str,
    address: ListenAddress | Sequence[ListenAddress],
    *,
    http2: bool,
    tls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A static cluster; several addresses (one per `--workers` process) are balanced."""
    addresses = [address] if isinstance(address, ListenAddress) else list(address)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _address(a)}} for a in addresses]}
            ],
        },
    }
    if tls is not None:
        cluster["transport_socket"] = tls
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def ext_authz_filter(*, cluster: str = "authz", timeout: str = "1s") -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": _EXT_AUTHZ,
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "include_peer_certificate": True,
            "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": timeout},
        },
    }


def ext_proc_filter(*, cluster: str = "ext_proc", timeout: str = "1s") -> dict[str, Any]:
    """Envoy's ext_proc filter as the sidecar needs it: request headers (to find the rule),
    response headers and the whole (BUFFERED) response body; the sidecar skips what a route
    does not need by a mode override. ext_authz's dynamic metadata (the scopes the token
    grants) is forwarded to the sidecar; failure_mode_allow false: no answer, no response."""
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": _EXT_PROC,
            "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": timeout},
            "failure_mode_allow": False,
            "allow_mode_override": True,
            "message_timeout": timeout,
            "processing_mode": {
                "request_header_mode": "SEND",
                "response_header_mode": "SEND",
                "request_body_mode": "NONE",
                "response_body_mode": "BUFFERED",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
            "metadata_options": {
                "forwarding_namespaces": {"untyped": ["envoy.filters.http.ext_authz"]}
            },
        },
    }


_WITH_MATCHER = "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher"
_HEADER_INPUT = "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput"
_SKIP_FILTER = "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"


def skipped_unless_redacting(ext_proc: dict[str, Any]) -> dict[str, Any]:
    """`ext_proc` wrapped so that Envoy skips it for requests ext_authz marked
    `x-authz-ext-proc: skip` (allowed, and nothing of the response to redact): such requests
    open no ext_proc stream at all. The check sets the header on exactly those requests and
    removes it from every other, so a client cannot send it; the route configuration removes
    it before the upstream."""
    return {
        "name": ext_proc["name"],
        "typed_config": {
            "@type": _WITH_MATCHER,
            "extension_config": ext_proc,
            "xds_matcher": {
                "matcher_list": {
                    "matchers": [
                        {
                            "predicate": {
                                "single_predicate": {
                                    "input": {
                                        "name": "skip_header",
                                        "typed_config": {
                                            "@type": _HEADER_INPUT,
                                            "header_name": EXT_PROC_HEADER,
                                        },
                                    },
                                    "value_match": {"exact": "skip"},
                                }
                            },
                            "on_match": {
                                "action": {
                                    "name": "skip",
                                    "typed_config": {"@type": _SKIP_FILTER},
                                }
                            },
                        }
                    ]
                }
            },
        },
    }


def gateway_config(
    *,
    listen: ListenAddress,
    admin: ListenAddress,
    upstream: ListenAddress,
    authz: ListenAddress | Sequence[ListenAddress] | None,
    normalize: bool = True,
    timeout: str = "1s",
    http_filters: list[dict[str, Any]] | None = None,
    trusted_proxy_hops: int = 0,
    authz_tls: dict[str, Any] | None = None,
    ext_proc: ListenAddress | None = None,
) -> dict[str, Any]:
    """An ingress listener routing everything to `upstream`, guarded by the sidecar at `authz`
    (a list: the sockets of `authz serve --workers N`, balanced by Envoy), called over TLS
    with the transport socket `authz_tls` (see upstream_tls) when given; with `ext_proc`,
    responses go through the sidecar's ext_proc service there. `trusted_proxy_hops` is the
    chart's `trustedProxyHops`: the proxies in front of Envoy that append to X-Forwarded-For.

    `http_filters` replaces the ext_authz filter (the benchmark uses it for jwt_authn or none).
    """
    filters = (
        http_filters
        if http_filters is not None
        else ([ext_authz_filter(timeout=timeout)] if authz else [])
    )
    if ext_proc is not None:
        filters = [*filters, skipped_unless_redacting(ext_proc_filter(timeout=timeout))]
    hcm: dict[str, Any] = {
        "@type": _HCM,
        "stat_prefix": "ingress",
        "use_remote_address": True,
        "xff_num_trusted_hops": trusted_proxy_hops,
        "route_config": {
            "name": "local",
            "request_headers_to_remove": [EXT_PROC_HEADER],
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                }
            ],
        },
        "http_filters": [
            *filters,
            {"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}},
        ],
    }
    if normalize:
        hcm.update(
            normalize_path=True,
            merge_slashes=True,
            path_with_escaped_slashes_action="REJECT_REQUEST",
        )
    clusters = [_cluster("upstream", upstream, http2=False)]
    if authz is not None:
        clusters.append(_cluster("authz", authz, http2=True, tls=authz_tls))
    if ext_proc is not None:
        clusters.append(_cluster("ext_proc", ext_proc, http2=True))
    return {
        "admin": {"address": _address(admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": _address(listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


def dump(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2)
