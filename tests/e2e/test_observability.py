"""End to end through the real Envoy, with Envoy tracing too: traces, metrics, decision logs,
explain, dry-run - and no credential in any output of the whole run.

Envoy (OpenTelemetry tracer) and the sidecar (OTLP exporter) both export to one real OTLP/gRPC
receiver, so the test sees the sidecar's span continue Envoy's trace under Envoy's own
ext_authz span. The sidecar runs at debug log level; the last test greps every line any
process wrote for the tokens, cookies and query strings the run used.
"""

from __future__ import annotations

import json
import platform
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authz.devtools.envoyconf import gateway_config
from authz.server.listen import ListenAddress, parse_listen
from authz.server.servicer import CHECK_SPAN
from tests.e2e.gateway import HOST, orders_policy
from tests.support.envoy import envoy_binary
from tests.support.http import Response, request
from tests.support.keys import SigningKey, claims, jwks, rsa_key
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.policies import auth_policy, issuer, rule, to_yaml
from tests.support.procs import (
    PYTHON,
    ROOT,
    Proc,
    free_port,
    start_echo,
    start_http_dir,
    start_sidecar,
)
from tests.support.wait import wait_for

TRIAL = "trial.test"
LIMITED = "limited.test"
CLIENT_TRACE = "5b8efff798038103d269b633813fc60c"
CLIENT_SPAN = "eee19b7ec3c1b174"
QUERY_SECRET = "qs-secret-0b7d"
COOKIE_SECRET = "cookie-secret-91f2"


def extra_policies(jwks_url: str) -> str:
    trial = auth_policy(
        "trial",
        namespace="shop",
        mode="dryRun",
        hosts=[TRIAL],
        issuers=[issuer(name="https://issuer.test", jwks_uri=jwks_url)],
        rules=[rule("admin", paths=["/admin/**"], scopes=["admin"])],
        response={"setHeaders": [{"name": "x-user-id", "claim": "sub"}]},
    )
    everyone = {"name": "everyone", "requests": 2, "window": "1h", "key": "global"}
    limited = auth_policy(
        "limited",
        namespace="shop",
        hosts=[LIMITED],
        rules=[rule("ping", anonymous=True, rateLimits=[everyone])],
    )
    return "---\n" + to_yaml(trial, limited)


@dataclass
class Stack:
    tmp: Path
    key: SigningKey
    receiver: OtlpReceiver
    sidecar: Proc
    http_port: int
    admin: str
    jwks_port: int
    envoy: Proc
    url: str
    procs: list[Proc] = field(default_factory=list)

    def get(self, path: str, *, host: str = HOST, **kwargs: Any) -> Response:
        return request(self.url, path, host=host, **kwargs)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.headers["content-type"].startswith("text/plain")
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def decision_line(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The last decision log line that matches; the log is written every 50 ms, so wait."""
        found = wait_for(
            lambda: [x for x in self.decision_lines() if match(x)], what="a matching decision line"
        )
        return found[-1]

    def decision_lines(self) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for line in self.sidecar.output().splitlines()
            if line.startswith('{"time"')
        ]


def envoy_with_tracing(
    tmp: Path, *, authz: str, upstream_port: int, otlp_port: int
) -> tuple[Proc, str]:
    """The gateway configuration `make run` uses, plus Envoy's OpenTelemetry tracer."""
    port, admin_port = free_port(), free_port()
    config = gateway_config(
        listen=ListenAddress("127.0.0.1", port),
        admin=ListenAddress("127.0.0.1", admin_port),
        upstream=ListenAddress("127.0.0.1", upstream_port),
        authz=parse_listen(authz, flag="authz"),
    )
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm["typed_config"]["tracing"] = {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": "otlp"}, "timeout": "2s"},
                "service_name": "envoy",
            },
        }
    }
    config["static_resources"]["clusters"].append(
        {
            "name": "otlp",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": "otlp",
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {
                                            "address": "127.0.0.1",
                                            "port_value": otlp_port,
                                        }
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
        }
    )
    # Export every span at once instead of every 5 s.
    config["layered_runtime"] = {
        "layers": [
            {
                "name": "static",
                "static_layer": {
                    "tracing.opentelemetry.min_flush_spans": 1,
                    "tracing.opentelemetry.flush_interval_ms": 200,
                },
            }
        ]
    }
    path = tmp / "envoy-tracing.json"
    path.write_text(json.dumps(config))
    proc = Proc(
        "envoy",
        [
            envoy_binary(),
            "-c",
            str(path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "info",
        ],
        log=tmp / "envoy.log",
    )
    proc.wait_http(f"http://127.0.0.1:{admin_port}/ready")
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("observability")
    key = rsa_key("obs-1")
    receiver = OtlpReceiver()
    procs: list[Proc] = []
    try:
        keys_dir = tmp / "jwks"
        keys_dir.mkdir()
        (keys_dir / "jwks.json").write_text(json.dumps(jwks(key)))
        jwks_server, jwks_port = start_http_dir(tmp, keys_dir, name="jwks-server")
        procs.append(jwks_server)
        jwks_url = f"http://127.0.0.1:{jwks_port}/jwks.json"
        policies = tmp / "policies"
        policies.mkdir()
        (policies / "all.yaml").write_text(orders_policy(jwks_url) + extra_policies(jwks_url))
        admin = f"127.0.0.1:{free_port()}"
        sidecar, grpc, http_port = start_sidecar(
            tmp,
            [policies],
            extra=["--admin-listen", admin, "--log-level", "debug"],
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_SERVICE_NAME": "authz",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            },
        )
        procs.append(sidecar)
        echo, echo_port = start_echo(tmp)
        procs.append(echo)
        envoy, url = envoy_with_tracing(
            tmp, authz=grpc, upstream_port=echo_port, otlp_port=receiver.port
        )
        procs.append(envoy)
        yield Stack(tmp, key, receiver, sidecar, http_port, admin, jwks_port, envoy, url, procs)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        receiver.stop()


def sidecar_span(stack: Stack, decision_id: str) -> ReceivedSpan:
    (span,) = stack.receiver.wait_for(
        lambda s: s.name == CHECK_SPAN and s.attributes.get("authz.decision_id") == decision_id
    )
    return span


def test_the_sidecar_span_continues_envoys_trace_under_envoys_ext_authz_span(
    stack: Stack,
) -> None:
    token = stack.key.sign(claims(scope="orders:write"))
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    response = stack.get(
        "/orders/1",
        method="DELETE",
        token=token,
        headers={"traceparent": traceparent, "cookie": f"sid={COOKIE_SECRET}"},
    )
    assert response.status == 403
    decision_id = response.json()["decision_id"]
    assert response.headers["x-authz-decision-id"] == decision_id

    span = sidecar_span(stack, decision_id)
    assert span.service == "authz"
    assert span.trace_id == CLIENT_TRACE  # Envoy continued the client's trace, and so did we
    envoy_spans = stack.receiver.wait_for(
        lambda s: s.service == "envoy" and s.trace_id == CLIENT_TRACE, count=2
    )
    parent = [s for s in envoy_spans if s.span_id == span.parent_span_id]
    assert parent, (span, envoy_spans)  # our parent is Envoy's own ext_authz call span
    assert parent[0].parent_span_id != ""  # ...itself under Envoy's ingress span
    assert span.attributes["authz.reason"] == "access_denied"
    assert span.attributes["http.request.method"] == "DELETE"
    assert span.attributes["url.path"] == "/orders/1"
    assert span.attributes["server.address"] == HOST


def test_a_request_without_trace_context_gets_envoys_trace(stack: Stack) -> None:
    token = stack.key.sign(claims(scope="orders:read"))
    response = stack.get(f"/orders/2?token={QUERY_SECRET}", token=token)
    assert response.status == 200, response.body
    line = stack.decision_line(lambda x: x["path"] == "/orders/2")
    span = sidecar_span(stack, line["decision_id"])
    assert span.trace_id == line["trace_id"]
    assert span.trace_id != CLIENT_TRACE
    envoy = stack.receiver.wait_for(lambda s: s.service == "envoy" and s.trace_id == span.trace_id)
    assert span.parent_span_id in {s.span_id for s in envoy}
    assert "token" not in span.attributes["url.path"]


def test_one_decision_id_in_deny_body_log_line_and_span(stack: Stack) -> None:
    response = stack.get(
        f"/orders/3?api_key={QUERY_SECRET}", headers={"x-forwarded-for": "203.0.113.9"}
    )
    assert response.status == 401
    decision_id = response.json()["decision_id"]
    line = stack.decision_line(lambda x: x["decision_id"] == decision_id)
    assert [x["decision_id"] for x in stack.decision_lines()].count(decision_id) == 1
    assert line["decision"] == "deny"
    assert line["reason"] == "missing_token"
    assert line["status"] == 401
    assert line["policy"] == "shop/orders"
    assert line["rule"] == "read-orders"
    assert line["method"] == "GET"
    assert line["host"] == HOST
    assert line["path"] == "/orders/3"
    assert line["client_ip"] == "127.0.0.1"
    assert line["dry_run"] is False
    assert line["request_id"]  # Envoy's x-request-id, for correlation with Envoy's logs
    assert 0 < line["latency_ms"] < 5000
    assert sidecar_span(stack, decision_id).trace_id == line["trace_id"]


def test_metrics_count_what_happened(stack: Stack) -> None:
    before = stack.scrape()
    token = stack.key.sign(claims(scope="orders:read"))
    for _ in range(3):
        assert stack.get("/orders/9", token=token).status == 200
    assert stack.get("/admin/x", token=token).status == 403
    after = stack.scrape()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    allowed = {
        "policy": "shop/orders",
        "decision": "allow",
        "reason": "allowed",
        "dry_run": "false",
    }
    scope = {**allowed, "decision": "deny", "reason": "insufficient_scope"}
    assert delta("authz_decisions_total", **allowed) == 3
    assert delta("authz_decisions_total", **scope) == 1
    assert delta("authz_check_duration_seconds_count", decision="allow") == 3
    assert delta("authz_check_duration_seconds_count", decision="deny") == 1
    assert after[("authz_policies", (("state", "ready"),))] == 3
    fetched = [k for k in after if k[0] == "authz_jwks_fetch_total"]
    assert (("issuer", f"http://127.0.0.1:{stack.jwks_port}/jwks.json"), ("result", "success")) in [
        k[1] for k in fetched
    ]
    build = [dict(k[1]) for k in after if k[0] == "authz_build_info"]
    assert build == [{"version": "0.1.0", "python_version": platform.python_version()}]
    label_values = {
        v for name, labels in after for _, v in labels if name != "authz_jwks_fetch_total"
    }
    for leaked in ("127.0.0.1", "/orders/9", "/admin/x", "alice"):
        assert leaked not in label_values


def test_dry_run_allows_logs_and_counts_the_would_be_denial(stack: Stack) -> None:
    before = stack.scrape()
    response = stack.get("/admin/users", host=TRIAL, headers={"x-user-id": "root"})
    assert response.status == 200  # allowed although the policy would deny it
    echoed = response.json()["headers"]
    assert "x-user-id" not in echoed  # a client cannot smuggle identity past a dry-run policy
    line = stack.decision_line(lambda x: x["host"] == TRIAL)
    assert line["dry_run"] is True
    assert (line["decision"], line["reason"]) == ("deny", "missing_token")
    after = stack.scrape()
    labels = (
        ("decision", "deny"),
        ("dry_run", "true"),
        ("policy", "shop/trial"),
        ("reason", "missing_token"),
    )
    assert (
        after[("authz_decisions_total", labels)] - before.get(("authz_decisions_total", labels), 0)
        == 1
    )


def explain(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "authz", "explain", "--admin", stack.admin, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_explain_rate_limits_without_consuming_quota(stack: Stack) -> None:
    for _ in range(4):
        result = explain(stack, "GET", f"http://{LIMITED}/ping")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ratelimit  pass" in result.stdout
    statuses = [stack.get("/ping", host=LIMITED).status for _ in range(3)]
    assert statuses == [200, 200, 429]  # explain used none of the 2 requests
    result = explain(stack, "GET", f"http://{LIMITED}/ping")
    assert result.returncode == 1
    assert "DENY 429 rate_limited" in result.stdout


def test_explain_a_token_request_through_the_running_sidecar(stack: Stack) -> None:
    token = stack.key.sign(claims(scope="orders:read"))
    result = explain(stack, "-H", f"authorization: Bearer {token}", "POST", f"http://{HOST}/orders")
    assert result.returncode == 1
    assert "insufficient_scope" in result.stdout
    assert token not in result.stdout


def test_no_credential_appears_in_any_output_of_the_run(stack: Stack) -> None:
    """Runs last: every token, cookie and query string this module sent, grepped everywhere."""
    token = stack.key.sign(claims(scope="orders:read", sub="redaction-check"))
    assert (
        stack.get(
            f"/orders/5?password={QUERY_SECRET}",
            token=token,
            headers={"cookie": f"a={COOKIE_SECRET}"},
        ).status
        == 200
    )
    bad = stack.key.sign(claims(aud="someone-else"))
    assert stack.get("/orders/5", token=bad).status == 401
    assert stack.decision_line(lambda x: x["sub"] == "redaction-check")
    for proc in stack.procs:
        proc.terminate()  # flush everything they had to say
    outputs = {p.name: p.output() for p in stack.procs}
    assert "DEBUG" in outputs["authz"]  # the sidecar really ran at debug level
    forbidden = [QUERY_SECRET, COOKIE_SECRET, "Bearer ey", "eyJhbGciOi", bad.rsplit(".", 1)[1]]
    forbidden += [token, token.rsplit(".", 1)[1]]
    for name in ("authz", "envoy"):
        for secret in forbidden:
            assert secret not in outputs[name], (name, secret)
