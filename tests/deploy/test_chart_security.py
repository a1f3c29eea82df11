"""Least privilege and pod hardening: RBAC, security contexts, resources, probes, the shared
socket and the order in which the pod stops.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy import scenarios
from tests.deploy.chart import FULLNAME, NAMESPACE, REPO_ROOT, Obj, Rendered, flag, render

POLICY_RULES = [
    {"apiGroups": ["authz.dev"], "resources": ["authpolicies"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["authz.dev"],
        "resources": ["authpolicies/status"],
        "verbs": ["get", "update", "patch"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
LEASE_RULES = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update"],
    }
]


def _all_containers(rendered: Rendered) -> list[Obj]:
    spec = rendered.pod_spec
    test_pod = rendered.one("Pod", f"{FULLNAME}-test")
    return [*spec.get("initContainers", []), *spec["containers"], *test_pod["spec"]["containers"]]


def _binding_subjects(binding: Obj) -> list[Obj]:
    subjects: list[Obj] = binding["subjects"]
    return subjects


def test_cluster_wide_watch_gets_exactly_the_policy_rules() -> None:
    rendered = render()
    role = rendered.one("ClusterRole")
    assert role["rules"] == POLICY_RULES
    binding = rendered.one("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert _binding_subjects(binding) == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]


def test_leases_only_in_the_release_namespace() -> None:
    rendered = render()
    lease_role = rendered.one("Role", f"{FULLNAME}-leader-election")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert lease_role["rules"] == LEASE_RULES
    binding = rendered.one("RoleBinding", f"{FULLNAME}-leader-election")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == f"{FULLNAME}-leader-election"


def test_listed_namespaces_get_a_role_each_and_no_cluster_role() -> None:
    rendered = render(scenarios.SIDECAR["watch-namespaces"])
    assert not {"ClusterRole", "ClusterRoleBinding"} & rendered.kinds()
    roles = {
        r["metadata"]["namespace"]: r
        for r in rendered.all("Role")
        if r["metadata"]["name"] == FULLNAME
    }
    assert set(roles) == {"team-a", "team-b"}
    for role in roles.values():
        assert role["rules"] == POLICY_RULES
    bindings = [b for b in rendered.all("RoleBinding") if b["metadata"]["name"] == FULLNAME]
    assert {b["metadata"]["namespace"] for b in bindings} == {"team-a", "team-b"}
    for binding in bindings:
        assert _binding_subjects(binding) == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]


@pytest.mark.parametrize("scenario", scenarios.ALL)
def test_no_wildcards_no_secrets_no_spec_writes(scenario: str) -> None:
    rendered = render(scenarios.ALL[scenario])
    for role in [*rendered.all("Role"), *rendered.all("ClusterRole")]:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
            assert "secrets" not in rule["resources"]
            assert "nonResourceURLs" not in rule
            if "authpolicies" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_existing_service_account_is_bound_not_created() -> None:
    rendered = render(scenarios.SIDECAR["existing-serviceaccount"])
    assert "ServiceAccount" not in rendered.kinds()
    assert rendered.pod_spec["serviceAccountName"] == "edge-gateway"
    assert _binding_subjects(rendered.one("ClusterRoleBinding"))[0]["name"] == "edge-gateway"


def test_service_account_token_is_mounted_only_for_the_api_watch() -> None:
    rendered = render()
    assert rendered.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert rendered.pod_spec["automountServiceAccountToken"] is True
    test_pod = rendered.one("Pod", f"{FULLNAME}-test")
    assert test_pod["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("scenario", scenarios.ALL)
def test_pods_and_containers_are_locked_down(scenario: str) -> None:
    rendered = render(scenarios.ALL[scenario])
    test_pod = rendered.one("Pod", f"{FULLNAME}-test")
    for pod_spec in (rendered.pod_spec, test_pod["spec"]):
        context = pod_spec["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] > 0
        assert context["runAsGroup"] > 0
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in _all_containers(rendered):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        # The pod's user applies to every container: the socket's owner is Envoy's user too.
        assert "runAsUser" not in context
        assert "runAsGroup" not in context


@pytest.mark.parametrize("scenario", scenarios.ALL)
def test_every_container_has_requests_and_limits(scenario: str) -> None:
    for container in _all_containers(render(scenarios.ALL[scenario])):
        resources = container["resources"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[bound]), (container["name"], bound)


def test_image_user_is_the_pod_user() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", dockerfile, flags=re.MULTILINE)
    assert len(users) == 1
    context = render().pod_spec["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == users[0]


def _port_number(container: Obj, name_or_number: str | int) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(ports[name_or_number])


@pytest.mark.parametrize("mode", ["sidecar", "standalone"])
def test_authz_probes(mode: str) -> None:
    authz = render({"mode": mode}).container("authz")
    expected = {
        "startupProbe": "/healthz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
    }
    for probe, path in expected.items():
        get = authz[probe]["httpGet"]
        assert get["path"] == path
        assert _port_number(authz, get["port"]) == 9090
    assert flag(authz, "--http-listen") == "0.0.0.0:9090"


def test_envoy_probes_hit_the_ready_listener_and_admin_stays_local() -> None:
    rendered = render({"envoy": {"ports": {"ready": 15021}, "adminPort": 15000}})
    envoy = rendered.container("envoy")
    listeners = {
        listener["name"]: listener["address"]["socket_address"]
        for listener in rendered.envoy_bootstrap["static_resources"]["listeners"]
    }
    for probe in ("readinessProbe", "livenessProbe"):
        get = envoy[probe]["httpGet"]
        assert get["path"] == "/ready"
        assert _port_number(envoy, get["port"]) == listeners["ready"]["port_value"] == 15021
    admin = rendered.envoy_bootstrap["admin"]["address"]["socket_address"]
    assert admin == {"address": "127.0.0.1", "port_value": 15000}
    assert 15000 not in {p["containerPort"] for p in envoy["ports"]}


@pytest.mark.parametrize("scenario", scenarios.SIDECAR)
def test_envoy_and_sidecar_share_the_socket_directory(scenario: str) -> None:
    rendered = render(scenarios.SIDECAR[scenario])
    volumes = {v["name"]: v for v in rendered.pod_spec["volumes"]}
    assert volumes["authz-socket"]["emptyDir"]["medium"] == "Memory"
    mounts = {
        name: {m["name"]: m["mountPath"] for m in rendered.container(name)["volumeMounts"]}
        for name in ("authz", "envoy")
    }
    socket_dir = mounts["authz"]["authz-socket"]
    assert mounts["envoy"]["authz-socket"] == socket_dir
    listen = flag(rendered.container("authz"), "--grpc-listen")
    assert listen == f"unix:{socket_dir}/authz.sock"
    clusters = {c["name"]: c for c in rendered.envoy_bootstrap["static_resources"]["clusters"]}
    endpoint = clusters["authz"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["endpoint"]["address"] == {"pipe": {"path": f"{socket_dir}/authz.sock"}}


def test_shutdown_order_envoy_drains_then_the_sidecar_stops() -> None:
    rendered = render({"envoy": {"drainSeconds": 20}, "terminationGracePeriodSeconds": 45})
    spec = rendered.pod_spec
    # A native sidecar: started before Envoy, stopped only after Envoy has exited.
    (sidecar,) = spec["initContainers"]
    assert sidecar["name"] == "authz"
    assert sidecar["restartPolicy"] == "Always"
    envoy = rendered.container("envoy")
    assert envoy["lifecycle"]["preStop"] == {"sleep": {"seconds": 20}}
    assert spec["terminationGracePeriodSeconds"] == 45
    assert "lifecycle" not in sidecar


def test_tls_material_is_mounted_read_only_for_envoy_only() -> None:
    rendered = render(scenarios.MTLS)
    volumes = {v["name"]: v for v in rendered.pod_spec["volumes"]}
    assert volumes["envoy-tls"]["secret"] == {"secretName": "gateway-tls", "defaultMode": 0o440}
    assert volumes["envoy-client-ca"]["secret"] == {"secretName": "client-ca", "defaultMode": 0o440}
    envoy_mounts = {m["name"]: m for m in rendered.container("envoy")["volumeMounts"]}
    for name in ("envoy-tls", "envoy-client-ca", "envoy-config"):
        assert envoy_mounts[name]["readOnly"] is True
    authz_mounts = {m["name"] for m in rendered.container("authz")["volumeMounts"]}
    assert authz_mounts == {"tmp", "authz-socket", "allowed-hosts"}
