"""Tests of the fake API server, through the real ``kubernetes`` client over real HTTP.

They pin what controller tests will rely on: resourceVersion and generation rules, the status
subresource, watch streams (events, bookmarks, 410, drops, stalls), restarts, faults and the request
log. Where the client's behaviour is the point (what a 410 or a dropped stream looks like to it),
the assertion is on what the client really raises.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client import ApiException

from tests.support.fakekube import TOKEN, FakeKube, FakeKubeError
from tests.support.fakekube.streams import StreamEnded, WatchThread
from tests.support.policies import auth_policy

GROUP, VERSION, PLURAL, NS = "authz.dev", "v1alpha1", "authpolicies", "default"
CR = (GROUP, VERSION, NS, PLURAL)
POLICIES_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
JSON_PATCH = "application/json-patch+json"


def policy(name: str, *, labels: dict[str, str] | None = None) -> Any:
    return auth_policy(name, namespace=None, hosts=["a.example.com"], labels=labels)


def ready(generation: int, reason: str = "Compiled") -> dict[str, Any]:
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": reason,
        "message": "ok",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    return {"observedGeneration": generation, "conditions": [condition]}


def as_dict(value: object) -> dict[str, Any]:
    assert isinstance(value, dict)
    return value


def body_of(err: ApiException) -> dict[str, Any]:
    assert err.body is not None
    return as_dict(json.loads(err.body))


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def raw_get(kube: FakeKube, path: str) -> str:
    """GET without the client, to see the bytes on the wire; asserts HTTP 200."""
    request = urllib.request.Request(kube.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200
        return str(resp.read().decode())


@pytest.fixture
def kube(start_kube: Callable[..., FakeKube]) -> FakeKube:
    return start_kube(bookmark_interval=0.2)


@pytest.fixture
def api_client(kube: FakeKube) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def api(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def create(api: client.CustomObjectsApi, name: str, **kwargs: Any) -> dict[str, Any]:
    return as_dict(api.create_namespaced_custom_object(*CR, policy(name, **kwargs)))


def get(api: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    return as_dict(api.get_namespaced_custom_object(*CR, name))


def watch_policies(api: client.CustomObjectsApi, **kwargs: Any) -> WatchThread:
    return WatchThread(api.list_namespaced_custom_object, *CR, **kwargs).start()


def test_create_get_list_patch_delete(api: client.CustomObjectsApi) -> None:
    created = create(api, "one")
    meta = created["metadata"]
    assert meta["generation"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["uid"]
    assert meta["namespace"] == NS
    assert get(api, "one") == created

    with pytest.raises(ApiException) as exc:
        create(api, "one")
    assert exc.value.status == 409
    assert body_of(exc.value)["reason"] == "AlreadyExists"

    create(api, "two")
    elsewhere = policy("one")
    elsewhere["metadata"]["namespace"] = "other"
    api.create_namespaced_custom_object(GROUP, VERSION, "other", PLURAL, elsewhere)
    everywhere = as_dict(api.list_cluster_custom_object(GROUP, VERSION, PLURAL))
    assert [i["metadata"]["namespace"] for i in everywhere["items"]] == [NS, NS, "other"]
    listed = as_dict(api.list_namespaced_custom_object(*CR))
    assert listed["kind"] == "AuthPolicyList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["one", "two"]
    assert int(listed["metadata"]["resourceVersion"]) == rv(created) + 2

    patched = as_dict(
        api.patch_namespaced_custom_object(*CR, "one", {"spec": {"hosts": ["b.example.com"]}})
    )
    assert patched["spec"]["hosts"] == ["b.example.com"]
    assert rv(patched) > int(listed["metadata"]["resourceVersion"])

    deleted = as_dict(api.delete_namespaced_custom_object(*CR, "one"))
    assert deleted["status"] == "Success"
    assert deleted["details"] == {"name": "one", "group": GROUP, "kind": PLURAL, "uid": meta["uid"]}
    with pytest.raises(ApiException) as exc:
        get(api, "one")
    assert exc.value.status == 404
    assert body_of(exc.value)["message"] == 'authpolicies.authz.dev "one" not found'


def test_generation_moves_only_with_spec_and_noop_writes_change_nothing(
    api: client.CustomObjectsApi,
) -> None:
    first = create(api, "gen")
    labelled = as_dict(
        api.patch_namespaced_custom_object(*CR, "gen", {"metadata": {"labels": {"x": "y"}}})
    )
    assert (labelled["metadata"]["generation"], rv(labelled) > rv(first)) == (1, True)

    status = as_dict(api.patch_namespaced_custom_object_status(*CR, "gen", {"status": ready(1)}))
    assert status["metadata"]["generation"] == 1

    noop = as_dict(
        api.patch_namespaced_custom_object(*CR, "gen", {"metadata": {"labels": {"x": "y"}}})
    )
    assert rv(noop) == rv(status)

    spec = as_dict(
        api.patch_namespaced_custom_object(*CR, "gen", {"spec": {"hosts": ["c.example.com"]}})
    )
    assert spec["metadata"]["generation"] == 2
    assert spec["status"] == ready(1)


def test_status_subresource_writes(api: client.CustomObjectsApi) -> None:
    create(api, "st")
    merged = as_dict(api.patch_namespaced_custom_object_status(*CR, "st", {"status": ready(1)}))
    assert merged["status"]["conditions"][0]["reason"] == "Compiled"

    ops = [{"op": "replace", "path": "/status/conditions/0/reason", "value": "Conflicted"}]
    patched = as_dict(
        api.patch_namespaced_custom_object_status(*CR, "st", ops, _content_type=JSON_PATCH)
    )
    assert patched["status"]["conditions"][0]["reason"] == "Conflicted"

    # /status ignores everything but status; the main resource ignores status.
    sneaky = dict(patched, spec={"hosts": ["evil.example.com"], "rules": patched["spec"]["rules"]})
    replaced = as_dict(api.replace_namespaced_custom_object_status(*CR, "st", sneaky))
    assert replaced["spec"]["hosts"] == ["a.example.com"]
    assert rv(replaced) == rv(patched)  # nothing changed, so nothing was written
    main = as_dict(api.patch_namespaced_custom_object(*CR, "st", {"status": ready(7, "X")}))
    assert main["status"] == patched["status"]

    stale = dict(patched, status=ready(2))
    stale["metadata"] = dict(patched["metadata"], resourceVersion=str(rv(patched) - 1))
    with pytest.raises(ApiException) as exc:
        api.replace_namespaced_custom_object_status(*CR, "st", stale)
    assert (exc.value.status, body_of(exc.value)["reason"]) == (409, "Conflict")


def test_replace_needs_current_resource_version(api: client.CustomObjectsApi) -> None:
    obj = create(api, "put")
    obj["spec"]["hosts"] = ["d.example.com"]
    updated = as_dict(api.replace_namespaced_custom_object(*CR, "put", obj))
    assert updated["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as exc:
        api.replace_namespaced_custom_object(*CR, "put", obj)  # obj still has the old rv
    assert exc.value.status == 409
    del obj["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        api.replace_namespaced_custom_object(*CR, "put", obj)
    assert exc.value.status == 422


def test_schema_validation_pruning_and_patch_types(api: client.CustomObjectsApi) -> None:
    bad = policy("bad")
    bad["spec"] = {"hosts": [], "rules": [{"name": "r", "match": {"methods": ["FETCH"]}}]}
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object(*CR, bad)
    status = body_of(exc.value)
    assert (exc.value.status, status["reason"]) == (422, "Invalid")
    fields = sorted(c["field"] for c in status["details"]["causes"])
    assert fields == ["spec.hosts", "spec.rules[0].match.methods[0]"]

    extra = policy("extra")
    extra["spec"]["rules"][0]["unknown"] = True
    created = as_dict(api.create_namespaced_custom_object(*CR, extra))
    assert created["spec"]["rules"][0] == {"name": "open", "allowAnonymous": True}
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object(*CR, extra, field_validation="Strict")
    assert exc.value.status == 400

    with pytest.raises(ApiException) as exc:
        api.patch_namespaced_custom_object(
            *CR, "extra", {"spec": {}}, _content_type="application/strategic-merge-patch+json"
        )
    assert exc.value.status == 415


def test_watch_events_and_bookmarks(api: client.CustomObjectsApi) -> None:
    start = as_dict(api.list_namespaced_custom_object(*CR))["metadata"]["resourceVersion"]
    watch = watch_policies(api, resource_version=start, allow_watch_bookmarks=True)
    try:
        created = create(api, "w")
        added = watch.next_of("ADDED", "MODIFIED", "DELETED")
        assert (added["type"], added["raw_object"]) == ("ADDED", created)
        api.patch_namespaced_custom_object_status(*CR, "w", {"status": ready(1)})
        modified = watch.next_of("ADDED", "MODIFIED", "DELETED")
        assert modified["type"] == "MODIFIED"
        assert modified["raw_object"]["status"] == ready(1)
        api.delete_namespaced_custom_object(*CR, "w")
        deleted = watch.next_of("ADDED", "MODIFIED", "DELETED")
        assert deleted["type"] == "DELETED"
        assert rv(deleted["raw_object"]) == rv(modified["raw_object"]) + 1
        bookmark = watch.next_of("BOOKMARK")
        assert bookmark["raw_object"] == {
            "kind": "AuthPolicy",
            "apiVersion": f"{GROUP}/{VERSION}",
            "metadata": {"resourceVersion": str(rv(deleted["raw_object"]))},
        }
    finally:
        watch.stop()


def test_watch_without_resource_version_starts_with_current_objects(
    api: client.CustomObjectsApi,
) -> None:
    create(api, "existing")
    watch = watch_policies(api, timeout_seconds=1)
    first = watch.next()
    assert (first["type"], first["raw_object"]["metadata"]["name"]) == ("ADDED", "existing")
    with pytest.raises(StreamEnded):  # timeoutSeconds ends the stream cleanly
        watch.next(timeout=5)


def test_watch_from_compacted_version_is_410(kube: FakeKube, api: client.CustomObjectsApi) -> None:
    old = rv(create(api, "c1"))
    create(api, "c2")
    kube.compact()
    # On the wire: HTTP 200, then one ERROR event holding a 410 Expired Status, then the end.
    lines = raw_get(kube, f"{POLICIES_PATH}?watch=true&resourceVersion={old}").splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert event["object"]["message"] == f"too old resource version: {old} ({old + 1})"
    # The client turns it into ApiException(410) (after one retry when no timeout is set).
    watch = watch_policies(api, resource_version=str(old))
    with pytest.raises(ApiException) as exc:
        watch.next()
    assert exc.value.status == 410


def test_bounded_history_expires_old_versions(start_kube: Callable[..., FakeKube]) -> None:
    with start_kube(history_limit=2) as kube:
        api_client = kube.api_client()
        try:
            api = client.CustomObjectsApi(api_client)
            first = rv(create(api, "h1"))
            for name in ("h2", "h3", "h4"):
                create(api, name)
            with pytest.raises(ApiException) as exc:
                watch_policies(api, resource_version=str(first), timeout_seconds=2).next()
            assert exc.value.status == 410
            # The two newest changes (h3, h4) are still there for a watch from h2's revision.
            replay = watch_policies(api, resource_version=str(first + 1), timeout_seconds=1)
            names = [replay.next()["raw_object"]["metadata"]["name"] for _ in range(2)]
            assert names == ["h3", "h4"]
        finally:
            api_client.close()  # type: ignore[no-untyped-call]


def test_expire_open_watches(kube: FakeKube, api: client.CustomObjectsApi) -> None:
    watch = watch_policies(api, resource_version="0", timeout_seconds=30)
    kube.wait_for_watches(1)
    assert kube.expire_watches() == 1
    with pytest.raises(ApiException) as exc:
        watch.next()
    assert exc.value.status == 410


def test_label_selectors_in_list_and_watch(api: client.CustomObjectsApi) -> None:
    create(api, "prod-a", labels={"env": "prod", "tier": "web"})
    create(api, "prod-b", labels={"env": "prod"})
    create(api, "dev", labels={"env": "dev", "tier": "web"})

    def names(selector: str) -> list[str]:
        listed = as_dict(api.list_namespaced_custom_object(*CR, label_selector=selector))
        return [i["metadata"]["name"] for i in listed["items"]]

    assert names("env=prod") == ["prod-a", "prod-b"]
    assert names("env==prod,tier") == ["prod-a"]
    assert names("env!=prod") == ["dev"]
    assert names("!tier") == ["prod-b"]
    assert names("env in (dev, qa)") == ["dev"]
    assert names("tier notin (web)") == ["prod-b"]
    with pytest.raises(ApiException) as exc:
        names("env in (prod")
    assert exc.value.status == 400
    fields = api.list_namespaced_custom_object(*CR, field_selector="metadata.name=dev")
    assert [i["metadata"]["name"] for i in as_dict(fields)["items"]] == ["dev"]

    watch = watch_policies(api, label_selector="env=prod", resource_version="0")
    try:
        assert {watch.next()["raw_object"]["metadata"]["name"] for _ in range(2)} == {
            "prod-a",
            "prod-b",
        }
        api.patch_namespaced_custom_object(*CR, "dev", {"metadata": {"labels": {"x": "1"}}})
        api.patch_namespaced_custom_object(*CR, "prod-b", {"metadata": {"labels": {"env": "qa"}}})
        left = watch.next_of("ADDED", "MODIFIED", "DELETED")
        assert (left["type"], left["raw_object"]["metadata"]["name"]) == ("DELETED", "prod-b")
        # The watch cache sends the last state that matched, at the revision of the change.
        assert left["raw_object"]["metadata"]["labels"] == {"env": "prod"}
        assert rv(left["raw_object"]) == rv(get(api, "prod-b"))
    finally:
        watch.stop()


def test_paging_with_limit_and_continue(kube: FakeKube, api: client.CustomObjectsApi) -> None:
    for name in ("p1", "p2", "p3"):
        create(api, name)
    page = as_dict(api.list_namespaced_custom_object(*CR, limit=2))
    assert [i["metadata"]["name"] for i in page["items"]] == ["p1", "p2"]
    assert page["metadata"]["remainingItemCount"] == 1
    create(api, "p4")  # not in the snapshot the pages come from
    token = page["metadata"]["continue"]
    rest = as_dict(api.list_namespaced_custom_object(*CR, limit=2, _continue=token))
    assert [i["metadata"]["name"] for i in rest["items"]] == ["p3"]
    assert "continue" not in rest["metadata"]
    assert rest["metadata"]["resourceVersion"] == page["metadata"]["resourceVersion"]
    kube.compact()
    with pytest.raises(ApiException) as exc:
        api.list_namespaced_custom_object(*CR, limit=2, _continue=token)
    assert exc.value.status == 410


def test_dropped_watch_breaks_the_stream(kube: FakeKube, api: client.CustomObjectsApi) -> None:
    watch = watch_policies(api, resource_version="0", _request_timeout=10)
    kube.wait_for_watches(1)
    assert kube.drop_watches() == 1
    with pytest.raises(urllib3.exceptions.ProtocolError):
        watch.next()


def test_stalled_watch_is_silent_until_released(
    kube: FakeKube, api: client.CustomObjectsApi
) -> None:
    watch = watch_policies(api, resource_version="0", allow_watch_bookmarks=True)
    try:
        kube.wait_for_watches(1)
        assert kube.stall_watches() == 1
        watch.quiet_for(0.3)  # let a bookmark already on its way arrive
        create(api, "during-stall")
        assert watch.quiet_for(0.8, ignore=())  # not even bookmarks
        assert kube.release_watches() == 1
        event = watch.next_of("ADDED")
        assert event["raw_object"]["metadata"]["name"] == "during-stall"
    finally:
        watch.stop()
    # A client read timeout is how a stalled stream surfaces.
    kube.wait_for_watches(0)
    now = str(kube.resource_version())
    stalled = watch_policies(api, resource_version=now, _request_timeout=(2, 0.5))
    kube.wait_for_watches(1)
    kube.stall_watches()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        stalled.next()


@pytest.mark.parametrize("kill", [False, True])
def test_restart_keeps_objects_and_resource_version(
    kube: FakeKube, api: client.CustomObjectsApi, kill: bool
) -> None:
    create(api, "first")
    create(api, "durable")
    # Every kind of write survives: a spec change, a status write and a deletion.
    api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "durable", {"metadata": {"labels": {"tier": "gold"}}}
    )
    changed = api.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "durable", {"status": ready(1)}
    )
    api.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "first")
    before = kube.resource_version()
    port = kube.port
    kube.restart(kill=kill)
    assert kube.port == port
    assert get(api, "durable") == changed
    assert [
        i["metadata"]["name"]
        for i in as_dict(api.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL))["items"]
    ] == ["durable"]
    assert kube.resource_version() == before
    later = create(api, "after")
    assert rv(later) == before + 1
    # The watch history did not survive: only the current revision can be watched from.
    with pytest.raises(ApiException) as exc:
        watch_policies(api, resource_version=str(before - 1), timeout_seconds=2).next()
    assert exc.value.status == 410


def test_restart_breaks_open_watches(kube: FakeKube, api: client.CustomObjectsApi) -> None:
    watch = watch_policies(api, resource_version="0", _request_timeout=10)
    kube.wait_for_watches(1)
    kube.kill()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        watch.next()
    watch.stop()
    kube.restart()
    assert as_dict(api.list_namespaced_custom_object(*CR))["items"] == []


def test_the_clock_moves_forward_on_request(kube: FakeKube, api: client.CustomObjectsApi) -> None:
    before = datetime.fromisoformat(create(api, "early")["metadata"]["creationTimestamp"])
    kube.advance_clock(3600)
    after = datetime.fromisoformat(create(api, "late")["metadata"]["creationTimestamp"])
    assert after - before >= timedelta(hours=1)
    with pytest.raises(FakeKubeError, match="400"):
        kube.advance_clock(-1)


def test_request_log_counts_status_writes(kube: FakeKube, api: client.CustomObjectsApi) -> None:
    create(api, "logged")
    kube.reset_requests()
    api.patch_namespaced_custom_object_status(*CR, "logged", {"status": ready(1)})
    api.patch_namespaced_custom_object_status(*CR, "logged", {"status": ready(1, "Again")})
    get(api, "logged")
    writes = kube.requests(method="PATCH", path=f"{POLICIES_PATH}/logged/status")
    assert len(writes) == 2
    assert writes[0].content_type == "application/merge-patch+json"
    assert [w.status for w in writes] == [200, 200]
    assert len(kube.requests()) == 3


def test_injected_faults(kube: FakeKube, api: client.CustomObjectsApi) -> None:
    kube.fail_requests(503, count=2)
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            api.list_namespaced_custom_object(*CR)
        assert (exc.value.status, body_of(exc.value)["reason"]) == (503, "ServiceUnavailable")
    api.list_namespaced_custom_object(*CR)

    kube.fail_requests(500, methods=["PATCH"], path_pattern=r"/status$")
    create(api, "f")
    with pytest.raises(ApiException) as exc:
        api.patch_namespaced_custom_object_status(*CR, "f", {"status": ready(1)})
    assert (exc.value.status, body_of(exc.value)["reason"]) == (500, "InternalError")
    kube.clear_faults()
    api.patch_namespaced_custom_object_status(*CR, "f", {"status": ready(1)})


def test_finalizers_hold_deletion(api: client.CustomObjectsApi) -> None:
    obj = policy("fin")
    obj["metadata"]["finalizers"] = ["authz.dev/cleanup"]
    api.create_namespaced_custom_object(*CR, obj)
    pending = as_dict(api.delete_namespaced_custom_object(*CR, "fin"))
    assert "deletionTimestamp" in pending["metadata"]
    assert get(api, "fin")["metadata"]["generation"] == 2
    ops = [{"op": "remove", "path": "/metadata/finalizers"}]
    api.patch_namespaced_custom_object(*CR, "fin", ops, _content_type=JSON_PATCH)
    with pytest.raises(ApiException) as exc:
        get(api, "fin")
    assert exc.value.status == 404


def holder(lease: client.V1Lease) -> str | None:
    assert lease.spec is not None
    return lease.spec.holder_identity


def test_leases(kube: FakeKube, api_client: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api_client)
    renewed = datetime(2025, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    spec = client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15, renew_time=renewed)
    body = client.V1Lease(metadata=client.V1ObjectMeta(name="leader"), spec=spec)
    created = leases.create_namespaced_lease(NS, body)
    assert holder(created) == "a"
    raw = json.loads(raw_get(kube, f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/leader"))
    assert raw["spec"]["renewTime"] == "2025-01-02T03:04:05.600000Z"  # MicroTime, re-encoded
    assert created.metadata is not None
    assert created.metadata.generation is None  # the Lease strategy does not track generation
    stale_rv = created.metadata.resource_version
    spec.holder_identity = "b"
    created.spec = spec
    assert holder(leases.replace_namespaced_lease("leader", NS, created)) == "b"
    spec.holder_identity = "c"
    created.metadata.resource_version = stale_rv
    with pytest.raises(ApiException) as exc:
        leases.replace_namespaced_lease("leader", NS, created)
    assert (exc.value.status, body_of(exc.value)["reason"]) == (409, "Conflict")
    patched = leases.patch_namespaced_lease("leader", NS, {"spec": {"holderIdentity": "d"}})
    assert holder(patched) == "d"
    assert holder(leases.read_namespaced_lease("leader", NS)) == "d"


def test_events_core_and_events_v1(api_client: client.ApiClient) -> None:
    ref = client.V1ObjectReference(kind="AuthPolicy", name="p", namespace=NS)
    core = client.CoreV1Api(api_client)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="p.1"), involved_object=ref, reason="Compiled", count=1
    )
    created = core.create_namespaced_event(NS, event)
    assert created.reason == "Compiled"
    bumped = core.patch_namespaced_event("p.1", NS, {"count": 2})
    assert bumped.count == 2
    listed = core.list_namespaced_event(NS, field_selector="involvedObject.name=p")
    assert [e.metadata.name for e in listed.items if e.metadata] == ["p.1"]

    events = client.EventsV1Api(api_client)
    new = client.EventsV1Event(
        metadata=client.V1ObjectMeta(name="p.2"),
        event_time=datetime.now(UTC),
        reason="Compiled",
        action="Compile",
        reporting_controller="authz.dev/sidecar",
        reporting_instance="pod-1",
        regarding=ref,
    )
    assert events.create_namespaced_event(NS, new).reason == "Compiled"


def test_auth_and_discovery(kube: FakeKube, api_client: client.ApiClient) -> None:
    groups = client.ApisApi(api_client).get_api_versions()
    assert GROUP in [g.name for g in groups.groups]
    resources = client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION)
    assert {r.name for r in resources.resources} == {PLURAL, f"{PLURAL}/status"}
    anonymous = client.Configuration(host=kube.url)
    with client.ApiClient(anonymous) as no_token, pytest.raises(ApiException) as exc:
        client.CustomObjectsApi(no_token).list_namespaced_custom_object(*CR)
    assert (exc.value.status, body_of(exc.value)["reason"]) == (401, "Unauthorized")


def test_start_failure_reports_stderr(tmp_path: Path, start_kube: Callable[..., FakeKube]) -> None:
    with pytest.raises(FakeKubeError, match="No such file"):
        start_kube(crds=[tmp_path / "missing.yaml"], startup_timeout=10)
