"""The chart's standalone mode with TLS on the gRPC listener, and its default NetworkPolicy.

TLS comes from a Secret the user names or from a cert-manager Certificate the chart creates;
the whole Secret is mounted (a subPath mount would never see a renewal) and the sidecar gets the
--tls-* flags the real CLI accepts. In standalone mode the gRPC port is on the network, so a
NetworkPolicy guards it unless turned off.
"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from authz.cli import build_parser
from tests.deploy import scenarios
from tests.deploy.chart import FULLNAME, NAMESPACE, Obj, render


def _args(container: Obj) -> list[str]:
    args: list[str] = container["args"]
    return args


def _flag(container: Obj, name: str) -> str | None:
    args = _args(container)
    return args[args.index(name) + 1] if name in args else None


def _mounts(rendered: Any) -> dict[str, Obj]:
    container = rendered.container("authz")
    return {m["name"]: m for m in container["volumeMounts"]}


def _volumes(rendered: Any) -> dict[str, Obj]:
    return {v["name"]: v for v in rendered.pod_spec["volumes"]}


def test_tls_is_off_by_default_in_both_modes() -> None:
    for values in ({}, {"mode": "standalone"}):
        rendered = render(values)
        assert "--tls-cert" not in _args(rendered.container("authz"))
        assert "Certificate" not in rendered.kinds()


def test_tls_from_an_existing_secret() -> None:
    rendered = render(scenarios.GRPC_TLS_SECRET)
    authz = rendered.container("authz")
    assert _flag(authz, "--tls-cert") == "/etc/authz/tls/tls.crt"
    assert _flag(authz, "--tls-key") == "/etc/authz/tls/tls.key"
    assert "--tls-client-ca" not in _args(authz)
    mount = _mounts(rendered)["grpc-tls"]
    assert mount == {"name": "grpc-tls", "mountPath": "/etc/authz/tls", "readOnly": True}
    assert _volumes(rendered)["grpc-tls"]["secret"] == {
        "secretName": "authz-grpc-tls",
        "defaultMode": 0o440,
    }
    assert "Certificate" not in rendered.kinds()
    # The rendered arguments are what the real command line accepts.
    build_parser().parse_args(_args(authz))


def test_mutual_tls_with_a_cert_manager_certificate() -> None:
    rendered = render(scenarios.GRPC_MTLS_CERT_MANAGER)
    certificate = rendered.one("Certificate")
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    spec = certificate["spec"]
    assert spec["secretName"] == f"{FULLNAME}-grpc-tls"
    assert spec["issuerRef"] == {
        "name": "internal-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert spec["dnsNames"] == [
        FULLNAME,
        f"{FULLNAME}.{NAMESPACE}",
        f"{FULLNAME}.{NAMESPACE}.svc",
        f"{FULLNAME}.{NAMESPACE}.svc.cluster.local",
        "authz.example.internal",
    ]
    assert (spec["duration"], spec["renewBefore"]) == ("2160h", "360h")
    authz = rendered.container("authz")
    # The issuing CA cert-manager writes next to the key checks the clients' certificates.
    assert _flag(authz, "--tls-client-ca") == "/etc/authz/tls/ca.crt"
    assert _volumes(rendered)["grpc-tls"]["secret"]["secretName"] == f"{FULLNAME}-grpc-tls"
    assert "grpc-client-ca" not in _volumes(rendered)
    assert "requires a client certificate (mutual TLS)" in rendered.notes


def test_mutual_tls_with_a_separate_ca_secret() -> None:
    rendered = render(scenarios.STANDALONE["standalone-mtls-ca-secret"])
    authz = rendered.container("authz")
    assert _flag(authz, "--tls-client-ca") == "/etc/authz/client-ca/bundle.pem"
    assert _mounts(rendered)["grpc-client-ca"]["mountPath"] == "/etc/authz/client-ca"
    assert _volumes(rendered)["grpc-client-ca"]["secret"]["secretName"] == "envoy-clients-ca"


def test_standalone_gets_a_network_policy_by_default_open_to_its_namespace_only() -> None:
    assert "NetworkPolicy" not in render().kinds()  # sidecar mode: Envoy's port is the door
    policy = render({"mode": "standalone"}).one("NetworkPolicy")["spec"]
    traffic = policy["ingress"][0]
    assert [p["port"] for p in traffic["ports"]] == ["grpc"]
    assert traffic["from"] == [{"podSelector": {}}]
    assert f"only pods of namespace {NAMESPACE}" in render({"mode": "standalone"}).notes
    off = render({"mode": "standalone", "networkPolicy": {"enabled": False}})
    assert "NetworkPolicy" not in off.kinds()
    assert "NetworkPolicy admits" not in off.notes


def test_network_policy_admits_the_configured_namespaces_and_pods() -> None:
    policy = render(scenarios.GRPC_MTLS_CERT_MANAGER).one("NetworkPolicy")["spec"]
    assert policy["ingress"][0]["from"] == [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}
            }
        },
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}}},
        {"podSelector": {"matchLabels": {"app": "envoy"}}},
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grpcTLS": {"enabled": True, "secretName": "t"}}, "grpcTLS is for mode: standalone"),
        ({"mode": "standalone", "grpcTLS": {"enabled": True}}, "needs grpcTLS.secretName"),
        (
            {"mode": "standalone", "grpcTLS": {"enabled": True, "certManager": {"enabled": True}}},
            "needs grpcTLS.certManager.issuerRef.name",
        ),
        (
            {"mode": "standalone", "grpcTLS": {"clientCA": {"enabled": True}}},
            "need grpcTLS.enabled",
        ),
    ],
)
def test_inconsistent_tls_values_fail_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(values)
