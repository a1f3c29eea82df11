"""1,000 AuthPolicies at once: a handful of snapshot swaps, not 1,000, and status on all of them.

The numbers (time to enforce, swaps, time until every status is written) are printed for the
record (`pytest -s`). What is asserted holds however slow the machine is: the swaps are at most
one per coalescing window the burst lasted (a slower burst only allows more), and everything ends
up enforced with a status.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from tests.controller.harness import FAST, Cluster, running
from tests.support.fakekube import FakeKube
from tests.support.policies import auth_policy
from tests.support.wait import until

COUNT = 1000


def apply_all(k8s: Cluster, prefix: str) -> float:
    """Create COUNT policies as fast as the API server takes them (16 clients in parallel)."""
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: k8s.create(auth_policy(f"{prefix}{i:04d}")), range(COUNT)))
    return time.monotonic() - started


async def test_a_thousand_policies_applied_at_once(kube: FakeKube, k8s: Cluster) -> None:
    async with running(kube) as h:
        swaps_before = len(h.snapshots)
        started = time.monotonic()
        applying = await asyncio.to_thread(apply_all, k8s, "bulk-")
        await until(lambda: len(h.current.policies) == COUNT, what="all 1,000 enforced")
        enforced = time.monotonic() - started
        swaps = len(h.snapshots) - swaps_before
        await until(
            lambda: h.counters.status_writes[("Accepted", "ok")] >= COUNT,
            within=120,
            what="all 1,000 statuses written",
        )
        statuses = time.monotonic() - started
        print(
            f"\n1,000 policies created in {applying:.2f}s; all enforced after {enforced:.2f}s "
            f"in {swaps} snapshot swap(s) (compile {h.counters.swap_seconds:.2f}s in total); "
            f"every status written after {statuses:.2f}s"
        )
        # One swap per coalescing window at most, however many resources arrive; the burst's
        # own length (a slow machine makes it longer) bounds the windows.
        assert swaps <= applying / FAST.coalesce_max + 3
        assert all(s.state.value == "ready" for s in h.current.states)


async def test_a_thousand_existing_policies_are_one_swap_at_start(
    kube: FakeKube, k8s: Cluster
) -> None:
    apply_all(k8s, "pre-")
    started = time.monotonic()
    async with running(kube) as h:
        loaded = time.monotonic() - started
        assert len(h.current.policies) == COUNT
        assert len(h.snapshots) == 1
        print(f"\n1,000 existing policies listed, compiled and published once in {loaded:.2f}s")
