"""The chart renders, lints and produces valid Kubernetes objects for every toggle.

Objects are validated against the Kubernetes OpenAPI schemas of the oldest supported minor (the
chart's kubeVersion) and the newest one kubernetes-validate knows, in strict mode: an unknown or
misplaced field fails.
"""

from __future__ import annotations

import hashlib
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy import scenarios
from tests.deploy.chart import CHART_DIR, FULLNAME, NAMESPACE, RELEASE, env_of, flag, render

KUBE_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
STANDARD_LABELS = {
    "app.kubernetes.io/name": "authz",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/version": "0.1.0",
    "helm.sh/chart": "authz-0.1.0",
}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


def test_chart_metadata_declares_helm3_chart_and_minimum_kubernetes() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "authz"
    assert chart["type"] == "application"
    assert chart["kubeVersion"] == ">=1.30.0-0"


def test_defaults_render_the_sidecar_gateway_and_nothing_optional() -> None:
    rendered = render()
    names = sorted((o["kind"], o["metadata"]["name"]) for o in rendered.objects)
    assert names == sorted(
        [
            ("ConfigMap", f"{FULLNAME}-envoy"),
            ("ConfigMap", f"{FULLNAME}-allowed-hosts"),
            ("Deployment", FULLNAME),
            ("Service", FULLNAME),
            ("Service", f"{FULLNAME}-metrics"),
            ("ServiceAccount", FULLNAME),
            ("ClusterRole", f"{NAMESPACE}-{FULLNAME}"),
            ("ClusterRoleBinding", f"{NAMESPACE}-{FULLNAME}"),
            ("Role", f"{FULLNAME}-leader-election"),
            ("RoleBinding", f"{FULLNAME}-leader-election"),
            ("PodDisruptionBudget", FULLNAME),
            ("Pod", f"{FULLNAME}-test"),
        ]
    )
    deployment = rendered.deployment
    assert deployment["spec"]["replicas"] == 2
    assert [c["name"] for c in rendered.pod_spec["initContainers"]] == ["authz"]
    assert [c["name"] for c in rendered.pod_spec["containers"]] == ["envoy"]
    assert rendered.container("envoy")["image"] == "envoyproxy/envoy:distroless-v1.40.0"
    assert rendered.container("authz")["image"] == "authz:0.1.0"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", scenarios.ALL)
def test_objects_are_valid_kubernetes(scenario: str, kube_version: str) -> None:
    rendered = render(scenarios.ALL[scenario])
    checked = 0
    for obj in rendered.objects:
        if obj["kind"] in {"ServiceMonitor", "Certificate"}:  # CRDs: see their own tests
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {e.message}")
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("scenario", scenarios.ALL)
def test_helm_lint_is_clean(scenario: str) -> None:
    report = helm_python.lint(
        CHART_DIR, dict(scenarios.ALL[scenario]), strict=True, namespace=NAMESPACE
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []


@pytest.mark.parametrize("scenario", scenarios.ALL)
def test_every_object_is_labelled_and_namespaced(scenario: str) -> None:
    for obj in render(scenarios.ALL[scenario]).objects:
        labels = obj["metadata"]["labels"]
        assert STANDARD_LABELS.items() <= labels.items(), obj["metadata"]["name"]
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"]
        elif obj["kind"] not in {"Role", "RoleBinding"}:  # Roles may sit in watched namespaces
            assert obj["metadata"]["namespace"] == NAMESPACE


def _checksum(values: dict[str, Any]) -> str:
    annotations = render(values).deployment["spec"]["template"]["metadata"]["annotations"]
    checksum: str = annotations["checksum/envoy-config"]
    return checksum


def test_pods_roll_when_the_envoy_config_changes_and_only_then() -> None:
    base = _checksum({})
    assert _checksum({"routes": scenarios.ROUTES}) != base
    assert _checksum({"envoy": {"extAuthz": {"timeout": "1s"}}}) != base
    assert _checksum({"replicaCount": 5}) == base
    # The checksum is that of the ConfigMap as rendered.
    configmap = next(
        text
        for path, text in _raw_render({}).items()
        if path.endswith("templates/envoy-configmap.yaml")
    )
    assert base == hashlib.sha256(configmap.encode()).hexdigest()


def _raw_render(values: dict[str, Any]) -> dict[str, str]:
    with helm_python.Chart.load(CHART_DIR) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def test_policy_files_and_redis_secret_roll_pods_too() -> None:
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        meta = render(values).deployment["spec"]["template"]["metadata"]
        found: dict[str, str] = meta["annotations"]
        return found

    one = annotations({"policies": {"a.yaml": scenarios.POLICY}})
    two = annotations({"policies": {"a.yaml": scenarios.POLICY + "# changed\n"}})
    assert one["checksum/policies"] != two["checksum/policies"]
    r1 = annotations({"redis": {"url": "redis://a:6379"}})
    r2 = annotations({"redis": {"url": "redis://b:6379"}})
    assert r1["checksum/redis"] != r2["checksum/redis"]


def test_autoscaling_takes_over_replicas() -> None:
    rendered = render(scenarios.HARDENED)
    assert "replicas" not in rendered.deployment["spec"]
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 70},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }


def test_pod_disruption_budget_takes_one_of_its_bounds() -> None:
    default = render().one("PodDisruptionBudget")["spec"]
    assert default["maxUnavailable"] == 1
    assert "minAvailable" not in default
    assert (
        default["selector"]["matchLabels"] == render().deployment["spec"]["selector"]["matchLabels"]
    )
    hardened = render(scenarios.HARDENED).one("PodDisruptionBudget")["spec"]
    assert hardened["minAvailable"] == 1
    assert "maxUnavailable" not in hardened
    assert "PodDisruptionBudget" not in render({"podDisruptionBudget": {"enabled": False}}).kinds()


def test_gateway_service_exposes_envoy_only() -> None:
    rendered = render({**scenarios.TLS})
    ports = {
        p["name"]: (p["port"], p["targetPort"])
        for p in rendered.one("Service", FULLNAME)["spec"]["ports"]
    }
    assert ports == {"http": (80, "http"), "https": (443, "https")}
    metrics = rendered.one("Service", f"{FULLNAME}-metrics")
    assert metrics["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["targetPort"] for p in metrics["spec"]["ports"]} == {
        "metrics": "metrics",
        "envoy-stats": "envoy-ready",
    }
    # No gRPC port anywhere: Envoy reaches the sidecar over the socket only.
    for container in [*rendered.pod_spec["initContainers"], *rendered.pod_spec["containers"]]:
        assert "grpc" not in {p["name"] for p in container["ports"]}


def test_load_balancer_service_keeps_client_addresses_when_asked() -> None:
    service = render(scenarios.POD_EXTRAS).one("Service", FULLNAME)["spec"]
    assert service["type"] == "LoadBalancer"
    assert service["externalTrafficPolicy"] == "Local"
    assert "externalTrafficPolicy" not in render().one("Service", FULLNAME)["spec"]


def test_standalone_runs_authz_alone_behind_a_grpc_service() -> None:
    rendered = render({"mode": "standalone"})
    # No Envoy configuration; the host grants only.
    assert [o["metadata"]["name"] for o in rendered.objects if o["kind"] == "ConfigMap"] == [
        f"{FULLNAME}-allowed-hosts"
    ]
    assert "initContainers" not in rendered.pod_spec
    assert [c["name"] for c in rendered.pod_spec["containers"]] == ["authz"]
    authz = rendered.container("authz")
    assert flag(authz, "--grpc-listen") == "0.0.0.0:9000"
    assert {p["name"]: p["containerPort"] for p in authz["ports"]} == {
        "grpc": 9000,
        "metrics": 9090,
    }
    service = rendered.one("Service", FULLNAME)["spec"]
    assert service["ports"] == [
        {
            "name": "grpc",
            "port": 9000,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        }
    ]
    assert [p["name"] for p in rendered.one("Service", f"{FULLNAME}-metrics")["spec"]["ports"]] == [
        "metrics"
    ]
    assert "ext_authz" in rendered.notes
    assert "9000" in rendered.notes


def test_sidecar_flags_and_environment() -> None:
    authz = render().container("authz")
    assert authz["args"][0] == "serve"
    assert flag(authz, "--http-listen") == "0.0.0.0:9090"
    assert flag(authz, "--log-level") == "info"
    assert flag(authz, "--trusted-proxy-hops") == "0"
    assert "--kubernetes" in authz["args"]
    assert flag(authz, "--log-allow-sample-rate") is None
    assert flag(authz, "--redis-mode") is None
    env = env_of(authz)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["OTEL_TRACES_EXPORTER"] == "none"
    assert "AUTHZ_REDIS_URL" not in env
    assert "AUTHZ_NAMESPACE" not in env


def test_host_ownership_is_a_mounted_configmap_secure_by_default() -> None:
    rendered = render()
    authz = rendered.container("authz")
    assert rendered.configmap_data(f"{FULLNAME}-allowed-hosts") == {
        "allowed-hosts.yaml": f"{NAMESPACE}:\n- '*'\n"
    }
    assert env_of(authz)["AUTHZ_ALLOWED_HOSTS"] == "/etc/authz/allowed-hosts/allowed-hosts.yaml"
    mounts = {m["name"]: m for m in authz["volumeMounts"]}
    # A directory mount (no subPath): the kubelet's symlink swap reaches the running sidecar.
    assert mounts["allowed-hosts"] == {
        "name": "allowed-hosts",
        "mountPath": "/etc/authz/allowed-hosts",
        "readOnly": True,
    }
    volumes = {v["name"]: v for v in rendered.pod_spec["volumes"]}
    assert volumes["allowed-hosts"]["configMap"] == {"name": f"{FULLNAME}-allowed-hosts"}
    # Grants change without a rollout: the pod template does not hash them.
    before = rendered.deployment["spec"]["template"]["metadata"].get("annotations", {})
    granted = render({"hostOwnership": {"grants": {"shop": ["orders.example.com"]}}})
    after = granted.deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert before == after
    assert granted.configmap_data(f"{FULLNAME}-allowed-hosts") == {
        "allowed-hosts.yaml": "shop:\n- orders.example.com\n"
    }


def test_host_ownership_can_be_turned_off() -> None:
    rendered = render({"hostOwnership": {"enabled": False}})
    authz = rendered.container("authz")
    assert "AUTHZ_ALLOWED_HOSTS" not in env_of(authz)
    assert "allowed-hosts" not in {m["name"] for m in authz["volumeMounts"]}
    assert ("ConfigMap", f"{FULLNAME}-allowed-hosts") not in {
        (o["kind"], o["metadata"]["name"]) for o in rendered.objects
    }


def test_pod_extras_reach_the_pod() -> None:
    rendered = render(scenarios.POD_EXTRAS)
    spec = rendered.pod_spec
    authz = rendered.container("authz")
    assert authz["image"] == "authz@sha256:" + "a" * 64
    assert env_of(authz)["AUTHZ_EXTRA"] == "1"
    assert flag(authz, "--log-allow-sample-rate") == "0.1"
    # One trusted proxy in front of Envoy, which appends its own peer: the client is 2nd from the right.
    assert flag(authz, "--trusted-proxy-hops") == "2"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"] == scenarios.POD_EXTRAS["tolerations"]
    assert spec["affinity"] == scenarios.POD_EXTRAS["affinity"]
    assert spec["topologySpreadConstraints"] == scenarios.POD_EXTRAS["topologySpreadConstraints"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    meta = rendered.deployment["spec"]["template"]["metadata"]
    assert meta["annotations"]["example.com/team"] == "edge"
    assert meta["labels"]["example.com/tier"] == "edge"
    assert (
        rendered.envoy_bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][
            0
        ]["typed_config"]["xff_num_trusted_hops"]
        == 1
    )


def test_watch_namespaces_and_selector() -> None:
    rendered = render(scenarios.SIDECAR["watch-namespaces"])
    authz = rendered.container("authz")
    assert env_of(authz)["AUTHZ_NAMESPACE"] == "team-a,team-b"
    assert flag(authz, "--selector") == "authz.dev/gateway=public"
    assert "ClusterRole" not in rendered.kinds()


def test_files_only_mounts_policies_and_talks_to_no_api_server() -> None:
    rendered = render(scenarios.SIDECAR["files-only"])
    authz = rendered.container("authz")
    assert "--kubernetes" not in authz["args"]
    assert env_of(authz)["AUTHZ_POLICIES"] == "/etc/authz/policies"
    mounts = {m["name"]: m for m in authz["volumeMounts"]}
    assert mounts["policies"] == {
        "name": "policies",
        "mountPath": "/etc/authz/policies",
        "readOnly": True,
    }
    assert rendered.configmap_data(f"{FULLNAME}-policies") == {"api.yaml": scenarios.POLICY}
    assert rendered.pod_spec["automountServiceAccountToken"] is False
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & rendered.kinds()


def test_files_only_without_policies_is_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="no policies"):
        render({"watch": {"enabled": False}})


def test_redis_url_is_kept_in_a_secret() -> None:
    rendered = render(scenarios.SIDECAR["redis-url"])
    secret = rendered.one("Secret", f"{FULLNAME}-redis")
    assert secret["stringData"] == {"redis-url": "redis://redis-master:6379/0"}
    authz = rendered.container("authz")
    assert env_of(authz)["AUTHZ_REDIS_URL"] == {
        "secretKeyRef": {"name": f"{FULLNAME}-redis", "key": "redis-url"}
    }
    assert flag(authz, "--redis-mode") == "standalone"
    assert "redis-master" not in yaml.safe_dump(rendered.deployment)


def test_existing_redis_secret_is_referenced_not_created() -> None:
    rendered = render(scenarios.SIDECAR["redis-secret"])
    assert "Secret" not in rendered.kinds()
    authz = rendered.container("authz")
    assert env_of(authz)["AUTHZ_REDIS_URL"] == {
        "secretKeyRef": {"name": "redis-creds", "key": "redis-url"}
    }
    assert flag(authz, "--redis-mode") == "sentinel"
    with pytest.raises(helm_python.HelmRenderError, match="not both"):
        render({"redis": {"url": "redis://r:6379", "existingSecret": "x"}})


def test_tracing_environment() -> None:
    env = env_of(render(scenarios.OBSERVABILITY).container("authz"))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert env["OTEL_SERVICE_NAME"] == FULLNAME
    assert "OTEL_TRACES_EXPORTER" not in env


def test_service_monitor_only_when_enabled() -> None:
    assert "ServiceMonitor" not in render().kinds()
    rendered = render(scenarios.OBSERVABILITY)
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    metrics_service = rendered.one("Service", f"{FULLNAME}-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= metrics_service["metadata"]["labels"].items()
    # ...and not the gateway Service, which may be a public load balancer.
    assert not selector.items() <= rendered.one("Service", FULLNAME)["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service_ports = {p["name"] for p in metrics_service["spec"]["ports"]}
    endpoints = {(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]}
    assert endpoints == {("metrics", "/metrics"), ("envoy-stats", "/stats/prometheus")}
    assert {port for port, _ in endpoints} <= service_ports
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["interval"] == "30s"
        assert endpoint["scrapeTimeout"] == "10s"
        assert endpoint["relabelings"] == [{"action": "labeldrop", "regex": "pod_template_hash"}]
    standalone = render({**scenarios.OBSERVABILITY, "mode": "standalone"}).one("ServiceMonitor")
    assert [e["port"] for e in standalone["spec"]["endpoints"]] == ["metrics"]


def test_network_policy_guards_the_right_ports() -> None:
    assert "NetworkPolicy" not in render().kinds()
    policy = render({**scenarios.HARDENED, **scenarios.TLS}).one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "authz",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    traffic, metrics = policy["ingress"]
    assert [p["port"] for p in traffic["ports"]] == ["http", "https"]
    assert traffic["from"] == scenarios.HARDENED["networkPolicy"]["allowedFrom"]
    assert [p["port"] for p in metrics["ports"]] == ["metrics", "envoy-ready"]
    assert metrics["from"] == scenarios.HARDENED["networkPolicy"]["metricsFrom"]
    assert policy["egress"] == scenarios.HARDENED["networkPolicy"]["egress"]
    standalone = render({**scenarios.HARDENED, "mode": "standalone"}).one("NetworkPolicy")
    assert [p["port"] for p in standalone["spec"]["ingress"][0]["ports"]] == ["grpc"]
    open_egress = render({"networkPolicy": {"enabled": True}}).one("NetworkPolicy")["spec"]
    assert open_egress["policyTypes"] == ["Ingress"]
    assert "from" not in open_egress["ingress"][0]


def test_helm_test_hook_asks_the_gateway() -> None:
    pod = render().one("Pod", f"{FULLNAME}-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    assert f"http://{FULLNAME}-metrics:9090/readyz" in script
    assert f'url="http://{FULLNAME}:80/"' in script
    tls_script = render(scenarios.TLS).one("Pod", f"{FULLNAME}-test")["spec"]["containers"][0][
        "args"
    ][0]
    assert f'url="https://{FULLNAME}:443/"' in tls_script
    standalone = render({"mode": "standalone"}).one("Pod", f"{FULLNAME}-test")
    assert "url=" not in standalone["spec"]["containers"][0]["args"][0]


def test_notes_give_next_steps() -> None:
    notes = render().notes
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{FULLNAME}" in notes
    assert f"helm test {RELEASE}" in notes
    assert "No routes are configured yet" in notes
    assert "No routes" not in render({"routes": scenarios.ROUTES}).notes


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"envoy": {"tls": {"enabled": True}}}, "needs envoy.tls.secretName"),
        (
            {
                "envoy": {
                    "tls": {"enabled": True, "secretName": "t", "requireClientCertificate": True}
                }
            },
            "needs envoy.tls.clientCASecretName",
        ),
        ({"envoy": {"tls": {"clientCASecretName": "ca"}}}, "needs envoy.tls.enabled"),
        ({"podDisruptionBudget": {"minAvailable": 1}}, "not both"),
        ({"envoy": {"drainSeconds": 30}}, "less than terminationGracePeriodSeconds"),
        (
            {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}},
            "needs targetCPUUtilizationPercentage",
        ),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "at least"),
        (
            {"routes": [scenarios.ROUTES[0], {**scenarios.ROUTES[0], "service": "other"}]},
            "listed twice",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(values)


def test_introspection_secrets_are_mounted_where_the_sidecar_reads_them() -> None:
    rendered = render(
        {
            "introspectionSecrets": [
                {"namespace": "shop", "name": "idp-client"},
                {"namespace": "billing", "name": "idp", "secretName": "billing-idp-copy"},
            ]
        }
    )
    authz = rendered.container("authz")
    assert env_of(authz)["AUTHZ_SECRETS_DIR"] == "/etc/authz/secrets"
    mounts = {m["name"]: m for m in authz["volumeMounts"]}
    assert mounts["introspection-secret-0"]["mountPath"] == "/etc/authz/secrets/shop/idp-client"
    assert mounts["introspection-secret-1"]["mountPath"] == "/etc/authz/secrets/billing/idp"
    assert all(mounts[f"introspection-secret-{i}"]["readOnly"] for i in (0, 1))
    volumes = {v["name"]: v for v in rendered.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["introspection-secret-0"]["secret"]["secretName"] == "idp-client"
    assert volumes["introspection-secret-1"]["secret"]["secretName"] == "billing-idp-copy"
    assert "AUTHZ_SECRETS_DIR" not in env_of(render().container("authz"))
