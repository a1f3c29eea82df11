"""A complete local gateway for end-to-end tests: JWKS server, sidecar, echo upstream, Envoy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authz.workers.pool import worker_listen
from tests.support.envoy import Envoy, start_envoy
from tests.support.keys import SigningKey, jwks
from tests.support.policies import ORDERS_HEADERS, auth_policy, issuer, rule, to_yaml
from tests.support.procs import Proc, start_echo, start_http_dir, start_sidecar

HOST = "orders.test"


def orders_policy(jwks_url: str, *, name: str = "orders", hosts: tuple[str, ...] = (HOST,)) -> str:
    """The gateway's policy file: open health and docs, scoped reads, writes and admin."""
    document = auth_policy(
        name,
        namespace="shop",
        hosts=hosts,
        issuers=[issuer(jwks_uri=jwks_url)],
        rules=[
            rule("health", paths=["/healthz"], anonymous=True),
            rule("docs", paths=["/docs/**"], anonymous=True),
            rule(
                "read-orders",
                methods=["GET", "HEAD"],
                paths=["/orders", "/orders/*"],
                scopes=["orders:read"],
            ),
            rule("write-orders", methods=["POST"], paths=["/orders"], scopes=["orders:write"]),
            rule("admin", paths=["/admin/**"], any_of=["admin", "superuser"]),
        ],
        response={
            "setHeaders": list(ORDERS_HEADERS),
            "removeHeaders": ["authorization"],
        },
    )
    return to_yaml(document)


@dataclass
class Gateway:
    tmp: Path
    policies: Path
    jwks_dir: Path
    jwks_url: str
    sidecar: Proc
    grpc: str
    http_port: int
    echo: Proc
    envoy: Envoy
    procs: list[Proc] = field(default_factory=list)
    #: With `authz serve --workers N`: each worker's gRPC address (`grpc` is the first).
    workers: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.envoy.url

    def publish_keys(self, *keys: SigningKey) -> None:
        tmp = self.jwks_dir / "jwks.json.tmp"
        tmp.write_text(json.dumps(jwks(*keys)))
        tmp.replace(self.jwks_dir / "jwks.json")

    def stop(self) -> None:
        for proc in [self.envoy.proc, self.echo, self.sidecar, *self.procs]:
            proc.terminate()


def start_gateway(
    tmp: Path,
    *keys: SigningKey,
    normalize: bool = True,
    workers: int = 1,
    extra: tuple[str, ...] = (),
    authz_tls: dict[str, Any] | None = None,
) -> Gateway:
    """The whole gateway; `workers` > 1 runs `authz serve --workers N` on Unix sockets, each
    an endpoint of Envoy's authz cluster; `authz_tls` makes Envoy call the sidecar over TLS
    (envoyconf.upstream_tls; `extra` then carries the sidecar's --tls-* flags)."""
    jwks_dir = tmp / "jwks"
    jwks_dir.mkdir()
    (jwks_dir / "jwks.json").write_text(json.dumps(jwks(*keys)))
    jwks_server, jwks_port = start_http_dir(tmp, jwks_dir, name="jwks-server")
    jwks_url = f"http://127.0.0.1:{jwks_port}/jwks.json"
    policies = tmp / "policies"
    policies.mkdir()
    (policies / "orders.yaml").write_text(orders_policy(jwks_url))
    addresses: list[str] = []
    if workers > 1:
        listen = f"unix:{tmp}/authz.sock"
        addresses = [worker_listen(listen, i) for i in range(workers)]
        sidecar, _, http_port = start_sidecar(
            tmp, [policies], grpc_listen=listen, extra=("--workers", str(workers), *extra)
        )
        grpc = addresses[0]
    else:
        sidecar, grpc, http_port = start_sidecar(tmp, [policies], extra=extra)
    echo, echo_port = start_echo(tmp)
    envoy = start_envoy(
        tmp,
        authz=addresses or grpc,
        upstream_port=echo_port,
        normalize=normalize,
        authz_tls=authz_tls,
    )
    return Gateway(
        tmp,
        policies,
        jwks_dir,
        jwks_url,
        sidecar,
        grpc,
        http_port,
        echo,
        envoy,
        [jwks_server],
        addresses,
    )
