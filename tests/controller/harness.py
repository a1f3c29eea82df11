"""Run the Kubernetes policy source in-process against the fake API server.

Everything on the wire is real (the `kubernetes` client, HTTP, the fake API server in its own
process); the harness only stands in for app.py: it owns the PolicyStore, records every
published snapshot (so tests can count swaps), and exposes the source's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes import client

from authz.controller.kube import connect
from authz.controller.observer import Counters
from authz.controller.source import KubernetesSource
from authz.jwt.providers import offline_provider
from authz.policy.compile import KeyBinder
from authz.policy.ownership import HostGrants
from authz.policy.snapshot import EMPTY, Snapshot
from authz.policy.store import PolicyStore
from authz.settings import KubernetesSettings
from tests.support.fakekube import FakeKube

GROUP, VERSION, PLURAL = "authz.dev", "v1alpha1", "authpolicies"
NS = "default"
FAST = KubernetesSettings(
    enabled=True,
    identity="replica-a",
    lease_namespace=NS,
    lease_duration=3.0,
    stall_timeout=2.0,
    watch_timeout=60.0,
    backoff_initial=0.1,
    backoff_max=0.5,
)


class Cluster:
    """The test's own client: create, patch, delete and read AuthPolicies."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.api_client = kube.api_client()
        self.api = client.CustomObjectsApi(self.api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        ns = body["metadata"].get("namespace", NS)
        created = self.api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        assert isinstance(created, dict)
        return created

    def patch(self, name: str, patch: dict[str, Any], *, namespace: str = NS) -> dict[str, Any]:
        patched = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch
        )
        assert isinstance(patched, dict)
        return patched

    def delete(self, name: str, *, namespace: str = NS) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def get(self, name: str, *, namespace: str = NS) -> dict[str, Any]:
        obj = self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        assert isinstance(obj, dict)
        return obj

    def ready(self, name: str, *, namespace: str = NS) -> dict[str, Any] | None:
        """The Ready condition of a policy, or None."""
        for condition in (self.get(name, namespace=namespace).get("status") or {}).get(
            "conditions", []
        ):
            if condition["type"] == "Ready":
                return dict(condition)
        return None

    def status_writes(self, name: str | None = None, *, namespace: str = NS) -> int:
        """Status writes the fake API server received (all, or for one policy)."""
        return sum(
            1
            for r in self.kube.requests()
            if r.path.endswith("/status")
            and r.method in ("PATCH", "PUT")
            and (name is None or r.path.endswith(f"/namespaces/{namespace}/{PLURAL}/{name}/status"))
        )


@contextlib.contextmanager
def cluster(kube: FakeKube) -> Iterator[Cluster]:
    c = Cluster(kube)
    try:
        yield c
    finally:
        c.close()


@dataclass
class Harness:
    source: KubernetesSource
    store: PolicyStore
    counters: Counters
    snapshots: list[Snapshot] = field(default_factory=list)

    @property
    def current(self) -> Snapshot:
        return self.snapshots[-1] if self.snapshots else EMPTY

    def host(self, host: str) -> str | None:
        """namespace/name of the policy serving `host`, if any."""
        found = self.current.lookup(host)
        return found.key if found is not None else None

    def state(self, key: str) -> Any:
        return next((s for s in self.current.states if s.key == key), None)


@contextlib.asynccontextmanager
async def running(
    kube: FakeKube,
    settings: KubernetesSettings = FAST,
    *,
    bind: KeyBinder = offline_provider,
    wait: bool = True,
    grants: HostGrants | None = None,
) -> AsyncIterator[Harness]:
    """The source started, first list published (unless wait=False), background loops running."""
    settings = replace(settings, kubeconfig=kube.kubeconfig_path)
    harness: Harness | None = None

    def publish(snapshot: Snapshot) -> None:
        assert harness is not None
        harness.snapshots.append(snapshot)

    store = PolicyStore(bind=bind, publish=publish, grants=grants)
    counters = Counters()
    api, _ = connect(settings.kubeconfig)
    source = KubernetesSource(
        api,
        settings=settings,
        update=store.update,
        current=lambda: harness.current if harness is not None else EMPTY,
        lease_namespace=NS,
        observer=counters,
    )
    harness = Harness(source, store, counters)
    await source.start()
    task: asyncio.Task[None] | None = None
    try:
        if wait:
            assert await asyncio.wait_for(source.first_load(), 10)
        task = asyncio.create_task(source.run())
        yield harness
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await source.stop()
        api.close()
