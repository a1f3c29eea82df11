"""The leader Lease's default name: one per shard (namespaces and selector), so shards elect apart."""

from __future__ import annotations

from authz.controller.source import default_lease_name
from authz.settings import KubernetesSettings


def test_each_shard_elects_its_own_leader() -> None:
    everything = KubernetesSettings(enabled=True)
    eu = KubernetesSettings(enabled=True, selector="shard=eu")
    us = KubernetesSettings(enabled=True, selector="shard=us")
    assert default_lease_name(everything) == "authz-leader"
    assert default_lease_name(eu).startswith("authz-leader-")
    assert len({default_lease_name(s) for s in (everything, eu, us)}) == 3
    shop = KubernetesSettings(enabled=True, namespaces=("shop",), selector="shard=eu")
    assert default_lease_name(shop) not in {default_lease_name(s) for s in (everything, eu, us)}
    assert default_lease_name(eu) == default_lease_name(
        KubernetesSettings(enabled=True, selector="shard=eu", identity="another-replica")
    )
