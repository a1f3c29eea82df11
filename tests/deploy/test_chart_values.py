"""values.yaml, values.schema.json and docs/helm.md agree; the schema refuses bad values; the chart
ships the project's CRD and version.
"""

from __future__ import annotations

import json
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.deploy import scenarios, values_doc
from tests.deploy.chart import CHART_DIR, CRD_FILE, REPO_ROOT, loaded_chart, merge

VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())


def test_app_version_is_the_package_version() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    with loaded_chart() as chart:
        assert chart.metadata["appVersion"] == pyproject["project"]["version"]


def test_chart_ships_the_project_crd_byte_for_byte(tmp_path: Path) -> None:
    source = CRD_FILE.read_text()
    with loaded_chart() as chart:
        crds = {c["name"]: c["data"] for c in chart.crds}
        assert crds == {"crds/authz.dev_authpolicies.yaml": source}
        archive = chart.save(tmp_path)
    # The packaged chart (what a chart repository serves) holds the file itself.
    with tarfile.open(archive) as tar:
        member = tar.getmember("authz/crds/authz.dev_authpolicies.yaml")
        assert member.isfile()
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read().decode() == source


def test_defaults_and_every_scenario_pass_the_schema() -> None:
    with loaded_chart() as chart:
        chart.validate_schema({})
        for values in scenarios.ALL.values():
            chart.validate_schema(dict(values))


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"unknownKey": True}, "additional properties 'unknownKey' not allowed"),
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"replicaCount": -1}, "/replicaCount"),
        ({"mode": "daemonset"}, "/mode"),
        ({"image": {"tag": 1.0}}, "/image/tag"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"image": {"registry": "ghcr.io"}}, "/image"),
        ({"resources": {"limits": {"cpu": ["1"]}}}, "/resources/limits/cpu"),
        ({"envoy": {"extAuthz": {"timeout": "500ms"}}}, "/envoy/extAuthz/timeout"),
        ({"envoy": {"extAuthz": {"statusOnError": 200}}}, "/envoy/extAuthz/statusOnError"),
        ({"envoy": {"ports": {"http": 70000}}}, "/envoy/ports/http"),
        ({"envoy": {"tls": {"enabled": "yes"}}}, "/envoy/tls/enabled"),
        ({"envoy": {"image": {"pullPolicy": "Sometimes"}}}, "/envoy/image/pullPolicy"),
        ({"routes": [{"host": "a.example.com", "pathPrefix": "/"}]}, "/routes/0"),
        ({"routes": [{**scenarios.ROUTES[0], "pathPrefix": "api"}]}, "/routes/0/pathPrefix"),
        ({"routes": [{**scenarios.ROUTES[0], "host": "API.example.com"}]}, "/routes/0/host"),
        ({"routes": [{**scenarios.ROUTES[0], "service": "a.b.c"}]}, "/routes/0/service"),
        ({"routes": [{**scenarios.ROUTES[0], "weight": 1}]}, "/routes/0"),
        ({"watch": {"namespaces": "team-a"}}, "/watch/namespaces"),
        ({"watch": {"namespaces": ["Team_A"]}}, "/watch/namespaces/0"),
        ({"policies": {"api.json": "{}"}}, "invalid propertyName 'api.json'"),
        ({"policies": {"api.yaml": {"kind": "AuthPolicy"}}}, "/policies/api.yaml"),
        ({"redis": {"url": "http://redis:6379"}}, "/redis/url"),
        ({"redis": {"mode": "replicated"}}, "/redis/mode"),
        ({"otel": {"sampler": "sometimes"}}, "/otel/sampler"),
        ({"otel": {"samplerArg": 0.1}}, "/otel/samplerArg"),
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"logAllowSampleRate": 2}, "/logAllowSampleRate"),
        ({"service": {"type": "ExternalName"}}, "/service/type"),
        ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget"),
        ({"autoscaling": {"minReplicas": 0}}, "/autoscaling/minReplicas"),
        ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
        ({"nodeSelector": {"zone": 1}}, "/nodeSelector/zone"),
        ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
        ({"tolerations": {"key": "x"}}, "/tolerations"),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], complaint: str) -> None:
    with loaded_chart() as chart, pytest.raises(helm_python.HelmValuesError) as refused:
        chart.validate_schema(values)
    assert complaint in str(refused.value)
    # ...and so does an install, before rendering anything.
    with loaded_chart() as chart, pytest.raises(helm_python.HelmValuesError):
        chart.render(merge({}, values), name="gw", namespace="edge", is_install=True)


def test_schema_describes_every_value() -> None:
    def walk(values: Any, schema: dict[str, Any], path: str) -> None:
        while "$ref" in schema:
            schema = SCHEMA["definitions"][schema["$ref"].removeprefix("#/definitions/")]
        if not isinstance(values, dict) or "properties" not in schema:
            return
        assert schema.get("additionalProperties") is False, f"{path or 'top level'} is open"
        for key, value in values.items():
            assert key in schema["properties"], f"{path}{key} is not in the schema"
            walk(value, schema["properties"][key], f"{path}{key}.")

    walk(VALUES, SCHEMA, "")


def test_every_value_is_documented_in_values_yaml() -> None:
    documented = values_doc.descriptions((CHART_DIR / "values.yaml").read_text())
    for leaf in values_doc.leaves(VALUES):
        assert any(leaf == key or leaf.startswith(key + ".") for key in documented), leaf
    assert all(description for description in documented.values())


def test_values_table_in_the_docs_is_current() -> None:
    doc = values_doc.DOC.read_text()
    assert values_doc.documented_table(doc) == values_doc.table(), (
        "docs/helm.md is stale: run `python -m tests.deploy.values_doc --write`"
    )


def test_values_table_generator_catches_an_undocumented_value(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "values.schema.json").write_text(json.dumps(SCHEMA))
    text = (CHART_DIR / "values.yaml").read_text()
    (chart / "values.yaml").write_text(text + "\nnewKnob: 1\n")
    with pytest.raises(ValueError, match="newKnob"):
        values_doc.rows(chart)
    # Documented, it gets a row with the schema's type and its default.
    (chart / "values.yaml").write_text(text + "\n# -- A new knob.\nnewKnob: 1\n")
    schema = merge(SCHEMA, {"properties": {"newKnob": {"type": "integer"}}})
    (chart / "values.schema.json").write_text(json.dumps(schema))
    assert "| `newKnob` | integer | `1` | A new knob. |" in values_doc.table(chart)
