"""The rendered gateway, served by the real Envoy: what a request meets on its way in.

Envoy runs with the container's own arguments on the rendered bootstrap (volume mounts laid out
locally, see envoy_harness). On the Unix socket, in place of the sidecar, a gRPC stand-in answers
ext_authz Check with allow, or deny for paths containing /denied. Two things are changed in the
bootstrap: DNS (each backend Service's address becomes a local HTTP server named after the
cluster, so a response tells which route was taken) and port numbers (picked by the kernel, so
concurrent runs on one machine cannot collide).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from tests.deploy import scenarios
from tests.deploy.chart import flag, merge, render
from tests.deploy.envoy_harness import (
    EnvoyProcess,
    TlsMaterial,
    materialize,
    remove_tree,
    rewrite_paths,
    short_tmpdir,
    tls_material,
    write_secret_volume,
)
from tests.support.wait import wait_for

# CheckResponse{status: {code: OK}} and CheckResponse{status: {code: PERMISSION_DENIED}}, encoded
# by hand: the stand-in needs no generated code.
ALLOW = b"\x0a\x00"
DENY = b"\x0a\x02\x08\x07"
# ProcessingResponse{request_headers: {}, mode_override: {response_header_mode: SKIP,
# response_trailer_mode: SKIP}}: what the sidecar answers for a route without redaction; and
# ProcessingResponse{response_headers: {}} for a local reply (a denial, a refused path), whose
# response headers reach ext_proc without request headers. Keyed by the ProcessingRequest's
# first tag (Envoy writes fields in number order: the request kind comes first).
PROCESS_ANSWERS = {0x12: b"\x0a\x00\x4a\x04\x10\x02\x30\x02", 0x1A: b"\x12\x00"}


class FakeAuthz:
    """ext_authz Check on a Unix socket; keeps the raw CheckRequest bytes it received. With
    `ext_proc`, ext_proc Process on that socket too, skipping every response."""

    def __init__(self, address: str, *, ext_proc: str | None = None) -> None:
        self.requests: list[bytes] = []
        self.processed = 0
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8))
        handler = grpc.method_handlers_generic_handler(
            "envoy.service.auth.v3.Authorization",
            {"Check": grpc.unary_unary_rpc_method_handler(self._check)},
        )
        process = grpc.method_handlers_generic_handler(
            "envoy.service.ext_proc.v3.ExternalProcessor",
            {"Process": grpc.stream_stream_rpc_method_handler(self._process)},
        )
        self._server.add_generic_rpc_handlers((handler, process))
        self._server.add_insecure_port(address)
        if ext_proc is not None:
            self._server.add_insecure_port(ext_proc)
        self._server.start()

    def _check(self, request: bytes, _context: Any) -> bytes:
        self.requests.append(request)
        return DENY if b"/denied" in request else ALLOW

    def _process(self, requests: Iterator[bytes], _context: Any) -> Iterator[bytes]:
        for request in requests:
            self.processed += 1
            yield PROCESS_ANSWERS[request[0]]

    def stop(self) -> None:
        self._server.stop(grace=None)


class Backend:
    """An HTTP server standing for one backend Service; answers with its cluster name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits: list[str] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.hits.append(self.path)
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    headers: dict[str, str]


@dataclass
class Gateway:
    envoy: EnvoyProcess
    root: Path
    ports: dict[str, int]
    backends: dict[str, Backend]
    authz: FakeAuthz | None
    tls: TlsMaterial
    extra: list[Any] = field(default_factory=list)

    def hits(self) -> int:
        return sum(len(b.hits) for b in self.backends.values())

    def request(
        self,
        path: str,
        *,
        host: str = "api.example.com",
        headers: dict[str, str] | None = None,
        port: str = "http",
        tls_client: ssl.SSLContext | None = None,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[port], timeout=10)
        if tls_client is not None:
            raw = socket.create_connection(("127.0.0.1", self.ports[port]), timeout=10)
            conn.sock = tls_client.wrap_socket(raw, server_hostname=host.split(":")[0])
        try:
            conn.request("GET", path, headers={"Host": host, **(headers or {})})
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            return Response(response.status, body, {k.lower(): v for k, v in response.getheaders()})
        finally:
            conn.close()

    def stop(self) -> None:
        self.envoy.stop()
        if self.authz is not None:
            self.authz.stop()
        for backend in self.backends.values():
            backend.stop()
        remove_tree(self.root)


def _prepare_bootstrap(config: Path) -> dict[str, Backend]:
    """Point each backend cluster at a local server, and let the kernel pick the listeners' ports,
    so parallel test runs never collide; they are read back from the admin API. The admin port is
    chosen here: the envoy_admin cluster (behind /stats/prometheus) must know it."""
    bootstrap = yaml.safe_load(config.read_text())
    backends: dict[str, Backend] = {}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        admin_port = probe.getsockname()[1]
    bootstrap["admin"]["address"]["socket_address"]["port_value"] = admin_port
    for cluster in bootstrap["static_resources"]["clusters"]:
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        if cluster["name"] == "envoy_admin":
            endpoint["address"]["socket_address"]["port_value"] = admin_port
        if not cluster["name"].startswith("backend_"):
            continue
        backend = Backend(cluster["name"].removeprefix("backend_"))
        backends[backend.name] = backend
        endpoint["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": backend.port}
    for listener in bootstrap["static_resources"]["listeners"]:
        listener["address"]["socket_address"]["port_value"] = 0
    config.write_text(yaml.safe_dump(bootstrap))
    return backends


def _bound_ports(root: Path) -> dict[str, int] | None:
    """{listener name or "admin": port} once Envoy has bound them all, else None."""
    address_file = root / "admin-address"
    if not address_file.exists() or not address_file.read_text().strip():
        return None
    host, _, admin = address_file.read_text().strip().rpartition(":")
    conn = http.client.HTTPConnection(host, int(admin), timeout=5)
    try:
        conn.request("GET", "/listeners?format=json")
        statuses = json.loads(conn.getresponse().read())["listener_statuses"]
    finally:
        conn.close()
    ports = {
        status["name"]: status["local_address"]["socket_address"].get("port_value", 0)
        for status in statuses
    }
    if not ports or 0 in ports.values():
        return None
    return {**ports, "admin": int(admin)}


def start_gateway(values: dict[str, Any], *, tls: TlsMaterial, with_authz: bool = True) -> Gateway:
    rendered = render(merge({"routes": scenarios.ROUTES}, values))
    root = short_tmpdir()
    materialized = materialize(rendered, root, secrets=tls.secrets())
    backends = _prepare_bootstrap(materialized.config_path)
    authz = None
    if with_authz:
        listen = flag(rendered.container("authz"), "--grpc-listen")
        ext_proc = flag(rendered.container("authz"), "--ext-proc-listen")
        assert listen is not None
        authz = FakeAuthz(
            rewrite_paths(listen, materialized.mounts),
            ext_proc=rewrite_paths(ext_proc, materialized.mounts) if ext_proc else None,
        )
    envoy = EnvoyProcess(
        materialized,
        log=root / "envoy.log",
        extra_args=["--admin-address-path", str(root / "admin-address")],
    )
    gateway = Gateway(envoy, root, {}, backends, authz, tls)

    def ready() -> bool:
        ports = gateway.ports or _bound_ports(root)
        if not ports:
            return False
        gateway.ports.update(ports)
        return gateway.request("/ready", port="ready").status == 200

    try:
        wait_for(
            ready,
            what="envoy ready",
            ignore=(OSError,),
            unless=lambda: None if envoy.proc.poll() is None else "envoy exited",
        )
    except AssertionError as exc:
        output = envoy.output()
        gateway.stop()
        pytest.fail(f"{exc}:\n{output}")
    return gateway


@pytest.fixture(scope="module")
def tls() -> TlsMaterial:
    return tls_material()


@pytest.fixture(scope="module")
def gateway(tls: TlsMaterial) -> Iterator[Gateway]:
    gw = start_gateway({}, tls=tls)
    yield gw
    gw.stop()


@pytest.mark.parametrize(
    ("host", "path", "backend"),
    [
        ("api.example.com", "/", "api_8080"),
        ("api.example.com", "/v2", "api-v2_8080"),
        ("api.example.com", "/v2/items", "api-v2_8080"),
        ("api.example.com", "/v2x", "api_8080"),
        ("api.example.com", "/v2/admin/users", "admin_ops_80"),
        ("api.example.com:8443", "/v2/items", "api-v2_8080"),
        ("eu.shop.example.com", "/cart/1", "cart_9000"),
        ("elsewhere.example.org", "/v2/items", "fallback_80"),
    ],
)
def test_requests_reach_the_route_s_service(
    gateway: Gateway, host: str, path: str, backend: str
) -> None:
    assert gateway.authz is not None
    processed = gateway.authz.processed
    response = gateway.request(path, host=host)
    assert (response.status, response.body) == (200, backend)
    assert gateway.backends[backend].hits[-1] == path
    # ext_proc saw the request headers only: the mode override skipped the response
    assert gateway.authz.processed == processed + 1


def test_paths_are_normalized_before_the_decision(gateway: Gateway) -> None:
    assert gateway.authz is not None
    for raw in ("/v2/./items/../orders", "//v2//orders", "/v2/items/%2e%2e/orders"):
        before = len(gateway.authz.requests)
        response = gateway.request(raw)
        assert (response.status, response.body) == (200, "api-v2_8080"), raw
        assert gateway.backends["api-v2_8080"].hits[-1] == "/v2/orders"
        # The sidecar decided on the same path the backend got.
        (check,) = gateway.authz.requests[before:]
        assert b"/v2/orders" in check
        assert raw.encode() not in check


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v2%2Fadmin/users", {}),
        ("/v2%5Cadmin", {}),
        ("/v2/items", {"x_user": "admin"}),
    ],
)
def test_ambiguous_requests_are_refused_before_the_decision(
    gateway: Gateway, path: str, headers: dict[str, str]
) -> None:
    assert gateway.authz is not None
    checks, hits = len(gateway.authz.requests), gateway.hits()
    try:
        status: int | None = gateway.request(path, headers=headers).status
    except http.client.RemoteDisconnected:
        status = None
    if headers:
        # An HTTP/1 protocol error (an underscore in a header name) ends the connection while
        # ext_proc is still asked about the local 400: the client sees the connection close.
        assert status in (400, None)
    else:
        assert status == 400
    assert (len(gateway.authz.requests), gateway.hits()) == (checks, hits)


def test_denied_requests_never_reach_a_backend(gateway: Gateway) -> None:
    hits = gateway.hits()
    assert gateway.request("/denied").status == 403
    assert gateway.hits() == hits


def test_ready_port_serves_readiness_and_stats_only(gateway: Gateway) -> None:
    assert gateway.request("/ready", port="ready").status == 200
    stats = gateway.request("/stats/prometheus", port="ready")
    assert stats.status == 200
    assert "envoy_cluster_upstream_rq" in stats.body
    for admin_only in ("/clusters", "/config_dump", "/quitquitquit", "/healthcheck/fail"):
        assert gateway.request(admin_only, port="ready").status == 404, admin_only
    # The admin interface itself answers on loopback only.
    with socket.create_connection(("127.0.0.1", gateway.ports["admin"]), timeout=5):
        pass
    bootstrap = yaml.safe_load((gateway.root / "envoy-config" / "envoy.yaml").read_text())
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_fails_closed_when_the_sidecar_is_not_there(tls: TlsMaterial) -> None:
    gw = start_gateway({}, tls=tls, with_authz=False)
    try:
        response = gw.request("/v2/items")
        assert response.status == 503
        assert gw.hits() == 0
    finally:
        gw.stop()


def _client_context(tls: TlsMaterial, *, with_certificate: bool, root: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=tls.ca.cert.decode())
    if with_certificate:
        cert, key = root / "client.crt", root / "client.key"
        cert.write_bytes(tls.client.cert)
        key.write_bytes(tls.client.key)
        context.load_cert_chain(cert, key)
    return context


def test_https_with_certificate_from_the_secret_and_http_redirect(tls: TlsMaterial) -> None:
    gw = start_gateway(scenarios.TLS, tls=tls)
    try:
        redirect = gw.request("/v2/items?q=1")
        assert redirect.status == 301
        assert redirect.headers["location"] == "https://api.example.com/v2/items?q=1"
        assert gw.hits() == 0
        client = _client_context(tls, with_certificate=False, root=gw.root)
        response = gw.request("/v2/items", port="https", tls_client=client)
        assert (response.status, response.body) == (200, "api-v2_8080")
        assert _served_certificate(gw) == ssl.PEM_cert_to_DER_cert(tls.server.cert.decode())
        # The Secret is renewed (as cert-manager would): Envoy serves the new certificate.
        renewed = tls_material()
        write_secret_volume(gw.root / "envoy-tls", renewed.secrets()["gateway-tls"], generation=1)
        expected = ssl.PEM_cert_to_DER_cert(renewed.server.cert.decode())
        wait_for(lambda: _served_certificate(gw) == expected, what="the renewed certificate")
    finally:
        gw.stop()


def _served_certificate(gw: Gateway) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", gw.ports["https"]), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="api.example.com") as tls_socket,
    ):
        der = tls_socket.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_mutual_tls_passes_the_client_certificate_to_the_sidecar(tls: TlsMaterial) -> None:
    gw = start_gateway(scenarios.MTLS, tls=tls)
    try:
        assert gw.authz is not None
        anonymous = _client_context(tls, with_certificate=False, root=gw.root)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            gw.request("/v2/items", port="https", tls_client=anonymous)
        assert gw.authz.requests == []
        client = _client_context(tls, with_certificate=True, root=gw.root)
        response = gw.request("/v2/items", port="https", tls_client=client)
        assert (response.status, response.body) == (200, "api-v2_8080")
        (check,) = gw.authz.requests
        # include_peer_certificate: the URL-encoded PEM of the client certificate.
        assert b"-----BEGIN%20CERTIFICATE-----" in check
        # With the redirect off, plain HTTP is served too, through the same decision.
        assert gw.request("/v2/items").status == 200
        assert len(gw.authz.requests) == 2
    finally:
        gw.stop()
