"""The setups under test and their gateways: authz.devtools.envoyconf.gateway_config with
different HTTP filters (docs/performance.md), and the static upstream that echoes x-user-id back
as x-echo-user so the probes can prove the filter set it from the claim."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from authz.devtools.envoyconf import gateway_config
from authz.server.listen import ListenAddress
from bench.material import AUDIENCE, ISSUER, SUBJECT, USER_HEADER, Material

_TYPES = "type.googleapis.com/envoy.extensions.filters.http"
ECHO_HEADER = "x-echo-user"  # the response header the upstream fills from the request's x-user-id.


class Auth(StrEnum):
    NONE = "none"
    JWT_AUTHN = "jwt_authn"
    EXT_AUTHZ = "ext_authz"
    STATIC = "static"  # ext_authz to a static responder: the ceiling for any external authorizer.


@dataclass(frozen=True, slots=True)
class Setup:
    name: str
    title: str
    auth: Auth = Auth.EXT_AUTHZ
    transport: str | None = "tcp"  # how Envoy reaches the sidecar: "tcp", "unix" or None
    args: tuple[str, ...] = ()  # extra `authz serve` flags.
    workers: int = 1  # `authz serve --workers N` (needs the unix transport).
    reference: bool = False  # shown for comparison: the targets do not apply to it.
    rate_limit: int | None = None  # the policy limits each user to this many requests a minute
    redis: bool = False  # the sidecar counts its rate limits in the run's redis-server
    tls: bool = False  # Envoy calls the sidecar over TLS (`--tls-cert`)
    mutual_tls: bool = False  # ... with a client certificate (`--tls-client-ca`)


_ASYNCIO = ("--event-loop", "asyncio")
SETUPS: tuple[Setup, ...] = (
    Setup("noauth", "Envoy, no auth", Auth.NONE, None),
    Setup("jwt_authn", "Envoy + native jwt_authn", Auth.JWT_AUTHN, None),
    Setup("sidecar-tcp", "Envoy + authz sidecar (gRPC over TCP)"),
    Setup("sidecar-uds", "Envoy + authz sidecar (gRPC over Unix socket)", transport="unix"),
    Setup(
        "sidecar-uds-w2",
        "Envoy + authz sidecar, --workers 2 (two processes, a Unix socket each)",
        transport="unix",
        workers=2,
    ),
    Setup(
        "sidecar-tcp-asyncio",
        "sidecar-tcp on asyncio's event loop instead of uvloop (--event-loop asyncio)",
        args=_ASYNCIO,
        reference=True,
    ),
    Setup(
        "sidecar-tcp-grpcio",
        "sidecar-tcp on grpcio's server and asyncio's loop (--grpc-server grpcio --event-loop asyncio)",
        args=("--grpc-server", "grpcio", *_ASYNCIO),
        reference=True,
    ),
    Setup(
        "ext_authz-static",
        "reference: Envoy ext_authz (HTTP) to a static allow-all responder",
        Auth.STATIC,
        reference=True,
    ),
)
NATIVE = "jwt_authn"  # the baseline the sidecar is compared with.
#: What TLS on the check listener costs: the h2 engine over TCP with the same policy; only
#: `--tls-cert` (and `--tls-client-ca`) and Envoy's transport socket differ (docs/tls.md).
TLS_PLAIN = "tls-off"
TLS_MAX_LOSS = 0.15  # TLS may cost at most this fraction of plaintext throughput.
TLS_SETUPS: tuple[Setup, ...] = (
    Setup(TLS_PLAIN, "sidecar over TCP, plaintext"),
    Setup("tls", "the same over TLS (--tls-cert)", tls=True),
    Setup("mtls", "the same over mutual TLS (--tls-client-ca)", tls=True, mutual_tls=True),
)
#: Envoy counters that prove each request went through the filter under test.
FILTER_COUNTER = {
    Auth.NONE: None,
    Auth.JWT_AUTHN: "http.ingress.jwt_authn.allowed",
    Auth.EXT_AUTHZ: "http.ingress.ext_authz.ok",
    Auth.STATIC: "http.ingress.ext_authz.ok",
}


def _jwt_authn_filter(material: Material) -> dict[str, Any]:
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": material.jwks_json},
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "forward": False,
        "claim_to_headers": [{"header_name": USER_HEADER, "claim_name": "sub"}],
        # The sidecar caches verified tokens; so may Envoy (like for like).
        "jwt_cache_config": {"jwt_cache_size": 100},
    }
    rules = [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]
    config = {"providers": {"bench": provider}, "rules": rules}
    typed = {"@type": f"{_TYPES}.jwt_authn.v3.JwtAuthentication", **config}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": typed}


def _static_ext_authz_filter() -> dict[str, Any]:
    """ext_authz in HTTP mode; the answer's x-user-id is copied onto the upstream request."""
    allowed = {"allowed_upstream_headers": {"patterns": [{"exact": USER_HEADER}]}}
    service = {
        "server_uri": {"uri": "http://authorizer", "cluster": "authz", "timeout": "1s"},
        "path_prefix": "/check",
        "authorization_response": allowed,
    }
    typed: dict[str, Any] = {"@type": f"{_TYPES}.ext_authz.v3.ExtAuthz", "http_service": service}
    typed |= {"transport_api_version": "V3", "failure_mode_allow": False}
    return {"name": "envoy.filters.http.ext_authz", "typed_config": typed}


def gateway(
    setup: Setup,
    *,
    material: Material,
    listen: ListenAddress,
    admin: ListenAddress,
    upstream: ListenAddress,
    sidecar: ListenAddress | list[ListenAddress] | None,
    sidecar_tls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The gateway of `setup`; `sidecar_tls` is the authz cluster's transport socket."""
    filters = {
        Auth.NONE: [],
        Auth.JWT_AUTHN: [_jwt_authn_filter(material)],
        Auth.EXT_AUTHZ: None,  # gateway_config's own: the one users are shown
        Auth.STATIC: [_static_ext_authz_filter()],
    }[setup.auth]
    return gateway_config(
        listen=listen,
        admin=admin,
        upstream=upstream,
        authz=sidecar,
        http_filters=filters,
        authz_tls=sidecar_tls,
    )


def upstream_config(
    *, listen: ListenAddress, admin: ListenAddress, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A static 200 responder: a gateway whose only route is a `direct_response`. As the
    upstream it adds x-echo-user (the request's x-user-id); as the static authorizer it is given
    `headers` instead (x-user-id, which ext_authz copies onto the upstream request)."""
    added = headers if headers is not None else {ECHO_HEADER: f"%REQ({USER_HEADER})%"}
    config = gateway_config(
        listen=listen, admin=admin, upstream=listen, authz=None, http_filters=[], normalize=False
    )
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"] = [
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
            "response_headers_to_add": [
                {"header": {"key": k, "value": v}} for k, v in added.items()
            ],
        }
    ]
    config["static_resources"]["clusters"] = []
    return config


def static_authorizer_config(*, listen: ListenAddress, admin: ListenAddress) -> dict[str, Any]:
    return upstream_config(listen=listen, admin=admin, headers={USER_HEADER: SUBJECT})
