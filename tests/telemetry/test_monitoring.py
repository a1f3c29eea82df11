"""The shipped alerts (deploy/monitoring/authz-alerts.yaml) and Grafana dashboard
(deploy/monitoring/authz-dashboard.json) parse as PromQL and read only metrics - and labels -
the sidecar exports, so a renamed metric breaks this test rather than an operator's pager."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from authz import errors
from authz.telemetry import labels
from authz.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "monitoring" / "authz-alerts.yaml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "authz-dashboard.json"
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job", "pod", "namespace", "le"}
#: Grafana's variables, replaced by what Grafana would put there before the query is parsed.
GRAFANA = {"$__rate_interval": "1m", "$__range": "6h", "$policy": ".*"}


def exported() -> dict[str, set[str]]:
    """Every series name the sidecar's registry can export, with the label names it carries
    (read from the collectors: a labelled metric nobody used yet has no samples to show them)."""
    registry = Metrics().registry
    out: dict[str, set[str]] = {}
    for collector, names in registry._collector_to_names.items():
        for name in [n for n in names if not n.endswith("_created")]:  # disabled: never served
            out.setdefault(name, set()).update(getattr(collector, "_labelnames", ()))
    return out


def selectors(node: Any) -> Iterator[Any]:
    """Every vector selector of a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
        return
    for attribute in ("lhs", "rhs", "expr", "args", "param", "vector_selector"):
        child = getattr(node, attribute, None)
        for item in child if isinstance(child, list) else [child]:
            if item is not None:
                yield from selectors(item)


def alert_expressions() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    out: dict[str, str] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA.items():
                expr = expr.replace(variable, value)
            out[f"{panel['title']} {target['refId']}"] = expr
    return out


EXPRESSIONS = {
    **{f"alert {k}": v for k, v in alert_expressions().items()},
    **{f"panel {k}": v for k, v in dashboard_expressions().items()},
}


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_every_query_parses_and_reads_exported_metrics_and_labels(name: str) -> None:
    parsed = promql_parser.parse(EXPRESSIONS[name])
    metrics = exported()
    found = list(selectors(parsed))
    assert found, "a query without a metric"
    for selector in found:
        assert selector.name in metrics, f"{selector.name} is not exported"
        for matcher in selector.matchers.matchers:
            assert matcher.name in metrics[selector.name] | TARGET_LABELS, (
                f"{selector.name} has no label {matcher.name}"
            )


def test_label_values_the_alerts_match_exist() -> None:
    text = ALERTS.read_text()
    reasons = {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)}
    for alternatives in re.findall(r'reason=~"([^"]+)"', text):
        assert set(alternatives.split("|")) <= reasons
    for alternatives in re.findall(r'state=~"([^"]+)"', text):
        assert set(alternatives.split("|")) <= set(labels.POLICY_STATES)
    assert set(re.findall(r'mode="([^"]+)"', text)) <= set(labels.BACKEND_MODES)
    assert set(re.findall(r'result="([^"]+)"', text)) <= {labels.FETCH_OK, labels.FETCH_ERROR}


def test_the_alerts_the_operators_expect_are_there() -> None:
    assert set(alert_expressions()) == {
        "AuthzDenialSpike",
        "AuthzBruteForceBlocks",
        "AuthzServerErrors",
        "AuthzIssuerKeysUnavailable",
        "AuthzRedisFallback",
        "AuthzPoliciesInvalid",
    }
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    for rule in groups[0]["rules"]:
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_the_dashboard_covers_what_operators_look_at() -> None:
    board = json.loads(DASHBOARD.read_text())
    text = json.dumps(board)
    for metric in (
        "authz_decisions_total",
        "authz_check_duration_seconds_bucket",
        "authz_bruteforce_blocks_total",
        "authz_bruteforce_blocked_keys",
        "authz_ratelimit_backend_mode",
        "authz_policies",
    ):
        assert metric in text
    ids = [p["gridPos"] for p in board["panels"]]
    assert all(g["x"] >= 0 and g["x"] + g["w"] <= 24 for g in ids)
    assert board["uid"] == "authz-sidecar"
