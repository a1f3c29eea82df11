"""Status on every AuthPolicy: Ready/reason/message/observedGeneration, written only on change."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client

from authz.controller.errors import (
    STATUS_ACCEPTED,
    STATUS_CONFLICTED,
    STATUS_HOST_NOT_ALLOWED,
    STATUS_INVALID,
)
from authz.controller.status import Desired, status_patch
from authz.jwt.providers import KeyRegistry
from authz.policy.ownership import grants_from
from authz.policy.store import SourceDocument
from authz.settings import JwksSettings
from tests.controller.harness import FAST, Cluster, running
from tests.support.fakekube import FakeKube
from tests.support.jwks_server import JwksServer, Route
from tests.support.keys import jwks, rsa_key
from tests.support.policies import auth_policy, issuer
from tests.support.wait import until

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 3, 9, 0, tzinfo=UTC)


def obj_with(condition: dict[str, Any] | None, *, generation: int = 1) -> dict[str, Any]:
    conditions = [{"type": "Other", "status": "True"}] + ([condition] if condition else [])
    status = {"observedGeneration": generation, "conditions": conditions}
    return {"metadata": {"resourceVersion": "7", "generation": generation}, "status": status}


def test_no_patch_when_the_status_already_says_it() -> None:
    desired = Desired("True", STATUS_ACCEPTED, "the policy is enforced", 1)
    first = status_patch(obj_with(None), desired, now=T0)
    assert first is not None
    ready = first["status"]["conditions"][-1]
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": STATUS_ACCEPTED,
        "message": "the policy is enforced",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "observedGeneration": 1,
    }
    assert first["status"]["conditions"][0] == {"type": "Other", "status": "True"}  # kept
    assert first["metadata"] == {"resourceVersion": "7"}  # the write is conditional
    assert status_patch(obj_with(ready), desired, now=T1) is None


def test_last_transition_time_moves_only_when_status_flips() -> None:
    invalid = Desired("False", STATUS_INVALID, "spec.rules: rule names must be unique", 2)
    was_invalid = status_patch(obj_with(None), invalid, now=T0)
    assert was_invalid is not None
    current = was_invalid["status"]["conditions"][-1]
    conflicted = Desired("False", STATUS_CONFLICTED, "host 'a' is already claimed", 2)
    still_false = status_patch(obj_with(current, generation=2), conflicted, now=T1)
    assert still_false is not None
    assert still_false["status"]["conditions"][-1]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    accepted = Desired("True", STATUS_ACCEPTED, "the policy is enforced", 3)
    flipped = status_patch(obj_with(current, generation=3), accepted, now=T1)
    assert flipped is not None
    assert flipped["status"]["conditions"][-1]["lastTransitionTime"] == "2026-01-02T03:09:00Z"
    assert flipped["status"]["observedGeneration"] == 3


async def test_accepted_policy_gets_status_once_and_no_write_loop(
    kube: FakeKube, k8s: Cluster
) -> None:
    k8s.create(auth_policy("calm"))
    async with running(kube) as h:
        await until(lambda: k8s.ready("calm"), what="status")
        ready = k8s.ready("calm")
        assert ready is not None
        assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
            "True",
            STATUS_ACCEPTED,
            1,
        )
        assert k8s.get("calm")["status"]["observedGeneration"] == 1
        # Our own write comes back as a MODIFIED event, and bookmarks and lease renewals keep
        # coming: none of it may cause another write. A policy created afterwards is a barrier:
        # the reconcile that writes its status has seen everything before it.
        bookmarks = h.counters.events["BOOKMARK"]
        await until(lambda: h.counters.events["BOOKMARK"] >= bookmarks + 3, what="bookmarks")
        k8s.create(auth_policy("barrier"))
        await until(lambda: k8s.ready("barrier"), what="the barrier's status")
        assert k8s.status_writes("calm") == 1
        assert h.counters.status_writes == {(STATUS_ACCEPTED, "ok"): 2}


async def test_invalid_update_keeps_the_old_version_serving_and_says_so(
    kube: FakeKube, k8s: Cluster
) -> None:
    k8s.create(auth_policy("shop"))
    async with running(kube) as h:
        await until(lambda: k8s.ready("shop"), what="accepted")
        first = k8s.ready("shop")
        assert first is not None
        # Passes the API server's structural schema (CEL is not evaluated there) but not ours.
        rules = [{"name": "same", "allowAnonymous": True}, {"name": "same"}]
        k8s.patch("shop", {"spec": {"hosts": ["shop.test", "new.test"], "rules": rules}})
        await until(lambda: (k8s.ready("shop") or {}).get("status") == "False", what="invalid")
        ready = k8s.ready("shop")
        assert ready is not None
        assert ready["reason"] == STATUS_INVALID
        assert ready["observedGeneration"] == 2
        assert "spec.rules: rule names must be unique" in ready["message"]
        assert "spec.issuers: issuers must list at least one issuer" in ready["message"]
        assert "the previous valid version keeps serving" in ready["message"]
        served = h.current.lookup("shop.test")
        assert served is not None
        assert served.generation == 1
        assert h.host("new.test") is None

        def events() -> list[Any]:
            found = client.CoreV1Api(k8s.api_client).list_namespaced_event(
                "default", field_selector="involvedObject.name=shop"
            )
            return list(found.items)

        await until(events, what="an event")  # recorded right after the status write
        assert [(e.type, e.reason) for e in events()] == [("Warning", STATUS_INVALID)]
        assert "rule names must be unique" in (events()[0].message or "")

        k8s.patch("shop", {"spec": {"rules": [{"name": "same", "allowAnonymous": True}]}})
        await until(lambda: (k8s.ready("shop") or {}).get("status") == "True", what="fixed")
        fixed = k8s.ready("shop")
        assert fixed is not None
        assert fixed["observedGeneration"] == 3
        assert h.host("new.test") == "default/shop"
        assert k8s.status_writes("shop") == 3


async def test_host_conflict_reports_the_newer_policy_until_the_older_goes(
    kube: FakeKube, k8s: Cluster
) -> None:
    k8s.create(auth_policy("older", hosts=["shared.test"]))
    kube.advance_clock(2)  # creationTimestamp has one-second resolution
    k8s.create(auth_policy("newer", hosts=["shared.test", "own.test"]))
    async with running(kube) as h:
        await until(lambda: k8s.ready("newer"), what="status")
        ready = k8s.ready("newer")
        assert ready is not None
        assert (ready["status"], ready["reason"]) == ("False", STATUS_CONFLICTED)
        assert (
            ready["message"]
            == "host 'shared.test' is already claimed by the older policy default/older"
        )
        assert h.host("shared.test") == "default/older"
        assert h.host("own.test") is None  # a conflicted policy is not served at all
        k8s.delete("older")
        await until(lambda: (k8s.ready("newer") or {}).get("status") == "True", what="takeover")
        assert h.host("shared.test") == "default/newer"


async def test_a_host_outside_the_namespaces_grants_is_host_not_allowed(
    kube: FakeKube, k8s: Cluster
) -> None:
    # The older claim would win a conflict; without a grant it cannot take the host at all.
    k8s.create(auth_policy("takeover", namespace="evil", hosts=["orders.test", "evil.test"]))
    kube.advance_clock(2)
    k8s.create(auth_policy("orders", hosts=["orders.test", "api.shop.test"]))
    origin = "--allowed-hosts /etc/authz/allowed-hosts/hosts.yaml"
    grants = grants_from({"default": ["orders.test", "*.shop.test"]}, origin=origin)
    async with running(kube, grants=grants) as h:
        await until(lambda: k8s.ready("takeover", namespace="evil"), what="status")
        refused = k8s.ready("takeover", namespace="evil")
        assert refused is not None
        assert (refused["status"], refused["reason"]) == ("False", STATUS_HOST_NOT_ALLOWED)
        assert "host 'orders.test' is not granted to namespace 'evil'" in refused["message"]
        assert "host 'evil.test' is not granted to namespace 'evil'" in refused["message"]
        assert origin in refused["message"]
        assert h.host("evil.test") is None  # no part of a refused policy is served
        await until(lambda: k8s.ready("orders"), what="status")
        assert (k8s.ready("orders") or {}).get("reason") == STATUS_ACCEPTED
        assert h.host("orders.test") == "default/orders"
        # Grants revoked while serving: the status follows without any change to the policy.
        await asyncio.to_thread(
            h.store.set_grants, grants_from({"default": ["*.shop.test"]}, origin=origin)
        )
        await until(
            lambda: (k8s.ready("orders") or {}).get("reason") == STATUS_HOST_NOT_ALLOWED,
            what="revoked",
        )
        assert "host 'orders.test' is not granted" in (k8s.ready("orders") or {})["message"]
        assert h.host("orders.test") is None

        def events() -> list[Any]:
            found = client.CoreV1Api(k8s.api_client).list_namespaced_event(
                "evil", field_selector="involvedObject.name=takeover"
            )
            return list(found.items)

        await until(events, what="an event")
        assert [(e.type, e.reason) for e in events()] == [("Warning", STATUS_HOST_NOT_ALLOWED)]


async def test_a_cluster_policy_may_not_reuse_a_file_policys_name(
    kube: FakeKube, k8s: Cluster
) -> None:
    k8s.create(auth_policy("twin"))
    async with running(kube) as h:
        file_doc = auth_policy("twin", hosts=["from-file.test"])
        await asyncio.to_thread(
            h.store.update, "files", [SourceDocument("file:/etc/authz/twin.yaml:0", file_doc)]
        )
        await until(lambda: (k8s.ready("twin") or {}).get("status") == "False", what="status")
        ready = k8s.ready("twin")
        assert ready is not None
        assert ready["reason"] == STATUS_INVALID
        assert "already defined at file:/etc/authz/twin.yaml:0" in ready["message"]
        assert h.host("from-file.test") == "default/twin"


async def test_status_someone_else_overwrote_is_repaired(kube: FakeKube, k8s: Cluster) -> None:
    k8s.create(auth_policy("tampered"))
    async with running(kube):
        await until(lambda: k8s.ready("tampered"), what="status")
        wrong = {"type": "Ready", "status": "False", "reason": "Bogus", "message": "x"}
        wrong["lastTransitionTime"] = "2020-01-01T00:00:00Z"
        k8s.api.patch_namespaced_custom_object_status(
            "authz.dev",
            "v1alpha1",
            "default",
            "authpolicies",
            "tampered",
            {"status": {"conditions": [wrong]}},
        )
        await until(
            lambda: (k8s.ready("tampered") or {}).get("reason") == STATUS_ACCEPTED, what="repair"
        )


async def test_issuer_unavailable_until_the_keys_arrive(
    kube: FakeKube, k8s: Cluster, tmp_path: Path
) -> None:
    jwks_server = JwksServer.start(tmp_path / "jwks.log")
    try:
        url = await jwks_server.route("/jwks.json", Route(status=503, body="down"))
        idp = issuer(jwks_uri=url, name="https://idp.test")
        k8s.create(auth_policy("keys", issuers=[idp], rules=[{"name": "token"}]))
        async with aiohttp.ClientSession() as session:
            settings = JwksSettings(retry_initial=0.2, fetch_timeout=2.0)
            registry = KeyRegistry(settings=settings, session=session)
            try:
                async with running(kube, bind=registry.provider) as h:
                    await until(lambda: k8s.ready("keys"), what="status")
                    ready = k8s.ready("keys")
                    assert ready is not None
                    assert (ready["status"], ready["reason"]) == ("False", "IssuerUnavailable")
                    assert ready["message"].startswith(
                        f"spec.issuers[0]: keys of https://idp.test not fetched yet from {url}"
                    )
                    assert "HTTP 503" in ready["message"]
                    assert h.host("keys.test") == "default/keys"  # enforced meanwhile (503s)
                    body = json.dumps(jwks(rsa_key()))
                    await jwks_server.route("/jwks.json", Route(body=body))
                    await until(
                        lambda: (k8s.ready("keys") or {}).get("reason") == STATUS_ACCEPTED,
                        what="accepted once keys arrived",
                    )
                    assert k8s.status_writes("keys") == 2
            finally:
                await registry.close()
    finally:
        jwks_server.stop()


async def test_a_first_key_fetch_in_progress_does_not_flicker_the_status(
    kube: FakeKube, k8s: Cluster, tmp_path: Path
) -> None:
    jwks_server = JwksServer.start(tmp_path / "jwks.log")
    try:
        slow = Route(body=json.dumps(jwks(rsa_key())), delay=1.5)
        url = await jwks_server.route("/jwks.json", slow)
        idp = issuer(jwks_uri=url, name="https://idp.test")
        k8s.create(auth_policy("slow-keys", issuers=[idp], rules=[{"name": "token"}]))
        async with aiohttp.ClientSession() as session:
            registry = KeyRegistry(settings=JwksSettings(fetch_timeout=5.0), session=session)
            try:
                async with running(kube, bind=registry.provider):
                    await until(lambda: k8s.ready("slow-keys"), what="status")
                    ready = k8s.ready("slow-keys")
                    assert ready is not None
                    assert ready["reason"] == STATUS_ACCEPTED  # not IssuerUnavailable first
                    assert k8s.status_writes("slow-keys") == 1  # and nothing before it
            finally:
                await registry.close()
    finally:
        jwks_server.stop()


async def test_only_the_leader_writes_status(kube: FakeKube, k8s: Cluster) -> None:
    async with (
        running(kube, replace(FAST, identity="replica-a")) as a,
        running(kube, replace(FAST, identity="replica-b")) as b,
    ):
        await until(
            lambda: a.source.elector.is_leader() or b.source.elector.is_leader(), what="a leader"
        )
        leader, follower = (a, b) if a.source.elector.is_leader() else (b, a)
        for index in range(5):
            k8s.create(auth_policy(f"p{index}"))
        for index in range(5):
            await until(partial(k8s.ready, f"p{index}"), what=f"p{index} status")
        # Both enforce; a policy created afterwards is a barrier both replicas have published.
        k8s.create(auth_policy("barrier"))
        await until(lambda: a.host("barrier.test") and b.host("barrier.test"), what="barrier")
        await until(lambda: k8s.ready("barrier"), what="the barrier's status")
        assert [k8s.status_writes(f"p{i}") for i in range(5)] == [1] * 5
        assert leader.counters.status_writes == {(STATUS_ACCEPTED, "ok"): 6}
        assert follower.counters.status_writes == {}
        assert leader.source.elector.is_leader()
        assert not follower.source.elector.is_leader()
