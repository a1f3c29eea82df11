"""Brute-force blocking end to end: the real Envoy (two, one per replica), two real sidecar
processes sharing one real redis-server, distinct clients told apart by X-Forwarded-For behind
`--trusted-proxy-hops 2` (a trusted balancer, then Envoy), and `authz blocks` against the running sidecars' admin API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.envoy import Envoy, start_envoy
from tests.support.http import Response, request
from tests.support.keys import SigningKey, claims, jwks, rsa_key
from tests.support.policies import auth_policy, issuer, rule, to_yaml
from tests.support.procs import Proc, free_port, start_echo, start_http_dir, start_sidecar
from tests.support.redis import RedisServer
from tests.support.wait import wait_for

HOST = "guarded.test"
MAX_FAILURES = 3
BLOCK_SECONDS = 120


@dataclass
class Replica:
    sidecar: Proc
    http_port: int
    admin: str
    envoy: Envoy

    def get(self, client: str, token: str | None) -> Response:
        headers = {"x-forwarded-for": client}
        return request(self.envoy.url, "/orders", host=HOST, headers=headers, token=token)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
        return text


@dataclass
class Stack:
    key: SigningKey
    forger: SigningKey
    redis: RedisServer
    replicas: list[Replica]

    def valid(self) -> str:
        return self.key.sign(claims(scope="", sub="e2e-user"))

    def forged(self) -> str:
        return self.forger.sign(claims(scope="", sub="e2e-user"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("bruteforce-e2e")
    key = rsa_key("bf-1")
    keys_dir = tmp / "jwks"
    keys_dir.mkdir()
    (keys_dir / "jwks.json").write_text(json.dumps(jwks(key)))
    jwks_server, jwks_port = start_http_dir(tmp, keys_dir, name="jwks-server")
    document = auth_policy(
        "guarded",
        namespace="e2e",
        hosts=[HOST],
        issuers=[issuer(jwks_uri=f"http://127.0.0.1:{jwks_port}/jwks.json")],
        rules=[rule("orders", paths=["/orders"])],
        protection={
            "bruteForce": [
                {
                    "name": "per-ip",
                    "key": "sourceIP",
                    "maxFailures": MAX_FAILURES,
                    "window": "60s",
                    "blockFor": f"{BLOCK_SECONDS}s",
                }
            ]
        },
    )
    policy_dir = tmp / "policies"
    policy_dir.mkdir()
    (policy_dir / "guarded.yaml").write_text(to_yaml(document))
    redis = RedisServer(tmp).start()
    echo, echo_port = start_echo(tmp)
    replicas: list[Replica] = []
    for i in range(2):
        admin = f"127.0.0.1:{free_port()}"
        flags = [
            "--redis-url",
            redis.url,
            "--redis-timeout-ms",
            "500",  # generous: a loaded machine must not turn slow answers into fallbacks
            # The test client plays one trusted balancer; Envoy appends its peer after its entry.
            "--trusted-proxy-hops",
            "2",
            "--admin-listen",
            admin,
        ]
        proc, grpc, http_port = start_sidecar(tmp, [policy_dir], extra=flags, name=f"authz-{i}")
        envoy = start_envoy(
            tmp, authz=grpc, upstream_port=echo_port, name=f"envoy-{i}", trusted_proxy_hops=1
        )
        replicas.append(Replica(proc, http_port, admin, envoy))
    yield Stack(key, rsa_key("bf-1"), redis, replicas)
    for replica in replicas:
        replica.envoy.terminate()
        replica.sidecar.terminate()
    echo.terminate()
    jwks_server.terminate()
    redis.stop()


def blocks_cli(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "authz", "blocks", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_401s_then_blocked_with_retry_after_even_with_a_valid_token(stack: Stack) -> None:
    first, second = stack.replicas
    client, bystander = "198.51.100.10", "198.51.100.11"
    assert first.get(client, stack.valid()).status == 200
    failures = [first.get(client, stack.forged()).status for _ in range(MAX_FAILURES)]
    assert failures == [401] * MAX_FAILURES
    blocked = first.get(client, stack.valid())
    assert blocked.status == 403
    assert blocked.json()["error"] == "blocked"
    assert 1 <= int(blocked.headers["retry-after"]) <= BLOCK_SECONDS
    assert first.get(bystander, stack.valid()).status == 200  # another client is not blocked
    # The other replica enforces the same block once it has re-read the shared blocks.
    wait_for(
        lambda: second.get(client, stack.valid()).status == 403,
        what="the second replica enforcing the block",
    )
    assert (
        'authz_bruteforce_blocks_total{dry_run="false",policy="e2e/guarded",protection="per-ip"} 1.0'
        in (first.metrics())
    )
    wait_for(  # the decision log is written by a background thread
        lambda: '"event":"block_started"' in first.sidecar.output(),
        what="a block_started line in the decision log",
    )


def test_failures_on_two_replicas_add_up(stack: Stack) -> None:
    first, second = stack.replicas
    client = "198.51.100.20"
    assert first.get(client, stack.forged()).status == 401
    assert second.get(client, stack.forged()).status == 401
    assert first.get(client, stack.forged()).status == 401
    assert first.get(client, stack.valid()).status == 403  # the replica that counted the third


def test_blocks_listed_and_cleared_with_the_cli(stack: Stack) -> None:
    first, second = stack.replicas
    client = "198.51.100.30"
    for _ in range(MAX_FAILURES):
        assert second.get(client, stack.forged()).status == 401
    listed = blocks_cli("list", "--admin", first.admin)
    assert f"e2e/guarded:per-ip={client}" in listed
    assert blocks_cli("clear", "--admin", first.admin, client) == "cleared 1 block\n"
    for replica in (first, second):

        def admitted(r: Replica = replica) -> bool:
            return r.get(client, stack.valid()).status == 200

        wait_for(admitted, what=f"the cleared client admitted again by {replica.sidecar.name}")


def test_redis_down_during_a_block_keeps_the_block(stack: Stack) -> None:
    first, second = stack.replicas
    client = "198.51.100.40"
    for _ in range(MAX_FAILURES):
        assert first.get(client, stack.forged()).status == 401
    wait_for(lambda: second.get(client, stack.valid()).status == 403, what="block on replica 2")
    stack.redis.kill()
    try:
        for replica in (first, second):
            assert replica.get(client, stack.valid()).status == 403  # known blocks hold
            assert replica.get("198.51.100.41", stack.valid()).status == 200
        # fallback (the default failure mode): new failures count in each replica's memory
        other = "198.51.100.42"
        for _ in range(MAX_FAILURES + 3):  # the first failed calls tried Redis, then fell back
            first.get(other, stack.forged())
        assert first.get(other, stack.valid()).status == 403
    finally:
        stack.redis.start()
    wait_for(
        lambda: re.search(r"brute-force blocks: .* answers again", first.sidecar.output()),
        what="the first replica back on Redis",
    )
