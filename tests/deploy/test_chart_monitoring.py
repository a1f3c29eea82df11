"""The chart's optional monitoring objects, rendered by the real Helm engine: the PrometheusRule
carries exactly the alerts of deploy/monitoring/authz-alerts.yaml, the dashboard ConfigMap
exactly deploy/monitoring/authz-dashboard.json, and neither exists unless asked for."""

from __future__ import annotations

import json

import yaml

from tests.deploy.chart import CHART_DIR, NAMESPACE, REPO_ROOT, render

ALERTS = REPO_ROOT / "deploy" / "monitoring" / "authz-alerts.yaml"
DASHBOARD = REPO_ROOT / "deploy" / "monitoring" / "authz-dashboard.json"


def test_no_monitoring_objects_by_default() -> None:
    rendered = render({})
    assert "PrometheusRule" not in rendered.kinds()
    assert not [c for c in rendered.all("ConfigMap") if c["metadata"]["name"].endswith("dashboard")]


def test_the_prometheus_rule_is_the_shipped_rules_file() -> None:
    rendered = render({"prometheusRule": {"enabled": True, "labels": {"release": "kube-prom"}}})
    rule = rendered.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prom"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    # Alert templates reach Prometheus as written, not evaluated by Helm.
    assert "{{ $labels.policy }}" in json.dumps(rule["spec"])


def test_the_dashboard_config_map_carries_the_shipped_dashboard() -> None:
    rendered = render(
        {
            "grafanaDashboard": {
                "enabled": True,
                "annotations": {"grafana_folder": "Gateways"},
                "namespace": "monitoring",
            }
        }
    )
    (config,) = [
        c for c in rendered.all("ConfigMap") if c["metadata"]["name"] == "gw-authz-dashboard"
    ]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["annotations"] == {"grafana_folder": "Gateways"}
    assert config["metadata"]["namespace"] == "monitoring"
    shipped = json.loads(config["data"]["authz-dashboard.json"])
    assert shipped == json.loads(DASHBOARD.read_text())


def test_the_chart_files_are_the_shipped_files() -> None:
    for name, source in (("authz-alerts.yaml", ALERTS), ("authz-dashboard.json", DASHBOARD)):
        linked = CHART_DIR / "files" / name
        assert linked.is_symlink()
        assert linked.resolve() == source.resolve()
