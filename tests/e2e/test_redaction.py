"""Response protection end to end: the real Envoy with ext_authz and ext_proc in front of a
JSON upstream, the sidecar serving both (ext_proc on --ext-proc-listen beside the h2 engine).

Fields are masked for a token without the waiving scope and visible with it; arrays, recursive
paths and removal work; gzip never carries an unmasked value; what cannot be redacted (not
JSON, compressed, too large, malformed, too deep) is a 502 with a decision-log entry; a route
without redaction is byte-identical; query rewrites reach the upstream."""

from __future__ import annotations

import gzip
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from authz.workers.pool import worker_listen
from tests.support.envoy import Envoy, start_envoy
from tests.support.http import Response, request
from tests.support.jsonupstream import PUBLIC_BODY
from tests.support.keys import SigningKey, claims, jwks, rsa_key
from tests.support.policies import auth_policy, issuer, rule, to_yaml
from tests.support.procs import PYTHON, Proc, free_port, start_http_dir, start_sidecar
from tests.support.wait import wait_for

HOST = "shop.test"
MAX_BODY = 65536


def policy(jwks_url: str) -> str:
    redact = {
        "redact": [
            {"paths": ["$.ssn", "$.cards[*].number"], "unlessScopes": ["pii:read"]},
            {"paths": ["$..password"], "action": "remove"},
        ]
    }
    return to_yaml(
        auth_policy(
            "shop",
            namespace="e2e",
            hosts=[HOST],
            issuers=[issuer(jwks_uri=jwks_url)],
            rules=[
                rule(
                    "customers",
                    paths=["/customers/**"],
                    scopes=["customers:read"],
                    responseBody=redact,
                ),
                rule(
                    "loose",
                    paths=["/loose/**"],
                    anonymous=True,
                    responseBody={"redact": [{"paths": ["$.ssn"]}], "onUnparseable": "passThrough"},
                ),
                rule("public", paths=["/public"], anonymous=True),
                rule("plain", paths=["/plain/**"], scopes=["customers:read"]),
            ],
            response={
                "removeHeaders": ["authorization"],
                "removeQueryParameters": ["api_key"],
                "setQueryParameters": [{"name": "tenant", "claim": "tenant_id"}],
            },
        )
    )


@dataclass
class Stack:
    tmp: Path
    key: SigningKey
    sidecar: Proc
    envoy: Envoy
    procs: list[Proc]

    def get(self, path: str, *, scope: str = "customers:read", **kwargs: object) -> Response:
        token = self.key.sign(claims(scope=scope, sub="ada", tenant_id="acme"))
        return request(self.envoy.url, path, host=HOST, token=token, **kwargs)  # type: ignore[arg-type]

    def streams(self) -> int:
        """ext_proc streams Envoy has opened so far."""
        url = f"http://127.0.0.1:{self.envoy.admin_port}/stats?filter=ext_proc.streams_started"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return sum(int(line.rpartition(" ")[2]) for line in text.splitlines() if line)

    def decision_lines(self) -> list[dict[str, object]]:
        return [
            json.loads(line)
            for line in self.sidecar.output().splitlines()
            if line.startswith("{") and '"decision_id"' in line
        ]


def start_upstream(tmp: Path) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc(
        "json-upstream",
        [PYTHON, "-m", "tests.support.jsonupstream", "--port", str(port)],
        log=tmp / "json-upstream.log",
    )
    proc.wait_http(f"http://127.0.0.1:{port}/ready")
    return proc, port


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("redaction-e2e")
    key = rsa_key("redact-1")
    keys_dir = tmp / "jwks"
    keys_dir.mkdir()
    (keys_dir / "jwks.json").write_text(json.dumps(jwks(key)))
    jwks_server, jwks_port = start_http_dir(tmp, keys_dir, name="jwks-server")
    policies = tmp / "policies"
    policies.mkdir()
    (policies / "shop.yaml").write_text(policy(f"http://127.0.0.1:{jwks_port}/jwks.json"))
    ext_proc = f"127.0.0.1:{free_port()}"
    sidecar, grpc, _ = start_sidecar(
        tmp,
        [policies],
        extra=("--ext-proc-listen", ext_proc, "--response-body-max-bytes", str(MAX_BODY)),
    )
    upstream, upstream_port = start_upstream(tmp)
    envoy = start_envoy(tmp, authz=grpc, upstream_port=upstream_port, ext_proc=ext_proc)
    yield Stack(tmp, key, sidecar, envoy, [jwks_server, upstream])
    envoy.terminate()
    sidecar.terminate()
    for proc in [jwks_server, upstream]:
        proc.terminate()


def test_fields_masked_without_the_scope_and_visible_with_it(stack: Stack) -> None:
    masked = stack.get("/customers/c7")
    assert masked.status == 200, masked.body
    body = masked.json()
    assert body["ssn"] == "***"
    assert [c["number"] for c in body["cards"]] == ["***", "***"]
    assert [c["brand"] for c in body["cards"]] == ["visa", "mc"]
    assert body["profile"] == {"login": {"user": "ada"}}  # $..password removed at every depth
    assert body["id"] == "c7"
    assert body["name"] == "Ada"
    assert int(masked.headers["content-length"]) == len(masked.body)

    visible = stack.get("/customers/c7", scope="customers:read pii:read").json()
    assert visible["ssn"] == "123-45-6789"
    assert visible["cards"][0]["number"] == "4111111111111111"
    assert "password" not in json.dumps(visible)  # removal has no waiving scope


def test_query_parameters_rewritten_at_the_upstream(stack: Stack) -> None:
    body = stack.get("/customers/c1?api_key=s3cret&tenant=evil&x=1&api%5Fkey=again").json()
    # Envoy rebuilds the query from its parsed form, in its own order
    assert sorted(body["query"].split("&")) == ["tenant=acme", "x=1"]


def test_gzip_is_never_an_unmasked_value(stack: Stack) -> None:
    negotiated = stack.get("/customers/negotiated", headers={"Accept-Encoding": "gzip"})
    assert negotiated.status == 200
    body = (
        gzip.decompress(negotiated.body)
        if negotiated.headers.get("content-encoding") == "gzip"
        else negotiated.body
    )
    data = json.loads(body)
    assert data["ssn"] == "***"
    assert data["accept_encoding"] == ""  # removed on the way to the upstream
    forced = stack.get("/customers/gzip", headers={"Accept-Encoding": "gzip"})
    assert forced.status == 502
    assert forced.json()["error"] == "response_unparseable"
    assert b"123-45-6789" not in forced.body


@pytest.mark.parametrize(
    "path",
    [
        "/customers/text",
        "/customers/malformed",
        "/customers/big",
        "/customers/deep",
        "/customers/chunked?pad=100000",  # over the limit, without content-length
    ],
)
def test_unparseable_responses_fail_closed_with_a_decision_log_entry(
    stack: Stack, path: str
) -> None:
    response = stack.get(path)
    assert response.status == 502, response.body
    assert b"123-45-6789" not in response.body
    body = response.json()
    assert body["error"] == "response_unparseable"
    decision_id = response.headers["x-authz-decision-id"]
    assert body["decision_id"] == decision_id

    def logged() -> bool:
        return any(line["decision_id"] == decision_id for line in stack.decision_lines())

    wait_for(logged, what=f"decision log line {decision_id}")
    line = next(line for line in stack.decision_lines() if line["decision_id"] == decision_id)
    assert (line["reason"], line["status"], line["rule"]) == (
        "response_unparseable",
        502,
        "customers",
    )


def test_chunked_body_is_buffered_and_redacted(stack: Stack) -> None:
    response = stack.get("/customers/chunked")
    assert response.status == 200
    assert response.json()["ssn"] == "***"


def test_denials_and_empty_responses_pass_the_response_filter_intact(stack: Stack) -> None:
    denied = stack.get("/customers/c1", scope="orders:read")
    assert denied.status == 403
    assert denied.json()["error"] == "insufficient_scope"
    anonymous = request(stack.envoy.url, "/customers/c1", host=HOST)
    assert anonymous.status == 401
    assert "www-authenticate" in anonymous.headers
    empty = stack.get("/customers/empty")
    assert (empty.status, empty.body) == (204, b"")


def test_pass_through_rule_lets_unparseable_bodies_by(stack: Stack) -> None:
    response = request(stack.envoy.url, "/loose/text", host=HOST)
    assert (response.status, response.body) == (200, b"ssn=123-45-6789")


def test_route_without_redaction_is_byte_identical(stack: Stack) -> None:
    response = request(stack.envoy.url, "/public", host=HOST)
    assert (response.status, response.body) == (200, PUBLIC_BODY)


def test_requests_without_redaction_open_no_ext_proc_stream(stack: Stack) -> None:
    before = stack.streams()
    plain = stack.get("/plain/p1", headers={"X-Authz-Ext-Proc": "no"})
    assert plain.status == 200
    assert plain.json()["ssn"] == "123-45-6789"  # no responseBody on this rule
    assert plain.json()["ext_proc_marker"] == ""  # Envoy's marker never reaches the upstream
    assert request(stack.envoy.url, "/public", host=HOST).status == 200
    assert stack.streams() == before
    assert stack.get("/customers/c1").json()["ssn"] == "***"
    assert stack.streams() == before + 1


def test_a_forged_skip_marker_does_not_skip_redaction(stack: Stack) -> None:
    for scope in ("customers:read", "customers:read pii:read"):
        before = stack.streams()
        forged = stack.get("/customers/c1", scope=scope, headers={"x-authz-ext-proc": "skip"})
        assert forged.status == 200
        assert "password" not in json.dumps(forged.json())
        assert forged.json()["ext_proc_marker"] == ""
        assert stack.streams() == before + 1


def test_grpcio_engine_serves_ext_proc_on_the_check_listener(tmp_path: Path, stack: Stack) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "shop.yaml").write_text((stack.tmp / "policies" / "shop.yaml").read_text())
    sidecar, grpc, _ = start_sidecar(tmp_path, [policies], extra=("--grpc-server", "grpcio"))
    upstream, port = start_upstream(tmp_path)
    try:
        envoy = start_envoy(tmp_path, authz=grpc, upstream_port=port, ext_proc=grpc)
        try:
            token = stack.key.sign(claims(scope="customers:read", tenant_id="acme"))
            response = request(envoy.url, "/customers/c2", host=HOST, token=token)
            assert response.status == 200, response.body
            assert response.json()["ssn"] == "***"
        finally:
            envoy.terminate()
    finally:
        sidecar.terminate()
        upstream.terminate()


def test_with_workers_the_supervisor_serves_ext_proc(tmp_path: Path, stack: Stack) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "shop.yaml").write_text((stack.tmp / "policies" / "shop.yaml").read_text())
    listen = f"unix:{tmp_path}/authz.sock"
    ext_proc = f"unix:{tmp_path}/ext-proc.sock"
    sidecar, _, _ = start_sidecar(
        tmp_path,
        [policies],
        grpc_listen=listen,
        extra=("--workers", "2", "--ext-proc-listen", ext_proc),
    )
    upstream, port = start_upstream(tmp_path)
    try:
        workers = [worker_listen(listen, i) for i in range(2)]
        envoy = start_envoy(tmp_path, authz=workers, upstream_port=port, ext_proc=ext_proc)
        try:
            token = stack.key.sign(claims(scope="customers:read", tenant_id="acme"))
            for _ in range(4):  # both workers answer checks; one process redacts
                response = request(envoy.url, "/customers/c3", host=HOST, token=token)
                assert response.status == 200, response.body
                assert response.json()["ssn"] == "***"
        finally:
            envoy.terminate()
    finally:
        sidecar.terminate()
        upstream.terminate()
