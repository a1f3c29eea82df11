"""`authz serve --kubernetes` as a process, behind the real Envoy, against the fake API server.

What a user sees: `kubectl apply` (here: the kubernetes client) changes what Envoy lets through
(how fast is printed, `pytest -s`); a bad update leaves the previous version serving and says why
in status; an API server outage changes nothing for traffic and /readyz; two replicas elect one
status writer, and when it is killed (-9) the other takes over.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.controller.harness import Cluster, cluster
from tests.e2e.gateway import HOST
from tests.support.envoy import Envoy, start_envoy
from tests.support.fakekube import FakeKube
from tests.support.grpcclient import CheckClient, check_request
from tests.support.http import Response, request
from tests.support.keys import SigningKey, claims, jwks, rsa_key
from tests.support.policies import auth_policy, issuer, rule
from tests.support.procs import Proc, start_echo, start_http_dir, start_sidecar
from tests.support.wait import wait_for

LEASE = 3.0  # --lease-duration for these tests; renewals every 0.4 s
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/default/leases/authz-leader"


def orders(jwks_url: str, *, scope: str = "orders:read") -> dict[str, Any]:
    return auth_policy(
        "orders",
        hosts=[HOST],
        issuers=[issuer(jwks_uri=jwks_url)],
        rules=[
            rule("health", paths=["/healthz"], anonymous=True),
            rule("read", paths=["/orders/*"], scopes=[scope]),
        ],
        response={"setHeaders": [{"name": "x-user-id", "claim": "sub"}]},
    )


def sidecar(tmp: Path, kube: FakeKube, name: str, *, wait: bool = True) -> tuple[Proc, str, int]:
    return start_sidecar(
        tmp,
        [],
        extra=[
            "--kubernetes",
            "--kubeconfig",
            str(kube.kubeconfig_path),
            "--lease-duration",
            str(LEASE),
        ],
        env={"POD_NAME": name, "POD_NAMESPACE": "default"},
        name=name,
        wait=wait,
    )


def timed(probe: Callable[[], object], what: str) -> float:
    """Wait until `probe()` holds; returns how long that took, for the record (never asserted)."""
    started = time.monotonic()
    wait_for(probe, what=what)
    return time.monotonic() - started


def bookmarks(http_port: int) -> float:
    """BOOKMARK events a sidecar's watch has delivered (from its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "authz_watch_events_total" and sample.labels.get("type") == "BOOKMARK"
    )


def lease_renewals(kube: FakeKube) -> int:
    return sum(1 for r in kube.requests() if r.method == "PUT" and r.path == LEASE_PATH)


def quiet_while(kube: FakeKube, ports: list[int], *, renewals: int = 5, marks: int = 3) -> None:
    """Wait until the leader renewed `renewals` times and every replica saw `marks` bookmarks:
    time enough for anything that should not happen (a rewrite, a flapping lease) to happen."""
    start_renewals = lease_renewals(kube)
    start_marks = [bookmarks(port) for port in ports]
    wait_for(
        lambda: (
            lease_renewals(kube) >= start_renewals + renewals
            and all(bookmarks(p) >= m + marks for p, m in zip(ports, start_marks, strict=True))
        ),
        what="lease renewals and bookmarks",
    )


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass
class Stack:
    kube: FakeKube
    k8s: Cluster
    envoy: Envoy
    sidecar: Proc
    http_port: int
    jwks_url: str
    key: SigningKey

    def get(self, path: str, *, scope: str | None = None) -> Response:
        token = self.key.sign(claims(scope=scope)) if scope is not None else None
        return request(self.envoy.url, path, host=HOST, token=token)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    key = rsa_key()
    keys_dir = tmp_path / "jwks"
    keys_dir.mkdir()
    (keys_dir / "jwks.json").write_text(json.dumps(jwks(key)))
    procs: list[Proc] = []
    with FakeKube.start(tmp_path / "kube", bookmark_interval=0.5) as kube, cluster(kube) as k8s:
        try:
            jwks_server, jwks_port = start_http_dir(tmp_path, keys_dir, name="jwks")
            procs.append(jwks_server)
            side, grpc, http_port = sidecar(tmp_path, kube, "pod-a")
            procs.append(side)
            echo, echo_port = start_echo(tmp_path)
            procs.append(echo)
            envoy = start_envoy(tmp_path, authz=grpc, upstream_port=echo_port)
            procs.append(envoy.proc)
            url = f"http://127.0.0.1:{jwks_port}/jwks.json"
            yield Stack(kube, k8s, envoy, side, http_port, url, key)
        finally:
            for proc in reversed(procs):
                proc.terminate()


def test_apply_update_break_and_delete_through_envoy(stack: Stack) -> None:
    assert stack.get("/healthz").json()["error"] == "no_policy"

    stack.k8s.create(orders(stack.jwks_url))
    took = timed(lambda: stack.get("/healthz").status == 200, "create")
    allowed = stack.get("/orders/1", scope="orders:read")
    assert allowed.status == 200
    assert allowed.json()["headers"]["x-user-id"] == "alice"
    wait_for(lambda: (stack.k8s.ready("orders") or {}).get("status") == "True", what="status")

    stack.k8s.patch("orders", {"spec": orders(stack.jwks_url, scope="orders:admin")["spec"]})
    wait_for(lambda: stack.get("/orders/1", scope="orders:read").status == 403, what="update")
    assert stack.get("/orders/1", scope="orders:admin").status == 200

    broken = orders(stack.jwks_url)["spec"]
    broken["rules"].append(dict(broken["rules"][0]))  # duplicate rule name: our compiler refuses
    stack.k8s.patch("orders", {"spec": broken})
    wait_for(
        lambda: (stack.k8s.ready("orders") or {}).get("reason") == "Invalid",
        what="invalid update reported",
    )
    ready = stack.k8s.ready("orders")
    assert ready is not None
    assert "spec.rules: rule names must be unique" in ready["message"]
    assert "the previous valid version keeps serving" in ready["message"]
    assert stack.get("/orders/1", scope="orders:admin").status == 200  # generation 2 serves on
    assert stack.get("/orders/1", scope="orders:read").status == 403

    stack.k8s.delete("orders")
    wait_for(lambda: stack.get("/healthz").status == 403, what="delete")
    assert stack.get("/healthz").json()["error"] == "no_policy"
    print(f"\ncreate enforced through Envoy after {took:.2f}s")
    assert "Bearer ey" not in stack.sidecar.output()  # no token in the logs


def test_every_change_reaches_envoy(stack: Stack) -> None:
    stack.k8s.create(orders(stack.jwks_url))
    wait_for(lambda: stack.get("/healthz").status == 200, what="create")
    latencies = []
    for round_ in range(10):
        scope, expected = ("orders:admin", 403) if round_ % 2 == 0 else ("orders:read", 200)
        stack.k8s.patch("orders", {"spec": orders(stack.jwks_url, scope=scope)["spec"]})

        def enforced(want: int = expected) -> bool:
            return stack.get("/orders/1", scope="orders:read").status == want

        latencies.append(timed(enforced, f"update {round_}"))
    latencies.sort()
    print(
        f"\nspec change -> Envoy answers differently: median {latencies[5]:.2f}s, "
        f"max {latencies[-1]:.2f}s over {len(latencies)} updates"
    )


def test_api_server_outage_changes_nothing_for_traffic_or_readiness(stack: Stack) -> None:
    stack.k8s.create(orders(stack.jwks_url))
    wait_for(lambda: stack.get("/healthz").status == 200, what="create")
    stack.kube.kill()
    wait_for(lambda: "Kubernetes API unreachable" in stack.sidecar.output(), what="outage noticed")
    assert readyz(stack.http_port) == 200
    assert stack.get("/orders/1", scope="orders:read").status == 200
    assert stack.get("/orders/1").status == 401
    stack.kube.restart()
    stack.k8s.delete("orders")
    wait_for(lambda: stack.get("/healthz").status == 403, what="change after the outage")
    log = stack.sidecar.output()
    assert "Kubernetes API unreachable" in log
    assert "Kubernetes API reachable again after" in log


def lease_holder(k8s: Cluster) -> tuple[str | None, Any]:
    """(holder, renew time) of the Lease; (None, None) before any replica has created it."""
    try:
        lease = client.CoordinationV1Api(k8s.api_client).read_namespaced_lease(
            "authz-leader", "default"
        )
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None, None
        raise
    assert lease.spec is not None
    return lease.spec.holder_identity, lease.spec.renew_time


def test_two_replicas_one_writer_and_takeover_when_the_leader_is_killed(tmp_path: Path) -> None:
    with FakeKube.start(tmp_path / "kube", bookmark_interval=0.5) as kube, cluster(kube) as k8s:
        replicas = {name: sidecar(tmp_path, kube, name) for name in ("pod-a", "pod-b")}
        ports = [port for _proc, _grpc, port in replicas.values()]
        try:
            wait_for(lambda: lease_holder(k8s)[0] in replicas, what="a leader")
            for index in range(5):
                k8s.create(auth_policy(f"p{index}"))
            wait_for(lambda: all(k8s.ready(f"p{i}") for i in range(5)), what="status on all")
            quiet_while(kube, ports)  # renewals, bookmarks, status ticks on both replicas
            assert [k8s.status_writes(f"p{i}") for i in range(5)] == [1] * 5
            for _proc, grpc, _port in replicas.values():  # every replica enforces
                checker = CheckClient(grpc)
                try:
                    assert checker.check(check_request(host="p4.test")).status.code == 0
                finally:
                    checker.close()

            leader, _ = lease_holder(k8s)
            assert leader is not None
            follower = next(name for name in replicas if name != leader)
            transitions = lease_transitions(k8s)
            replicas[leader][0].popen.kill()  # -9: no release, no goodbye
            took = timed(lambda: lease_holder(k8s)[0] == follower, "takeover by the follower")
            print(f"\nleader killed; {follower} took over after {took:.2f}s (lease {LEASE:.0f}s)")
            assert lease_transitions(k8s) == transitions + 1
            # Nobody released the lease: the follower waited until it expired.
            assert f"the leader '{leader}' has not renewed" in replicas[follower][0].output()

            k8s.create(auth_policy("after-takeover"))
            wait_for(lambda: k8s.ready("after-takeover"), what="the new leader writing status")
            quiet_while(kube, [replicas[follower][2]])
            assert k8s.status_writes("after-takeover") == 1
            assert [k8s.status_writes(f"p{i}") for i in range(5)] == [1] * 5  # nothing redone
        finally:
            for proc, _grpc, _port in replicas.values():
                proc.terminate()


def lease_transitions(k8s: Cluster) -> int:
    lease = client.CoordinationV1Api(k8s.api_client).read_namespaced_lease(
        "authz-leader", "default"
    )
    assert lease.spec is not None
    return int(lease.spec.lease_transitions or 0)


def test_ready_only_after_the_first_list_and_sigterm_releases_the_lease(tmp_path: Path) -> None:
    with FakeKube.start(tmp_path / "kube", bookmark_interval=0.5) as kube, cluster(kube) as k8s:
        k8s.create(auth_policy("early"))
        kube.kill()
        a, grpc_a, port_a = sidecar(tmp_path, kube, "pod-a", wait=False)
        b: Proc | None = None
        try:
            wait_for(
                lambda: "Kubernetes API unreachable" in a.output(), what="retrying", unless=a.exited
            )
            assert readyz(port_a) == 503  # nothing listed yet: not ready
            kube.restart()
            wait_for(lambda: readyz(port_a) == 200, what="ready after the first list")
            checker = CheckClient(grpc_a)
            try:
                assert checker.check(check_request(host="early.test")).status.code == 0
            finally:
                checker.close()
            wait_for(lambda: lease_holder(k8s)[0] == "pod-a", what="pod-a leads")
            b, _, _ = sidecar(tmp_path, kube, "pod-b")
            assert a.terminate() == 0  # within terminate's grace, or it is killed: not 0
            assert "released the leader Lease" in a.output()
            wait_for(lambda: lease_holder(k8s)[0] == "pod-b", what="handover")
            assert "has not renewed" not in b.output()  # taken over at once, not on expiry
        finally:
            a.terminate()
            if b is not None:
                b.terminate()


def test_sigterm_while_waiting_for_the_api_server_exits_cleanly(tmp_path: Path) -> None:
    with FakeKube.start(tmp_path / "kube") as kube:
        kube.kill()
        proc, _, port = sidecar(tmp_path, kube, "pod-a", wait=False)
        wait_for(lambda: "Kubernetes API unreachable" in proc.output(), what="retrying")
        assert readyz(port) == 503
        assert proc.terminate() == 0  # within terminate's grace, or it is killed: not 0


def test_a_brute_force_block_is_a_warning_event_on_the_policy(stack: Stack) -> None:
    guarded = orders(stack.jwks_url)
    guarded["spec"]["protection"] = {
        "bruteForce": [
            {
                "name": "per-ip",
                "key": "sourceIP",
                "maxFailures": 2,
                "window": "1m",
                "blockFor": "5m",
            }
        ]
    }
    stack.k8s.create(guarded)
    wait_for(lambda: stack.get("/orders/1").status == 401, what="the guarded policy served")
    wait_for(lambda: stack.get("/orders/1").status == 403, what="the client blocked")
    assert stack.get("/orders/1", scope="orders:read").json()["error"] == "blocked"

    def events() -> list[Any]:
        found = client.CoreV1Api(stack.k8s.api_client).list_namespaced_event(
            "default", field_selector="involvedObject.name=orders"
        )
        return [e for e in found.items if e.reason == "ClientBlocked"]

    wait_for(events, what="a ClientBlocked event")
    (event,) = events()
    assert event.type == "Warning"
    assert "per-ip: sourceIP 127.0.0.1 is blocked for 5m after 2 failed" in event.message
