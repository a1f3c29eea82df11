"""The processes of the side-by-side run: the upstream, the sidecars and one gateway per setup.

Everything starts before the first measurement and stays up until the last, so a round costs no
restarts and every setup is measured warm; idle gateways cost nothing while another is loaded.
Sockets, configurations and the sidecar's policy live in a temporary directory; logs persist.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from authz.server.listen import ListenAddress
from authz.workers.pool import worker_listen
from bench import procs
from bench.material import Material, sidecar_policy
from bench.probe import probe
from bench.procs import Proc
from bench.setups import Auth, Setup, dump, gateway, static_authorizer_config, upstream_config


@dataclass
class Running:
    setup: Setup
    listen: ListenAddress
    admin: ListenAddress
    gateway: Proc
    #: The authorizer Envoy calls: the sidecar, or the static responder of the reference setup.
    sidecar: Proc | None
    #: Other processes this setup's requests cost (e.g. its Redis): their CPU is charged to it.
    extra: dict[str, Proc] = field(default_factory=dict)


@dataclass
class Stack:
    upstream: Proc
    setups: list[Running]

    def get(self, name: str) -> Running:
        return next(r for r in self.setups if r.setup.name == name)


def _sidecar_listen(setup: Setup, tmp: Path) -> tuple[str, ListenAddress | list[ListenAddress]]:
    """The --grpc-listen flag and what Envoy connects to (each worker's socket with workers)."""
    if setup.transport == "unix":
        flag = f"unix:{tmp / f'{setup.name}.sock'}"
        if setup.workers > 1:
            paths = [worker_listen(flag, i) for i in range(setup.workers)]
            return flag, [ListenAddress(path=p.removeprefix("unix:")) for p in paths]
        return flag, ListenAddress(path=flag.removeprefix("unix:"))
    address = procs.loopback()
    return f"{address.host}:{address.port}", address


@contextlib.contextmanager
def stack(
    setups: tuple[Setup, ...],
    *,
    material: Material,
    envoy_concurrency: int,
    logs: Path,
    policy_of: Callable[[Setup], dict[str, Any]] | None = None,
    sidecar_args: Callable[[Setup], Sequence[str]] | None = None,
) -> Iterator[Stack]:
    """Start the upstream, the sidecars and one gateway per setup; stop them all on exit.

    Every sidecar serves sidecar_policy(material) unless `policy_of` gives a setup's own, and
    runs with the flags `sidecar_args` adds for its setup.
    """
    started: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="authz-bench-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            policies = tmp / "policies"
            policies.mkdir()
            (policies / "bench.yaml").write_text(yaml.safe_dump(sidecar_policy(material)))
            up, up_admin = procs.loopback(), procs.loopback()
            (tmp / "upstream.json").write_text(dump(upstream_config(listen=up, admin=up_admin)))
            upstream = procs.start_envoy(
                "upstream", tmp / "upstream.json", concurrency=envoy_concurrency, logs=logs
            )
            started.append(upstream)
            procs.wait_ready(f"http://{up_admin.host}:{up_admin.port}/ready", upstream)
            running: list[Running] = []
            for setup in setups:
                sidecar: Proc | None = None
                sidecar_address: ListenAddress | list[ListenAddress] | None = None
                if setup.auth is Auth.STATIC:
                    sidecar_address, sidecar_admin = procs.loopback(), procs.loopback()
                    conf = tmp / f"authorizer-{setup.name}.json"
                    conf.write_text(
                        dump(static_authorizer_config(listen=sidecar_address, admin=sidecar_admin))
                    )
                    sidecar = procs.start_envoy(
                        f"authorizer-{setup.name}",
                        conf,
                        concurrency=envoy_concurrency,
                        logs=logs,
                    )
                    started.append(sidecar)
                    procs.wait_ready(
                        f"http://{sidecar_admin.host}:{sidecar_admin.port}/ready", sidecar
                    )
                if setup.auth is Auth.EXT_AUTHZ:
                    flag, sidecar_address = _sidecar_listen(setup, tmp)
                    http = procs.loopback()
                    served = policies
                    if policy_of is not None:
                        served = tmp / f"policies-{setup.name}"
                        served.mkdir()
                        (served / "bench.yaml").write_text(yaml.safe_dump(policy_of(setup)))
                    sidecar = procs.start_sidecar(
                        f"authz-{setup.name}",
                        policies=served,
                        grpc_listen=flag,
                        http=http,
                        admin=procs.loopback(),
                        logs=logs,
                        extra_args=(
                            *setup.args,
                            *(("--workers", str(setup.workers)) if setup.workers > 1 else ()),
                            *(sidecar_args(setup) if sidecar_args is not None else ()),
                        ),
                    )
                    started.append(sidecar)
                    procs.wait_ready(f"http://{http.host}:{http.port}/readyz", sidecar)
                listen, admin = procs.loopback(), procs.loopback()
                conf = tmp / f"envoy-{setup.name}.json"
                conf.write_text(
                    dump(
                        gateway(
                            setup,
                            material=material,
                            listen=listen,
                            admin=admin,
                            upstream=up,
                            sidecar=sidecar_address,
                        )
                    )
                )
                envoy = procs.start_envoy(
                    f"envoy-{setup.name}", conf, concurrency=envoy_concurrency, logs=logs
                )
                started.append(envoy)
                procs.wait_ready(f"http://{admin.host}:{admin.port}/ready", envoy)
                running.append(Running(setup, listen, admin, envoy, sidecar))
            yield Stack(upstream, running)
        finally:
            procs.stop_all(started)


def probe_all(current: Stack, material: Material) -> dict[str, list[str]]:
    return {r.setup.name: probe(r.setup, r.listen, material) for r in current.setups}
