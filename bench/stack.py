"""The processes of a load test - the upstream, the authorizers, one gateway per setup - and the
probes that prove each setup allows and denies what it should before a request is timed.

Everything starts before the first measurement and stays up until the last, so a round costs no
restarts and every setup is measured warm; idle gateways cost nothing while another is loaded.
Sockets, configurations and policies live in a temporary directory; logs persist.

A benchmark of a misconfigured filter is worthless: a jwt_authn that lets everything through,
or a sidecar that denies everything fast, would post great numbers. So every auth setup must
answer 200 to the valid token with x-user-id set from `sub` (echoed back by the upstream),
401 without a token and 401 for a forged signature; the sidecar also 403 for a token missing
the rule's scope. The static reference authorizer must allow and set x-user-id.
"""

from __future__ import annotations

import contextlib
import http.client
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
from bench.setups import (
    ECHO_HEADER,
    Auth,
    Setup,
    gateway,
    static_authorizer_config,
    upstream_config,
)
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
        paths = [worker_listen(flag, i) for i in range(setup.workers)] if setup.workers > 1 else []
        sockets = [ListenAddress(path=p.removeprefix("unix:")) for p in paths]
        return flag, sockets or ListenAddress(path=flag.removeprefix("unix:"))
    address = procs.loopback()
    return f"{address.host}:{address.port}", address


def _tls(setup: Setup, tmp: Path) -> tuple[list[str], dict[str, Any] | None]:
    """The sidecar's --tls-* flags and Envoy's transport socket for a TLS setup (a CA, the
    sidecar's certificate and, for mutual TLS, Envoy's client certificate, made in `tmp`)."""
    if not setup.tls:
        return [], None
    ca = Authority.create(f"bench-{setup.name}")
    (tmp / f"{setup.name}-ca.crt").write_bytes(ca.cert)
    cert, key = write_pair(tmp, ca.issue("localhost"), name=f"{setup.name}-server")
    flags = ["--tls-cert", str(cert), "--tls-key", str(key)]
    client: tuple[Path, Path] | None = None
    if setup.mutual_tls:
        flags += ["--tls-client-ca", str(tmp / f"{setup.name}-ca.crt")]
        client = write_pair(tmp, ca.issue("envoy", client=True), name=f"{setup.name}-client")
    socket = upstream_tls(
        ca=str(tmp / f"{setup.name}-ca.crt"),
        name="localhost",
        cert=str(client[0]) if client else None,
        key=str(client[1]) if client else None,
    )
    return flags, socket


def _sidecar_args(setup: Setup, redis_url: str | None) -> list[str]:
    args = [*setup.args, *(["--workers", str(setup.workers)] if setup.workers > 1 else [])]
    if setup.redis:
        if redis_url is None:
            raise BenchError(f"{setup.name} counts in Redis: the stack needs a redis_url")
        # A busy moment of a shared machine can stall a Redis call past the default timeout,
        # which opens the circuit breaker and moves the checks to memory: not what is measured.
        args += ["--redis-url", redis_url, "--redis-timeout-ms", str(REDIS_TIMEOUT_MS)]
    return args


@contextlib.contextmanager
def stack(
    setups: tuple[Setup, ...],
    *,
    material: Material,
    envoy_concurrency: int,
    logs: Path,
    redis_url: str | None = None,
) -> Iterator[Stack]:
    """Start the upstream, the authorizers and one gateway per setup; stop them all on exit."""
    started: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="authz-bench-") as tmp_name:
        tmp = Path(tmp_name)

        def envoy(name: str, admin: ListenAddress, config: dict[str, Any]) -> Proc:
            (tmp / f"{name}.json").write_text(dump(config))
            conf = tmp / f"{name}.json"
            started.append(procs.start_envoy(name, conf, concurrency=envoy_concurrency, logs=logs))
            procs.wait_ready(f"http://{admin.host}:{admin.port}/ready", started[-1])
            return started[-1]

        def sidecar(
            setup: Setup, tls_flags: list[str]
        ) -> tuple[Proc, ListenAddress | list[ListenAddress]]:
            policies, http = tmp / f"policies-{setup.name}", procs.loopback()
            policies.mkdir()
            policy = sidecar_policy(material, rate_limit=setup.rate_limit)
            (policies / "bench.yaml").write_text(yaml.safe_dump(policy))
            flag, address = _sidecar_listen(setup, tmp)
            proc = procs.start_sidecar(
                f"authz-{setup.name}",
                policies=policies,
                grpc_listen=flag,
                http=http,
                logs=logs,
                extra_args=[*_sidecar_args(setup, redis_url), *tls_flags],
            )
            started.append(proc)
            procs.wait_ready(f"http://{http.host}:{http.port}/readyz", proc)
            return proc, address

        try:
            up, up_admin = procs.loopback(), procs.loopback()
            upstream = envoy("upstream", up_admin, upstream_config(listen=up, admin=up_admin))
            running: list[Running] = []
            for setup in setups:
                authorizer: Proc | None = None
                address: ListenAddress | list[ListenAddress] | None = None
                tls_flags, sidecar_tls = _tls(setup, tmp)
                if setup.auth is Auth.STATIC:
                    address, admin = procs.loopback(), procs.loopback()
                    config = static_authorizer_config(listen=address, admin=admin)
                    authorizer = envoy(f"authorizer-{setup.name}", admin, config)
                elif setup.auth is Auth.EXT_AUTHZ:
                    authorizer, address = sidecar(setup, tls_flags)
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
                running.append(Running(setup, listen, admin, proc, authorizer))
            yield Stack(upstream, running)
        finally:
            procs.stop_all(started)


@dataclass(frozen=True, slots=True)
class Expectation:
    what: str
    token: str | None
    status: int
    #: Expected x-echo-user in the response; None = not checked.
    echo: str | None = None


def expectations(setup: Setup, material: Material) -> list[Expectation]:
    if setup.auth is Auth.NONE:
        return [Expectation("no token", None, 200)]
    valid = Expectation("valid token", material.token, 200, echo=SUBJECT)
    if setup.auth is Auth.STATIC:  # allows everything, by design: it is a reference
        return [valid, Expectation("no token", None, 200, echo=SUBJECT)]
    checks = [
        valid,
        Expectation("no token", None, 401),
        Expectation("forged signature", material.token_bad_signature, 401),
    ]
    if setup.auth is Auth.EXT_AUTHZ:
        checks.append(Expectation("token without the scope", material.token_without_scope, 403))
    return checks


def request(address: ListenAddress, *, token: str | None) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection(address.host, address.port, timeout=5)
    try:
        conn.request("GET", PATH, headers={"authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def probe(setup: Setup, address: ListenAddress, material: Material) -> list[str]:
    """Run every expectation; return what passed, or raise BenchError naming what did not."""
    passed: list[str] = []
    for check in expectations(setup, material):
        status, headers = request(address, token=check.token)
        if status != check.status:
            raise BenchError(
                f"{setup.name}: {check.what} answered {status}, expected {check.status}; "
                "refusing to benchmark a misconfigured setup"
            )
        if check.echo is not None and headers.get(ECHO_HEADER) != check.echo:
            raise BenchError(
                f"{setup.name}: {check.what}: upstream saw x-user-id "
                f"{headers.get(ECHO_HEADER)!r}, expected {check.echo!r}"
            )
        passed.append(f"{check.what} -> {status}")
    if setup.rate_limit is not None:  # the limit is counted: its header is on every answer
        _status, headers = request(address, token=material.token)
        if headers.get("ratelimit-limit") != str(setup.rate_limit):
            raise BenchError(f"{setup.name}: the answer carries no RateLimit-Limit: {headers}")
        passed.append(f"RateLimit-Limit {setup.rate_limit}")
    return passed


def probe_all(current: Stack, material: Material) -> dict[str, list[str]]:
    return {r.setup.name: probe(r.setup, r.listen, material) for r in current.setups}
