"""The Envoy bootstrap the chart renders: the real `envoy --mode validate` accepts it for every
sidecar toggle, and it says what the issue asks (fail closed, safe paths, routes, TLS).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.devtools.envoyconf import gateway_config
from authz.settings import ListenAddress
from tests.deploy import scenarios
from tests.deploy.chart import CHART_DIR, NAMESPACE, Obj, render
from tests.deploy.envoy_harness import (
    TlsMaterial,
    envoy_version,
    materialize,
    remove_tree,
    short_tmpdir,
    tls_material,
    validate,
)


@pytest.fixture(scope="module")
def tls() -> TlsMaterial:
    return tls_material()


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tmpdir()
    yield path
    remove_tree(path)


@pytest.mark.parametrize("scenario", scenarios.SIDECAR)
def test_envoy_accepts_the_bootstrap(scenario: str, root: Path, tls: TlsMaterial) -> None:
    materialized = materialize(render(scenarios.SIDECAR[scenario]), root, secrets=tls.secrets())
    result = validate(materialized)
    assert result.ok, result.output
    assert "Deprecated field" not in result.output


def test_validation_fails_when_a_mounted_file_is_missing(root: Path, tls: TlsMaterial) -> None:
    # The harness can fail: a file the bootstrap names must be in a mount. (Validation does not
    # read the SDS documents themselves; test_envoy_serving loads the certificates for real.)
    materialized = materialize(render(scenarios.MTLS), root, secrets=tls.secrets())
    (materialized.mounts["/etc/envoy"] / "sds-server-cert.yaml").unlink()
    result = validate(materialized)
    assert not result.ok
    assert "sds-server-cert.yaml' does not exist" in result.output


def test_validation_fails_on_a_broken_bootstrap(root: Path, tls: TlsMaterial) -> None:
    materialized = materialize(render(), root, secrets=tls.secrets())
    text = materialized.config_path.read_text()
    materialized.config_path.write_text(text.replace("REJECT_REQUEST", "REJECT_SOMETIMES"))
    assert not validate(materialized).ok


def test_pinned_envoy_image_is_the_version_tests_validate_with() -> None:
    tag = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["envoy"]["image"]["tag"]
    major_minor = ".".join(envoy_version().split(".")[:2])
    assert tag.startswith(f"distroless-v{major_minor}."), (tag, envoy_version())


def _listeners(bootstrap: Obj) -> dict[str, Obj]:
    return {lis["name"]: lis for lis in bootstrap["static_resources"]["listeners"]}


def _hcm(listener: Obj) -> Obj:
    config: Obj = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return config


def _filters(hcm: Obj) -> dict[str, Obj]:
    return {f["name"]: f["typed_config"] for f in hcm["http_filters"]}


def test_ext_authz_fails_closed_over_the_socket_without_the_body() -> None:
    bootstrap = render({"envoy": {"extAuthz": {"timeout": "0.75s", "statusOnError": 503}}})
    hcm = _hcm(_listeners(bootstrap.envoy_bootstrap)["http"])
    assert [f["name"] for f in hcm["http_filters"]] == [
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.ext_proc",
        "envoy.filters.http.router",
    ]
    ext_authz = _filters(hcm)["envoy.filters.http.ext_authz"]
    assert ext_authz["grpc_service"] == {
        "envoy_grpc": {"cluster_name": "authz"},
        "timeout": "0.75s",
    }
    assert ext_authz["failure_mode_allow"] is False
    assert ext_authz["include_peer_certificate"] is True
    assert ext_authz["status_on_error"] == {"code": 503}
    assert ext_authz["transport_api_version"] == "V3"
    assert "with_request_body" not in ext_authz


def test_ext_proc_follows_ext_authz_over_its_own_socket_and_fails_closed() -> None:
    values = {"envoy": {"extProc": {"enabled": True, "timeout": "2s", "maxBodyBytes": 65536}}}
    rendered = render(values)
    bootstrap = rendered.envoy_bootstrap
    hcm = _hcm(_listeners(bootstrap)["http"])
    wrapped = _filters(hcm)["envoy.filters.http.ext_proc"]
    predicate = wrapped["xds_matcher"]["matcher_list"]["matchers"][0]["predicate"]
    assert predicate["single_predicate"]["input"]["typed_config"]["header_name"] == (
        "x-authz-ext-proc"
    )
    assert predicate["single_predicate"]["value_match"] == {"exact": "skip"}
    assert hcm["route_config"]["request_headers_to_remove"] == ["x-authz-ext-proc"]
    ext_proc = wrapped["extension_config"]["typed_config"]
    assert ext_proc["failure_mode_allow"] is False
    assert ext_proc["allow_mode_override"] is True
    assert ext_proc["grpc_service"] == {
        "envoy_grpc": {"cluster_name": "authz_ext_proc"},
        "timeout": "2s",
    }
    assert ext_proc["processing_mode"] == {
        "request_header_mode": "SEND",
        "response_header_mode": "SEND",
        "request_body_mode": "NONE",
        "response_body_mode": "BUFFERED",
        "request_trailer_mode": "SKIP",
        "response_trailer_mode": "SKIP",
    }
    assert ext_proc["metadata_options"] == {
        "forwarding_namespaces": {"untyped": ["envoy.filters.http.ext_authz"]}
    }
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    endpoint = clusters["authz_ext_proc"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    socket = endpoint["endpoint"]["address"]["pipe"]["path"]
    args = rendered.container("authz")["args"]
    assert args[args.index("--ext-proc-listen") + 1] == f"unix:{socket}"
    assert args[args.index("--response-body-max-bytes") + 1] == "65536"
    off = render({"envoy": {"extProc": {"enabled": False}}})
    assert "envoy.filters.http.ext_proc" not in _filters(
        _hcm(_listeners(off.envoy_bootstrap)["http"])
    )
    assert "--ext-proc-listen" not in off.container("authz")["args"]


@pytest.mark.parametrize("scenario", scenarios.SIDECAR)
def test_every_traffic_listener_normalizes_paths(scenario: str) -> None:
    listeners = _listeners(render(scenarios.SIDECAR[scenario]).envoy_bootstrap)
    traffic = [listeners[name] for name in ("http", "https") if name in listeners]
    for listener in traffic:
        hcm = _hcm(listener)
        if hcm["stat_prefix"] == "ingress_http_redirect":
            assert "ext_authz" not in str(hcm["http_filters"])
            continue
        assert hcm["normalize_path"] is True
        assert hcm["merge_slashes"] is True
        assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
        assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == (
            "REJECT_REQUEST"
        )
        assert hcm["use_remote_address"] is True
        assert "envoy.filters.http.ext_authz" in _filters(hcm)


XFF_FIELDS = ("use_remote_address", "xff_num_trusted_hops", "skip_xff_append")


@pytest.mark.parametrize("hops", [0, 1, 3])
def test_make_run_treats_x_forwarded_for_as_the_chart_does(hops: int) -> None:
    """`--trusted-proxy-hops` must mean the same under `make run` as in the cluster."""
    rendered = _hcm(_listeners(render({"trustedProxyHops": hops}).envoy_bootstrap)["http"])
    local = gateway_config(
        listen=ListenAddress("127.0.0.1", 8080),
        admin=ListenAddress("127.0.0.1", 9901),
        upstream=ListenAddress("127.0.0.1", 8081),
        authz=ListenAddress("127.0.0.1", 9191),
        trusted_proxy_hops=hops,
    )
    (listener,) = local["static_resources"]["listeners"]
    made = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert {f: made.get(f) for f in XFF_FIELDS} == {f: rendered.get(f) for f in XFF_FIELDS}
    assert made["use_remote_address"] is True


def _routes(bootstrap: Obj) -> dict[str, list[tuple[str, str, str]]]:
    """{domain: [(match kind, prefix, cluster)]} of the http listener, in Envoy's order."""
    vhosts = _hcm(_listeners(bootstrap)["http"])["route_config"]["virtual_hosts"]
    out: dict[str, list[tuple[str, str, str]]] = {}
    for vhost in vhosts:
        (domain,) = vhost["domains"]
        out[domain] = [
            (*next(iter(r["match"].items())), r["route"]["cluster"]) for r in vhost["routes"]
        ]
    return out


def test_routes_group_by_host_longest_prefix_first() -> None:
    assert _routes(render({"routes": scenarios.ROUTES}).envoy_bootstrap) == {
        "api.example.com": [
            ("path_separated_prefix", "/v2/admin", "backend_admin_ops_80"),
            ("path_separated_prefix", "/v2", "backend_api-v2_8080"),
            ("prefix", "/", "backend_api_8080"),
        ],
        "*.shop.example.com": [("prefix", "/cart/", "backend_cart_9000")],
        "*": [("prefix", "/", "backend_fallback_80")],
    }


def test_no_routes_means_no_virtual_hosts() -> None:
    assert _routes(render().envoy_bootstrap) == {}


def _cluster_addresses(values: dict[str, Any]) -> dict[str, tuple[str, int]]:
    clusters = render(values).envoy_bootstrap["static_resources"]["clusters"]
    out: dict[str, tuple[str, int]] = {}
    for cluster in clusters:
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
            "address"
        ]
        if "socket_address" in address:
            socket_address = address["socket_address"]
            out[cluster["name"]] = (socket_address["address"], socket_address["port_value"])
    return out


def test_backends_are_services_in_the_release_or_a_named_namespace() -> None:
    addresses = _cluster_addresses({"routes": scenarios.ROUTES, "clusterDomain": "k8s.internal"})
    assert addresses == {
        "envoy_admin": ("127.0.0.1", 19000),
        "backend_api_8080": (f"api.{NAMESPACE}.svc.k8s.internal", 8080),
        "backend_admin_ops_80": ("admin.ops.svc.k8s.internal", 80),
        "backend_api-v2_8080": (f"api-v2.{NAMESPACE}.svc.k8s.internal", 8080),
        "backend_cart_9000": (f"cart.{NAMESPACE}.svc.k8s.internal", 9000),
        "backend_fallback_80": (f"fallback.{NAMESPACE}.svc.k8s.internal", 80),
    }


def test_ready_listener_exposes_only_ready_and_stats() -> None:
    ready = _hcm(_listeners(render().envoy_bootstrap)["ready"])
    health = _filters(ready)["envoy.filters.http.health_check"]
    assert health["pass_through_mode"] is False
    assert health["headers"] == [{"name": ":path", "string_match": {"exact": "/ready"}}]
    (vhost,) = ready["route_config"]["virtual_hosts"]
    assert vhost["routes"] == [
        {"match": {"path": "/stats/prometheus"}, "route": {"cluster": "envoy_admin"}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
    ]


def test_https_listener_reads_certificates_through_sds_files() -> None:
    rendered = render(scenarios.MTLS)
    listeners = _listeners(rendered.envoy_bootstrap)
    assert listeners["https"]["address"]["socket_address"]["port_value"] == 8443
    tls_context = listeners["https"]["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls_context["require_client_certificate"] is True
    common = tls_context["common_tls_context"]
    assert common["alpn_protocols"] == ["h2", "http/1.1"]
    (server_cert,) = common["tls_certificate_sds_secret_configs"]
    server_sds = server_cert["sds_config"]["path_config_source"]["path"]
    client_sds = common["validation_context_sds_secret_config"]["sds_config"]["path_config_source"][
        "path"
    ]
    data = rendered.configmap_data("gw-authz-envoy")
    assert server_sds == "/etc/envoy/sds-server-cert.yaml"
    server_doc = yaml.safe_load(data["sds-server-cert.yaml"])["resources"][0]
    assert server_doc["tls_certificate"]["watched_directory"] == {"path": "/etc/envoy-tls"}
    assert client_sds == "/etc/envoy/sds-client-ca.yaml"
    client_doc = yaml.safe_load(data["sds-client-ca.yaml"])["resources"][0]
    assert client_doc["validation_context"]["trusted_ca"] == {
        "filename": "/etc/envoy-client-ca/ca.crt"
    }
    # Plain HTTP keeps serving through ext_authz when the redirect is turned off.
    assert "envoy.filters.http.ext_authz" in _filters(_hcm(listeners["http"]))


def test_plain_http_redirects_when_https_is_on() -> None:
    listeners = _listeners(render(scenarios.TLS).envoy_bootstrap)
    hcm = _hcm(listeners["http"])
    (vhost,) = hcm["route_config"]["virtual_hosts"]
    assert vhost["routes"] == [{"match": {"prefix": "/"}, "redirect": {"https_redirect": True}}]
    moved = render({**scenarios.TLS, "service": {"ports": {"https": 8443}}}).envoy_bootstrap
    (vhost,) = _hcm(_listeners(moved)["http"])["route_config"]["virtual_hosts"]
    assert vhost["routes"][0]["redirect"] == {"https_redirect": True, "port_redirect": 8443}


def test_access_log_leaves_out_query_strings_and_credentials() -> None:
    hcm = _hcm(_listeners(render().envoy_bootstrap)["http"])
    (log,) = hcm["access_log"]
    fields = log["typed_config"]["log_format"]["json_format"]
    assert fields["path"] == "%PATH(NQ:ORIG)%"
    rendered = yaml.safe_dump(fields).lower()
    assert "authorization" not in rendered
    assert "cookie" not in rendered
    off = _hcm(_listeners(render({"envoy": {"accessLog": False}}).envoy_bootstrap)["http"])
    assert "access_log" not in off
