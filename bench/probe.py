"""Prove each setup allows and denies what it should before a single request is timed.

A benchmark of a misconfigured filter is worthless: a jwt_authn that lets everything through,
or a sidecar that denies everything fast, would post great numbers. So every auth setup must
answer 200 to the valid token with x-user-id set from `sub` (echoed back by the upstream),
401 without a token and 401 for a forged signature; the sidecar also 403 for a token missing
the rule's scope. The static reference authorizer must allow and set x-user-id. Anything else
stops the run.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from authz.server.listen import ListenAddress
from bench.material import SUBJECT, Material
from bench.procs import BenchError
from bench.setups import ECHO_HEADER, Auth, Setup

PATH = "/bench/items/42"


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
    if setup.auth is Auth.STATIC:  # allows everything, by design: it is a reference
        return [
            Expectation("valid token", material.token, 200, echo=SUBJECT),
            Expectation("no token", None, 200, echo=SUBJECT),
        ]
    checks = [
        Expectation("valid token", material.token, 200, echo=SUBJECT),
        Expectation("no token", None, 401),
        Expectation("forged signature", material.token_bad_signature, 401),
    ]
    if setup.auth is Auth.EXT_AUTHZ:
        checks.append(Expectation("token without the scope", material.token_without_scope, 403))
    return checks


def request(address: ListenAddress, *, token: str | None) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection(address.host, address.port, timeout=5)
    try:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", PATH, headers=headers)
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
    return passed
