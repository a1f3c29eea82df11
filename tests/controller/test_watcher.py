"""List + watch against the fake API server: changes, 410s, drops, stalls, restarts, outages."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from authz.controller.documents import ObjectCache
from authz.controller.errors import WATCH_ERROR, WATCH_EXPIRED, WATCH_STALLED, WATCH_UNAVAILABLE
from authz.controller.watcher import Backoff
from tests.controller.harness import FAST, Cluster, running
from tests.support.fakekube import FakeKube
from tests.support.policies import auth_policy
from tests.support.wait import until


async def test_create_update_delete_are_enforced(kube: FakeKube, k8s: Cluster) -> None:
    k8s.create(auth_policy("first"))
    async with running(kube) as h:
        assert h.host("first.test") == "default/first"
        k8s.create(auth_policy("second"))
        await until(lambda: h.host("second.test"), what="create")
        k8s.patch("second", {"spec": {"hosts": ["moved.test"]}})
        await until(lambda: h.host("moved.test"), what="update")
        assert h.host("second.test") is None
        k8s.delete("first")
        await until(lambda: h.host("first.test") is None, what="delete")
        assert h.host("moved.test") == "default/second"
        assert h.counters.lists == 1


def test_only_changes_of_what_is_enforced_signal_a_recompile() -> None:
    signals: list[str] = []
    cache = ObjectCache(
        ["all"],
        on_documents=lambda: signals.append("documents"),
        on_status=lambda: signals.append("status"),
    )
    first = auth_policy("quiet")
    first["metadata"].update(uid="u1", generation=1, resourceVersion="1")
    cache.apply("all", "ADDED", first)
    for change in (
        {"labels": {"team": "a"}},
        {"annotations": {"note": "x"}},
        {"resourceVersion": "9"},
    ):
        changed = {**first, "metadata": {**first["metadata"], **change}}
        cache.apply("all", "MODIFIED", changed)
    cache.apply("all", "MODIFIED", {**first, "status": {"conditions": []}})
    assert signals == ["documents", "status", "status", "status", "status"]
    cache.apply("all", "MODIFIED", {**first, "spec": {**first["spec"], "hosts": ["b.test"]}})
    assert signals[-1] == "documents"


async def test_status_and_label_changes_never_recompile(kube: FakeKube, k8s: Cluster) -> None:
    k8s.create(auth_policy("quiet"))
    async with running(kube) as h:
        await until(lambda: k8s.ready("quiet"), what="status written")
        swaps = len(h.snapshots)
        k8s.patch("quiet", {"metadata": {"labels": {"team": "a"}}})
        k8s.patch("quiet", {"metadata": {"annotations": {"note": "x"}}})
        k8s.create(auth_policy("barrier"))  # after them in the watch stream
        await until(lambda: h.host("barrier.test"), what="the barrier enforced")
        assert h.counters.events["MODIFIED"] >= 3  # status, labels, annotations
        assert len(h.snapshots) == swaps + 1  # the barrier's swap only


async def test_410_mid_stream_relists_and_sees_deletions_it_missed(
    kube: FakeKube, k8s: Cluster
) -> None:
    k8s.create(auth_policy("stays"))
    k8s.create(auth_policy("doomed"))
    async with running(kube) as h:
        assert h.host("doomed.test") == "default/doomed"
        kube.wait_for_watches(1)
        kube.stall_watches()  # the sidecar hears nothing from here on...
        k8s.delete("doomed")
        k8s.create(auth_policy("newcomer"))
        kube.compact()  # ...and the history it would need to catch up is gone
        kube.expire_watches()
        kube.release_watches()  # the stream resumes with ERROR 410, not the queued events
        await until(lambda: h.host("doomed.test") is None, what="missed deletion applied")
        await until(lambda: h.host("newcomer.test"), what="missed creation applied")
        assert h.host("stays.test") == "default/stays"
        assert h.counters.restarts[WATCH_EXPIRED] >= 1
        assert h.counters.lists == 2


async def test_dropped_connection_resumes_from_the_last_version(
    kube: FakeKube, k8s: Cluster
) -> None:
    async with running(kube) as h:
        kube.wait_for_watches(1)
        assert kube.drop_watches() == 1
        k8s.create(auth_policy("after-drop"))
        await until(lambda: h.host("after-drop.test"), what="create")
        assert h.counters.lists == 1  # no re-list: the watch resumed where it broke
        assert h.counters.outages == 0


async def test_a_stalled_watch_is_detected_and_restarted(kube: FakeKube, k8s: Cluster) -> None:
    async with running(kube) as h:
        kube.wait_for_watches(1)
        kube.stall_watches()  # no events, no bookmarks: a half-open connection
        k8s.create(auth_policy("behind-stall"))

        def enforced() -> tuple[int] | None:  # and how many stalls were detected by then
            seen = h.host("behind-stall.test")
            return (h.counters.restarts[WATCH_STALLED],) if seen else None

        (stalls,) = await until(enforced, what="enforced after the stall")
        assert stalls >= 1  # held back until the stall was detected
        assert h.counters.lists == 1


async def test_api_server_outage_keeps_serving_and_resyncs_after_restart(
    kube: FakeKube, k8s: Cluster
) -> None:
    k8s.create(auth_policy("survivor"))
    async with running(kube) as h:
        serial = h.current.serial
        kube.kill()
        await until(lambda: h.counters.in_outage, what="outage noticed")
        await until(
            lambda: h.counters.restarts[WATCH_UNAVAILABLE] >= 3, what="three failed reconnects"
        )
        assert h.host("survivor.test") == "default/survivor"
        assert h.current.serial == serial  # nothing was torn down
        kube.restart()  # same objects, empty watch history: the old version is now 410
        k8s.create(auth_policy("after-restart"))
        await until(lambda: h.host("after-restart.test"), what="change after restart")
        assert not h.counters.in_outage
        assert h.counters.outages == 1
        assert h.host("survivor.test") == "default/survivor"


async def test_first_list_waits_for_an_unreachable_api_server(kube: FakeKube, k8s: Cluster) -> None:
    k8s.create(auth_policy("early"))
    kube.kill()
    async with running(kube, wait=False) as h:
        first = asyncio.ensure_future(h.source.first_load())
        await until(
            lambda: h.counters.restarts[WATCH_UNAVAILABLE] >= 3, what="three failed attempts"
        )
        assert not first.done()  # not ready: nothing was ever listed
        kube.restart()
        assert await asyncio.wait_for(first, 10)
        assert h.host("early.test") == "default/early"


async def test_namespaces_and_label_selector_pick_what_is_served(
    kube: FakeKube, k8s: Cluster
) -> None:
    eu = {"shard": "eu"}
    k8s.create(auth_policy("in-a", namespace="a", labels=eu))
    k8s.create(auth_policy("in-b", namespace="b", labels=eu))
    k8s.create(auth_policy("other-shard", namespace="a", labels={"shard": "us"}))
    k8s.create(auth_policy("other-ns", namespace="c", labels=eu))
    settings = replace(FAST, namespaces=("a", "b"), selector="shard=eu")
    async with running(kube, settings) as h:
        assert {p.key for p in h.current.policies} == {"a/in-a", "b/in-b"}
        k8s.patch("in-a", {"metadata": {"labels": {"shard": "us"}}}, namespace="a")
        await until(lambda: h.host("in-a.test") is None, what="unlabelled policy dropped")
        assert kube.wait_for_watches(2)  # one watch per namespace


async def test_stop_aborts_open_watches_at_once(
    kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(FAST, stall_timeout=300.0, watch_timeout=3000.0)
    async with running(kube, settings) as h:
        kube.wait_for_watches(1)
        with caplog.at_level(logging.WARNING, logger="authz.controller.source"):
            await h.source.stop()
        # stop() gives the threads a few seconds: a watch blocked in its read (300 s here) would
        # still be alive, and say so. Aborted streams end at once.
        assert "did not stop" not in caplog.text
        kube.wait_for_watches(0)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    backoff.reset()
    assert backoff.next() <= 0.5


OTHER_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


async def test_a_missing_crd_is_named_and_retried(
    tmp_path: Path, start_kube: Callable[..., FakeKube], caplog: pytest.LogCaptureFixture
) -> None:
    crd = tmp_path / "other-crd.yaml"
    crd.write_text(OTHER_CRD)
    with start_kube(crds=[crd]) as kube:
        async with running(kube, wait=False) as h:
            await until(lambda: h.counters.restarts[WATCH_ERROR] >= 2, what="retries")
            assert not h.source.listed()
        assert "is the CRD installed? kubectl apply -f deploy/crds/" in caplog.text
