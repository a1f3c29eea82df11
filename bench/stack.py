"""The processes of a load test (upstream, authorizers, a gateway per setup), all started before
the first measurement, and the probes that prove each setup allows and denies what it should
before it is timed (docs/performance.md)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from authz.devtools.envoyconf import dump, upstream_tls
from authz.server.listen import ListenAddress
from authz.workers.pool import worker_listen
from bench import procs
from bench.material import SUBJECT, Material, sidecar_policy
from bench.procs import BenchError, Proc
from bench.setups import ECHO_HEADER, Auth, Setup, gateway, static_authorizer_config
from bench.setups import upstream_config as upstream_envoy
from tests.support import http
from tests.support.certs import Authority, write_pair

PATH = "/bench/items/42"
#: The sidecars' Redis call timeout (`--redis-timeout-ms`; the service's default is shorter).
REDIS_TIMEOUT_MS = 1000


@dataclass
class Running:
    setup: Setup
    listen: ListenAddress
    admin: ListenAddress
    gateway: Proc
    sidecar: Proc | None  # the authorizer: the sidecar, or the reference setup's static one
    extra: dict[str, Proc] = field(default_factory=dict)  # its Redis: charged to this setup


@dataclass
class Stack:
    upstream: Proc
    setups: list[Running]

    def get(self, name: str) -> Running:
        return next(r for r in self.setups if r.setup.name == name)


def _tls(setup: Setup, tmp: Path) -> tuple[list[str], dict[str, Any] | None]:
    """The sidecar's --tls-* flags and Envoy's transport socket (a CA, the sidecar's
    certificate and, for mutual TLS, Envoy's client certificate, made in `tmp`)."""
    if not setup.tls:
        return [], None
    ca, name = Authority.create(f"bench-{setup.name}"), setup.name
    (ca_file := tmp / f"{name}-ca.crt").write_bytes(ca.cert)
    cert, key = write_pair(tmp, ca.issue("localhost"), name=f"{name}-server")
    flags, client = ["--tls-cert", str(cert), "--tls-key", str(key)], {}
    if setup.mutual_tls:
        flags += ["--tls-client-ca", str(ca_file)]
        pair = write_pair(tmp, ca.issue("envoy", client=True), name=f"{name}-client")
        client = {"cert": str(pair[0]), "key": str(pair[1])}
    tls = upstream_tls(ca=str(ca_file), name="localhost", **client)
    return flags, tls


@contextlib.contextmanager
def stack(
    setups: tuple[Setup, ...],
    *,
    material: Material,
    envoy_concurrency: int,
    logs: Path,
    redis: tuple[Proc, int] | None = None,
) -> Iterator[Stack]:
    """Start the upstream, the authorizers and one gateway per setup; stop them all on exit.
    `redis` (the process and its port) is what setups with `redis` count in."""
    started: list[Proc] = []

    def envoy(name: str, admin: ListenAddress, config: dict[str, Any]) -> Proc:
        (conf := tmp / f"{name}.json").write_text(dump(config))
        concurrency = envoy_concurrency
        started.append(
            procs.start_envoy(name, conf, concurrency=concurrency, logs=logs, admin=admin)
        )
        return started[-1]

    def sidecar(setup: Setup, flags: list[str]) -> tuple[Proc, list[ListenAddress]]:
        (policies := tmp / f"policies-{setup.name}").mkdir()
        policy = sidecar_policy(material, rate_limit=setup.rate_limit)
        (policies / "bench.yaml").write_text(yaml.safe_dump(policy))
        tcp = procs.loopback()
        listen, address = f"{tcp.host}:{tcp.port}", [tcp]
        if setup.transport == "unix":
            socket = f"{tmp}/{setup.name}.sock"
            listen, address = f"unix:{socket}", [ListenAddress(path=socket)]
        if setup.workers > 1:
            workers = (worker_listen(listen, i).removeprefix("unix:") for i in range(setup.workers))
            address = [ListenAddress(path=path) for path in workers]
            flags += ["--workers", str(setup.workers)]
        if setup.redis and redis is not None:
            # A busy moment of a shared machine can stall a Redis call past the default
            # timeout, which opens the circuit breaker and moves the checks to memory.
            flags += ["--redis-url", f"redis://127.0.0.1:{redis[1]}"]
            flags += ["--redis-timeout-ms", str(REDIS_TIMEOUT_MS)]
        name, http, flags = f"authz-{setup.name}", procs.loopback(), [*flags, *setup.args]
        started.append(
            procs.start_sidecar(
                name, policies=policies, grpc_listen=listen, http=http, logs=logs, extra_args=flags
            )
        )
        return started[-1], address

    with tempfile.TemporaryDirectory(prefix="authz-bench-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            up, up_admin = procs.loopback(), procs.loopback()
            upstream = envoy("upstream", up_admin, upstream_envoy(listen=up, admin=up_admin))
            running: list[Running] = []
            for setup in setups:
                authorizer, address = None, None
                flags, sidecar_tls = _tls(setup, tmp)
                if setup.auth is Auth.STATIC:
                    static, admin = procs.loopback(), procs.loopback()
                    config = static_authorizer_config(listen=static, admin=admin)
                    authorizer, address = envoy(f"authorizer-{setup.name}", admin, config), [static]
                elif setup.auth is Auth.EXT_AUTHZ:
                    authorizer, address = sidecar(setup, flags)
                listen, admin = procs.loopback(), procs.loopback()
                config = gateway(
                    setup,
                    material=material,
                    listen=listen,
                    admin=admin,
                    upstream=up,
                    sidecar=address,
                    sidecar_tls=sidecar_tls,
                )
                proc = envoy(f"envoy-{setup.name}", admin, config)
                extra = {"redis": redis[0]} if setup.redis and redis else {}
                running.append(Running(setup, listen, admin, proc, authorizer, extra))
            yield Stack(upstream, running)
        finally:
            procs.stop_all(started)


def expectations(setup: Setup, material: Material) -> list[tuple[str, str | None, int, str | None]]:
    """(what, token, status, x-echo-user or None for unchecked) each setup must answer."""
    if setup.auth is Auth.NONE:
        return [("no token", None, 200, None)]
    valid = ("valid token", material.token, 200, SUBJECT)
    if setup.auth is Auth.STATIC:  # allows everything, by design: it is a reference
        return [valid, ("no token", None, 200, SUBJECT)]
    checks = [valid, ("no token", None, 401, None)]
    checks.append(("forged signature", material.token_bad_signature, 401, None))
    if setup.auth is Auth.EXT_AUTHZ:
        checks.append(("token without the scope", material.token_without_scope, 403, None))
    return checks


def probe(setup: Setup, address: ListenAddress, material: Material) -> list[str]:
    """Run every expectation; return what passed, or raise BenchError naming what did not."""
    passed, url = list[str](), f"http://{address.host}:{address.port}"
    for what, token, expected, echo in expectations(setup, material):
        answer = http.request(url, PATH, token=token)
        status, seen = answer.status, answer.headers.get(ECHO_HEADER)
        if status != expected or (echo is not None and seen != echo):
            raise BenchError(
                f"{setup.name}: {what} answered {status} (upstream saw x-user-id {seen!r}), "
                f"expected {expected} ({echo!r}); "
                "refusing to benchmark a misconfigured setup"
            )
        passed.append(f"{what} -> {status}")
    if setup.rate_limit is not None:  # the limit is counted: its header is on every answer
        headers = http.request(url, PATH, token=material.token).headers
        if headers.get("ratelimit-limit") != str(setup.rate_limit):
            raise BenchError(f"{setup.name}: the answer carries no RateLimit-Limit: {headers}")
        passed.append(f"RateLimit-Limit {setup.rate_limit}")
    return passed


def probe_all(current: Stack, material: Material) -> dict[str, list[str]]:
    return {r.setup.name: probe(r.setup, r.listen, material) for r in current.setups}
