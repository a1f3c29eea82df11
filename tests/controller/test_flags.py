"""`authz serve --kubernetes` flags and environment: what they mean, and clear errors (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from authz.cli import _apply_env, _build_parser, serve_settings
from authz.controller.source import default_lease_name
from authz.errors import ConfigError
from authz.settings import KubernetesSettings, Settings
from tests.support.procs import ROOT


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AUTHZ_", "POD_")) or name == "KUBECONFIG":
            monkeypatch.delenv(name)


def settings(*argv: str) -> Settings:
    parser = _build_parser()
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        _apply_env(action.choices["serve"])  # type: ignore[index]
    return serve_settings(parser.parse_args(["serve", *argv]))


def test_kubernetes_alone_is_enough_to_serve(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("{}")
    k = settings("--kubernetes", "--kubeconfig", str(kubeconfig)).kubernetes
    assert (k.enabled, k.kubeconfig, k.namespaces, k.selector) == (True, kubeconfig, (), None)
    assert k.lease_duration == 15.0


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTHZ_KUBERNETES", "true")
    monkeypatch.setenv("AUTHZ_NAMESPACE", "shop, billing,shop")
    monkeypatch.setenv("POD_NAME", "authz-7d9f-x2x")
    monkeypatch.setenv("POD_NAMESPACE", "authz-system")
    policies = tmp_path / "p"
    policies.mkdir()
    s = settings("--selector", "shard=eu", "--policies", str(policies), "--lease-duration", "5")
    k = s.kubernetes
    assert k.enabled
    assert k.namespaces == ("shop", "billing")
    assert (k.selector, k.identity, k.lease_namespace, k.lease_duration) == (
        "shard=eu",
        "authz-7d9f-x2x",
        "authz-system",
        5.0,
    )
    assert s.policies.paths == (policies,)  # files and cluster together


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to serve: pass --policies PATH (or set AUTHZ_POLICIES) and/or --kubernetes"),
        (["--policies", "p", "--namespace", "a"], "--namespace needs --kubernetes"),
        (["--policies", "p", "--selector", "a=b"], "--selector needs --kubernetes"),
        (
            ["--kubernetes", "--kubeconfig", "/nonexistent"],
            "--kubeconfig: /nonexistent does not exist",
        ),
        (
            ["--kubernetes", "--lease-duration", "0"],
            "--lease-duration: expected seconds from 1 to 3600, got '0'",
        ),
    ],
)
def test_usage_errors(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        settings(*argv)
    assert str(exc.value) == message


def test_no_cluster_configuration_is_exit_2_with_the_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHZ_", "KUBERNETES_"))}
    env["KUBECONFIG"] = str(tmp_path / "missing-kubeconfig")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "authz",
            "serve",
            "--kubernetes",
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        "authz: error: --kubernetes: cannot load in-cluster config or KUBECONFIG" in result.stderr
    )


def test_each_shard_elects_its_own_leader() -> None:
    everything = KubernetesSettings(enabled=True)
    eu = KubernetesSettings(enabled=True, selector="shard=eu")
    us = KubernetesSettings(enabled=True, selector="shard=us")
    assert default_lease_name(everything) == "authz-leader"
    assert default_lease_name(eu).startswith("authz-leader-")
    assert len({default_lease_name(s) for s in (everything, eu, us)}) == 3
    assert default_lease_name(eu) == default_lease_name(KubernetesSettings(selector="shard=eu"))
