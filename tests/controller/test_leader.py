"""Leader election over a real Lease on the fake API server, with the electors' clocks in hand.

The electors run their `tick` directly (no threads) and read a monotonic clock the test moves,
so "the leader stopped renewing 3 s ago" needs no sleeping and cannot flake.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kubernetes import client

from authz.controller.api import LeaseRecord
from authz.controller.errors import KubeError
from authz.controller.kube import KubeClient, connect, load_configuration
from authz.controller.leader import LeaderElector
from authz.controller.observer import Counters
from tests.support.fakekube import FakeKube
from tests.support.wait import wait_for

NS, NAME, DURATION = "default", "authz-leader", 3.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api(kube: FakeKube) -> Iterator[KubeClient]:
    api, _ = connect(kube.kubeconfig_path)
    yield api
    api.close()


def elector(api: KubeClient, identity: str, clock: Clock, changes: list[bool]) -> LeaderElector:
    return LeaderElector(
        api,
        namespace=NS,
        name=NAME,
        identity=identity,
        duration=DURATION,
        observer=Counters(),
        on_change=changes.append,
        monotonic=clock,
    )


def holder(kube: FakeKube) -> str | None:
    with kube.api_client() as api_client:
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(NAME, NS)
    return lease.spec.holder_identity if lease.spec else None


def test_one_leader_and_takeover_after_the_lease_expires(kube: FakeKube, api: KubeClient) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = elector(api, "pod-a", clock_a, [])
    b = elector(api, "pod-b", clock_b, [])
    a.tick()  # creates the Lease
    b.tick()
    assert (a.is_leader(), b.is_leader(), holder(kube)) == (True, False, "pod-a")
    for _ in range(3):  # a renews; b keeps seeing a fresh record
        clock_a.now += 1.0
        clock_b.now += 1.0
        a.tick()
        b.tick()
    assert (a.is_leader(), b.is_leader()) == (True, False)
    # a dies (stops renewing). Just short of the duration b still waits...
    clock_b.now += DURATION - 0.1
    b.tick()
    assert not b.is_leader()
    clock_b.now += 0.2
    b.tick()
    assert b.is_leader()
    assert holder(kube) == "pod-b"
    record = api.read_lease(NS, NAME)
    assert record is not None
    assert record.transitions == 1


def test_leader_that_cannot_renew_steps_down_before_anyone_may_take_over(
    kube: FakeKube, api: KubeClient
) -> None:
    clock = Clock()
    a = elector(api, "pod-a", clock, [])
    a.tick()
    assert a.is_leader()
    kube.fail_requests(503)
    clock.now += DURATION * 10 / 15 - 0.1
    with pytest.raises(KubeError):
        a.tick()
    assert a.is_leader()  # still inside the renew deadline
    clock.now += 0.2
    assert not a.is_leader()  # two thirds of the duration: stop writing, others are not in yet


def test_stale_replace_is_a_conflict_so_two_replicas_cannot_both_win(
    kube: FakeKube, api: KubeClient
) -> None:
    now = datetime.now(UTC)
    created = api.create_lease(NS, NAME, LeaseRecord("pod-a", 3, now, now, 0))
    api.replace_lease(NS, NAME, LeaseRecord("pod-b", 3, now, now, 1, created.resource_version))
    with pytest.raises(KubeError) as exc:
        api.replace_lease(NS, NAME, LeaseRecord("pod-c", 3, now, now, 1, created.resource_version))
    assert exc.value.status == 409
    with pytest.raises(KubeError) as exc:
        api.create_lease(NS, NAME, LeaseRecord("pod-d", 3, now, now, 0))
    assert exc.value.status == 409


class CountingReads(KubeClient):
    """The sidecar's client, counting the Lease reads (an elector makes one per retry period)."""

    reads = 0

    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        self.reads += 1
        return super().read_lease(namespace, name)


def test_running_electors_hand_over_on_release(kube: FakeKube, api: KubeClient) -> None:
    changes_a: list[bool] = []
    changes_b: list[bool] = []
    a = elector(api, "pod-a", Clock(), changes_a)
    thread_a = threading.Thread(target=a.run, daemon=True)
    thread_a.start()
    wait_for(a.is_leader, what="pod-a leading")
    # b's clock stands still: a's lease can never expire in b's eyes, so if b leads, it is
    # because a released the lease on stop - not because b waited out its duration.
    reads = CountingReads(load_configuration(kube.kubeconfig_path)[0])
    b = elector(reads, "pod-b", Clock(), changes_b)
    thread_b = threading.Thread(target=b.run, daemon=True)
    thread_b.start()
    wait_for(lambda: reads.reads >= 3, what="pod-b reading the lease")
    assert not b.is_leader()
    a.stop()  # graceful shutdown releases the Lease...
    thread_a.join(5)
    wait_for(b.is_leader, what="pod-b leading")  # ...so the successor takes it at once
    b.stop()
    thread_b.join(5)
    assert changes_a == [True, False]
    assert changes_b == [True, False]
    reads.close()
    assert holder(kube) is None  # b released it too
