"""The authz container the chart renders starts with arguments and environment the real CLI
accepts: every flag exists, every AUTHZ_* value parses, and the settings say what the chart meant
(drift between chart and sidecar would otherwise surface as a crash-looping pod)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from authz.cli import build_parser, serve_settings
from authz.settings import ListenAddress, Settings
from authz.sources.hostgrants import load_grants
from tests.deploy.chart import FULLNAME, NAMESPACE, render
from tests.deploy.scenarios import ALL, STANDALONE


def settings_for(
    values: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    rendered = render(values)
    authz = rendered.container("authz")
    assert authz["args"][0] == "serve"
    for name in [n for n in os.environ if n.startswith("AUTHZ_")]:
        monkeypatch.delenv(name)
    for item in authz.get("env", []):
        if "value" in item:
            value = item["value"]
        elif item["name"] == "AUTHZ_REDIS_URL":
            value = "redis://redis-0.redis:6379"  # a secretKeyRef the kubelet resolves
        else:
            continue  # the downward API (POD_NAME, POD_NAMESPACE): set below
        if item["name"] == "AUTHZ_POLICIES":
            value = str(tmp_path)  # the ConfigMap mount, which exists in the pod
        if item["name"] == "AUTHZ_ALLOWED_HOSTS":  # the grants ConfigMap, mounted likewise
            mounted = tmp_path / "allowed-hosts.yaml"
            (data,) = rendered.configmap_data(f"{FULLNAME}-allowed-hosts").values()
            mounted.write_text(data)
            value = str(mounted)
        monkeypatch.setenv(item["name"], value)
    monkeypatch.setenv("POD_NAME", "gw-0")
    monkeypatch.setenv("POD_NAMESPACE", "gateway")
    args = [_mounted(arg, authz, tmp_path) for arg in authz["args"]]
    settings, _ = serve_settings(build_parser().parse_args(args), os.environ)
    return settings


def _mounted(arg: str, container: dict[str, Any], tmp_path: Path) -> str:
    """A file under one of the container's mounts (a Secret the kubelet fills), made in tmp."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"] + "/"
        if arg.startswith(prefix):
            local = tmp_path / mount["name"] / arg.removeprefix(prefix)
            local.parent.mkdir(parents=True, exist_ok=True)
            local.touch()
            return str(local)
    return arg


@pytest.mark.parametrize("name", sorted(ALL))
def test_rendered_args_parse_with_the_real_cli(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(ALL[name], tmp_path, monkeypatch)
    assert settings.server.http_listen.port == 9090
    if name in STANDALONE:
        assert settings.server.grpc_listen == ListenAddress("0.0.0.0", 9000)
        assert settings.tls.enabled == ("tls" in name)
        assert (settings.tls.client_ca is not None) == ("mtls" in name)
    else:
        assert settings.server.grpc_listen == ListenAddress(path="/var/run/authz/authz.sock")


def test_default_install_watches_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for({}, tmp_path, monkeypatch)
    assert settings.kubernetes.enabled
    assert settings.kubernetes.namespaces == ()
    assert settings.kubernetes.identity == "gw-0"
    assert settings.kubernetes.lease_namespace == "gateway"


def test_default_install_grants_every_host_to_its_own_namespace_and_nothing_to_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for({}, tmp_path, monkeypatch)
    assert settings.policies.allowed_hosts is not None
    grants = load_grants(settings.policies.allowed_hosts)  # the sidecar's own parser
    assert grants.refused_hosts(NAMESPACE, ["orders.example.com", "*.example.com"]) == []
    assert grants.refused_hosts("team-a", ["orders.example.com"]) == ["orders.example.com"]


def test_host_ownership_grants_reach_the_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {"hostOwnership": {"grants": {"shop": ["Orders.Example.com", "*.shop.example.com"]}}}
    settings = settings_for(values, tmp_path, monkeypatch)
    assert settings.policies.allowed_hosts is not None
    grants = load_grants(settings.policies.allowed_hosts)
    assert grants.refused_hosts("shop", ["orders.example.com", "a.shop.example.com"]) == []
    # Explicit grants replace the default: the release's namespace gets only what is listed.
    assert grants.refused_hosts(NAMESPACE, ["orders.example.com"]) == ["orders.example.com"]


def test_host_ownership_off_passes_no_grants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for({"hostOwnership": {"enabled": False}}, tmp_path, monkeypatch)
    assert settings.policies.allowed_hosts is None
