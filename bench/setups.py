"""The Envoy configurations under test, one per setup, plus the shared static upstream.

Every gateway is built by authz.devtools.envoyconf.gateway_config - the configuration `make run`
and the end-to-end tests use - and differs only in its HTTP filters:

    noauth       no filter: the cost of Envoy proxying alone
    jwt_authn    Envoy's native JWT filter: same issuer, audience and key (inline JWKS), `sub`
                 copied to x-user-id, its verified-token cache on (like the sidecar's)
    sidecar-tcp  ext_authz over gRPC to `authz serve` on 127.0.0.1
    sidecar-uds  the same over a Unix domain socket
    sidecar-uds-w2  the same with `--workers 2`: two processes, a socket each, balanced by Envoy
    sidecar-tcp-asyncio  sidecar-tcp on asyncio's own event loop (`--event-loop asyncio`)
    sidecar-tcp-grpcio  sidecar-tcp on grpcio's server and asyncio's loop (`--grpc-server grpcio
                 --event-loop asyncio`, the sidecar before issue 7): before/after in one run
    ext_authz-static  ext_authz (HTTP mode) to a static Envoy that allows everything and sets
                 x-user-id: a reference, not an authorizer - the most any external
                 authorizer can reach here, since Envoy's side of the call costs the same

The upstream is one more Envoy answering 200 from a `direct_response` route, so it costs little
and the same for every setup (the Python echo app of `make run` would be the bottleneck of all
of them). It echoes x-user-id back as x-echo-user, which lets the probes prove that the filter
really set the header from the claim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from authz.devtools.envoyconf import gateway_config
from authz.server.listen import ListenAddress
from bench.material import AUDIENCE, ISSUER, SUBJECT, USER_HEADER, Material

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_EXT_AUTHZ = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
_JWT_AUTHN = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
#: The response header the upstream fills from the request's x-user-id.
ECHO_HEADER = "x-echo-user"


class Auth(StrEnum):
    NONE = "none"
    JWT_AUTHN = "jwt_authn"
    EXT_AUTHZ = "ext_authz"
    #: ext_authz to a static responder: the ceiling for any external authorizer.
    STATIC = "static"


@dataclass(frozen=True, slots=True)
class Setup:
    name: str
    title: str
    auth: Auth
    #: How Envoy reaches the sidecar: "tcp" or "unix"; None without a sidecar.
    transport: str | None = None
    #: Extra `authz serve` flags.
    args: tuple[str, ...] = ()
    #: `authz serve --workers N` (needs the unix transport).
    workers: int = 1
    #: Shown for comparison: issue 7's targets do not apply to it.
    reference: bool = False


SETUPS: tuple[Setup, ...] = (
    Setup("noauth", "Envoy, no auth", Auth.NONE),
    Setup("jwt_authn", "Envoy + native jwt_authn", Auth.JWT_AUTHN),
    Setup("sidecar-tcp", "Envoy + authz sidecar (gRPC over TCP)", Auth.EXT_AUTHZ, "tcp"),
    Setup("sidecar-uds", "Envoy + authz sidecar (gRPC over Unix socket)", Auth.EXT_AUTHZ, "unix"),
    Setup(
        "sidecar-uds-w2",
        "Envoy + authz sidecar, --workers 2 (two processes, a Unix socket each)",
        Auth.EXT_AUTHZ,
        "unix",
        workers=2,
    ),
    Setup(
        "sidecar-tcp-asyncio",
        "sidecar-tcp on asyncio's event loop instead of uvloop (--event-loop asyncio)",
        Auth.EXT_AUTHZ,
        "tcp",
        args=("--event-loop", "asyncio"),
        reference=True,
    ),
    Setup(
        "sidecar-tcp-grpcio",
        "before: sidecar-tcp on grpcio's server and asyncio's loop, as before issue 7",
        Auth.EXT_AUTHZ,
        "tcp",
        args=("--grpc-server", "grpcio", "--event-loop", "asyncio"),
        reference=True,
    ),
    Setup(
        "ext_authz-static",
        "reference: Envoy ext_authz (HTTP) to a static allow-all responder",
        Auth.STATIC,
        "tcp",
    ),
)
#: The baseline the sidecar is compared with.
NATIVE = "jwt_authn"
#: Envoy counters that prove each request went through the filter under test.
FILTER_COUNTER = {
    Auth.NONE: None,
    Auth.JWT_AUTHN: "http.ingress.jwt_authn.allowed",
    Auth.EXT_AUTHZ: "http.ingress.ext_authz.ok",
    Auth.STATIC: "http.ingress.ext_authz.ok",
}


def jwt_authn_filter(material: Material) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": _JWT_AUTHN,
            "providers": {
                "bench": {
                    "issuer": ISSUER,
                    "audiences": [AUDIENCE],
                    "local_jwks": {"inline_string": material.jwks_json},
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                    "forward": False,
                    "claim_to_headers": [{"header_name": USER_HEADER, "claim_name": "sub"}],
                    # The sidecar caches verified tokens; so may Envoy (like for like).
                    "jwt_cache_config": {"jwt_cache_size": 100},
                }
            },
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def static_ext_authz_filter(*, cluster: str = "authz") -> dict[str, Any]:
    """ext_authz in HTTP mode; the answer's x-user-id is copied onto the upstream request."""
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": _EXT_AUTHZ,
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "http_service": {
                "server_uri": {"uri": "http://authorizer", "cluster": cluster, "timeout": "1s"},
                "path_prefix": "/check",
                "authorization_response": {
                    "allowed_upstream_headers": {"patterns": [{"exact": USER_HEADER}]}
                },
            },
        },
    }


def gateway(
    setup: Setup,
    *,
    material: Material,
    listen: ListenAddress,
    admin: ListenAddress,
    upstream: ListenAddress,
    sidecar: ListenAddress | list[ListenAddress] | None,
) -> dict[str, Any]:
    if setup.auth in (Auth.EXT_AUTHZ, Auth.STATIC):
        if sidecar is None:
            raise ValueError(f"{setup.name} needs the authorizer's address")
        filters = [static_ext_authz_filter()] if setup.auth is Auth.STATIC else None
        return gateway_config(
            listen=listen, admin=admin, upstream=upstream, authz=sidecar, http_filters=filters
        )
    filters = [jwt_authn_filter(material)] if setup.auth is Auth.JWT_AUTHN else []
    return gateway_config(
        listen=listen, admin=admin, upstream=upstream, authz=None, http_filters=filters
    )


def upstream_config(
    *, listen: ListenAddress, admin: ListenAddress, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A static 200 responder: Envoy itself, with a direct_response route.

    As the upstream it adds x-echo-user (the request's x-user-id); as the static authorizer it
    is given `headers` instead (x-user-id, which ext_authz copies onto the upstream request).
    """
    added = headers if headers is not None else {ECHO_HEADER: f"%REQ({USER_HEADER})%"}
    hcm = {
        "@type": _HCM,
        "stat_prefix": "upstream",
        "route_config": {
            "name": "static",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                            "response_headers_to_add": [
                                {"header": {"key": key, "value": value}}
                                for key, value in added.items()
                            ],
                        }
                    ],
                }
            ],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": admin.host, "port_value": admin.port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "upstream",
                    "address": {
                        "socket_address": {"address": listen.host, "port_value": listen.port}
                    },
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
            ]
        },
    }


def static_authorizer_config(*, listen: ListenAddress, admin: ListenAddress) -> dict[str, Any]:
    return upstream_config(listen=listen, admin=admin, headers={USER_HEADER: SUBJECT})


def dump(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2)
