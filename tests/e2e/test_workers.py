"""`authz serve --workers 2` through the real Envoy: both workers answer, policies and key
changes reach each of them, /metrics adds them up, SIGTERM drains them all."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from tests.e2e.gateway import HOST, Gateway, orders_policy, start_gateway
from tests.support.grpcclient import CheckClient, check_request
from tests.support.http import Response, request
from tests.support.keys import SigningKey, claims, rsa_key
from tests.support.wait import wait_for

WORKERS = 2


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return rsa_key("w-1")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, key: SigningKey) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("workers"), key, workers=WORKERS)
    yield gw
    gw.stop()


def get(gw: Gateway, path: str, **kwargs: object) -> Response:
    kwargs.setdefault("host", HOST)
    return request(gw.url, path, **kwargs)  # type: ignore[arg-type]


def each_worker(gw: Gateway, path: str, token: str | None) -> list[int]:
    """The HTTP status each worker answers, asked directly on its own socket."""
    statuses = []
    headers = {"authorization": f"Bearer {token}"} if token else {}
    for address in gw.workers:
        client = CheckClient(address)
        try:
            answer = client.check(check_request(host=HOST, path=path, headers=headers))
        finally:
            client.close()
        statuses.append(200 if answer.status.code == 0 else answer.denied_response.status.code)
    return statuses


def test_each_worker_has_its_own_socket_and_answers(gateway: Gateway, key: SigningKey) -> None:
    assert len(gateway.workers) == WORKERS
    assert all(Path(a.removeprefix("unix:")).is_socket() for a in gateway.workers)
    assert each_worker(gateway, "/orders", key.sign(claims())) == [200, 200]
    assert each_worker(gateway, "/orders", None) == [401, 401]
    assert each_worker(gateway, "/orders", key.sign(claims(scope="other"))) == [403, 403]


def test_envoy_spreads_checks_over_every_worker(gateway: Gateway, key: SigningKey) -> None:
    token = key.sign(claims(sub="spread"))
    for _ in range(40):
        response = get(gateway, "/orders", token=token)
        assert response.status == 200
        assert response.json()["headers"]["x-user-id"] == "spread"
    assert get(gateway, "/orders").status == 401
    # Envoy's admin /clusters counts requests per endpoint of the authz cluster.
    clusters = request(f"http://127.0.0.1:{gateway.envoy.admin_port}", "/clusters").body.decode()
    per_worker = {
        address: int(m.group(1))
        for address in gateway.workers
        if (m := re.search(rf"^authz::{re.escape(address[5:])}::rq_total::(\d+)$", clusters, re.M))
    }
    assert len(per_worker) == WORKERS, clusters
    assert all(count >= 10 for count in per_worker.values()), per_worker
    lines = [line for line in gateway.sidecar.output().splitlines() if line.startswith("{")]
    assert all(json.loads(line)["decision_id"] for line in lines)  # whole lines only


def test_metrics_add_up_every_worker(gateway: Gateway, key: SigningKey) -> None:
    def allowed() -> float:
        text = request(f"http://127.0.0.1:{gateway.http_port}", "/metrics").body.decode()
        match = re.search(
            r'^authz_decisions_total\{decision="allow",dry_run="false",policy="shop/orders",'
            r'reason="allowed"\} (\S+)$',
            text,
            re.MULTILINE,
        )
        return float(match.group(1)) if match else 0.0

    before = allowed()
    token = key.sign(claims(sub="counted"))
    assert each_worker(gateway, "/orders", token) == [200, 200]  # one check on each worker
    assert allowed() == before + 2


def test_hot_reload_reaches_every_worker(gateway: Gateway, key: SigningKey) -> None:
    token = key.sign(claims())
    assert each_worker(gateway, "/orders", token) == [200, 200]
    policy = gateway.policies / "orders.yaml"
    original = policy.read_text()
    try:
        policy.write_text(original.replace("orders:read", "orders:list"))
        wait_for(lambda: each_worker(gateway, "/orders", token) == [403, 403], what="the edit")
        assert get(gateway, "/orders", token=token).status == 403
    finally:
        policy.write_text(original)
        wait_for(lambda: each_worker(gateway, "/orders", token) == [200, 200], what="the revert")


def test_a_removed_key_stops_verifying_on_every_worker_within_the_refresh(
    tmp_path: Path,
) -> None:
    old, new = rsa_key("old"), rsa_key("new")
    gw = start_gateway(tmp_path, old, new, workers=WORKERS, extra=("--jwks-refresh-interval", "2"))
    try:
        token = old.sign(claims())
        assert each_worker(gw, "/orders", token) == [200, 200]  # verified and cached on both
        gw.publish_keys(new)  # the issuer revokes the old key
        wait_for(lambda: each_worker(gw, "/orders", token) == [401, 401], what="key removed")
        assert get(gw, "/orders", token=token).status == 401
        assert each_worker(gw, "/orders", new.sign(claims())) == [200, 200]
    finally:
        gw.stop()


def test_sigterm_drains_every_worker_and_exits_zero(tmp_path: Path, key: SigningKey) -> None:
    gw = start_gateway(tmp_path, key, workers=WORKERS)
    try:
        assert get(gw, "/orders", token=key.sign(claims())).status == 200
        workers = psutil.Process(gw.sidecar.popen.pid).children()
        assert len(workers) == WORKERS
    finally:
        code = gw.sidecar.terminate()
        gw.stop()
    assert code == 0, gw.sidecar.output()
    assert "stopped" in gw.sidecar.output()
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


def test_a_killed_worker_is_restarted(tmp_path: Path, key: SigningKey) -> None:
    gw = start_gateway(tmp_path, key, workers=WORKERS)
    try:
        (victim,) = psutil.Process(gw.sidecar.popen.pid).children()[:1]
        os.kill(victim.pid, signal.SIGKILL)
        wait_for(
            lambda: (
                len(psutil.Process(gw.sidecar.popen.pid).children()) == WORKERS
                and victim.pid
                not in {c.pid for c in psutil.Process(gw.sidecar.popen.pid).children()}
            ),
            what="a new worker",
        )
        token = key.sign(claims())
        wait_for(
            lambda: each_worker(gw, "/orders", token) == [200, 200],
            what="both workers answering",
            ignore=(grpc.RpcError,),  # the new worker's socket is not there yet
        )
        assert "restarting it" in gw.sidecar.output()
    finally:
        gw.stop()


def test_workers_need_a_unix_socket(tmp_path: Path) -> None:
    from tests.support.procs import start_sidecar

    policies = tmp_path / "p"
    policies.mkdir()
    (policies / "orders.yaml").write_text(orders_policy("https://issuer.test/jwks.json"))
    proc, _, _ = start_sidecar(tmp_path, [policies], extra=("--workers", "2"), wait=False)
    assert proc.popen.wait(10) == 2
    assert "--workers 2 needs --grpc-listen unix:PATH" in proc.output()


def test_host_grants_reach_every_worker(tmp_path: Path, key: SigningKey) -> None:
    grants = tmp_path / "allowed-hosts.yaml"
    grants.write_text("shop: ['*.elsewhere.test']\n")
    gw = start_gateway(tmp_path, key, workers=WORKERS, extra=("--allowed-hosts", str(grants)))
    try:
        token = key.sign(claims())
        # Refused from the start (each worker's init), then granted, then revoked (messages).
        assert each_worker(gw, "/orders", token) == [403, 403]
        grants.write_text(f"shop: [{HOST}]\n")
        wait_for(lambda: each_worker(gw, "/orders", token) == [200, 200], what="the grant")
        assert get(gw, "/orders", token=token).status == 200
        grants.write_text("shop: []\n")
        wait_for(lambda: each_worker(gw, "/orders", token) == [403, 403], what="the revocation")
        assert "host_not_allowed" in gw.sidecar.output()
    finally:
        gw.stop()
