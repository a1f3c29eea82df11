"""Revocations shared through a real redis-server by real `authz serve` processes: a supervisor
with two workers and a second replica. One `authz revoke` reaches every process that checks,
and a replica started afterwards loads it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.workers.pool import worker_listen
from tests.support.grpcclient import CheckClient, check_request
from tests.support.keys import claims, rsa_key
from tests.support.policies import auth_policy, issuer, rule, write_policies
from tests.support.procs import free_port, run_python, start_sidecar
from tests.support.redis import RedisServer
from tests.support.wait import wait_for

KEY = rsa_key("shared-1")
HOST = "orders.test"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def status(target: str, token: str) -> int:
    client = CheckClient(target)
    try:
        headers = {"authorization": f"Bearer {token}"}
        answer = client.check(check_request(host=HOST, path="/orders/1", headers=headers))
    finally:
        client.close()
    return 200 if answer.status.code == 0 else answer.denied_response.status.code


def test_one_revoke_reaches_every_worker_and_replica(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    policies = write_policies(
        tmp_path / "p.yaml",
        auth_policy(
            "orders",
            hosts=[HOST],
            issuers=[issuer(keys=[KEY])],
            rules=[rule("read", paths=["/orders/**"])],
        ),
    )
    redis = ["--redis-url", redis_server.url]
    listen = f"unix:{tmp_path}/authz.sock"
    admin = f"127.0.0.1:{free_port()}"
    supervisor, _, _ = start_sidecar(
        tmp_path,
        [policies],
        grpc_listen=listen,
        extra=["--workers", "2", "--admin-listen", admin, *redis],
    )
    replica, replica_grpc, _ = start_sidecar(tmp_path, [policies], extra=redis, name="replica")
    procs = [supervisor, replica]
    targets = [worker_listen(listen, i) for i in range(2)] + [replica_grpc]
    token = KEY.sign(claims(jti="leaked-1"))
    other = KEY.sign(claims(jti="fine-1"))
    try:
        assert [status(t, token) for t in targets] == [200, 200, 200]
        done = run_python("-m", "authz", "revoke", "--admin", admin, "--jti", "leaked-1")
        assert done.returncode == 0, done.stderr
        assert "warning" not in done.stderr  # shared: every replica enforces it
        wait_for(
            lambda: [status(t, token) for t in targets] == [401, 401, 401],
            what="the revocation on both workers and the other replica",
        )
        assert [status(t, other) for t in targets] == [200, 200, 200]
        replica.terminate()
        # Ready means the shared list is loaded: the very first check already refuses.
        late, late_grpc, _ = start_sidecar(tmp_path, [policies], extra=redis, name="late")
        procs.append(late)
        assert status(late_grpc, token) == 401
    finally:
        for proc in procs:
            proc.terminate()
