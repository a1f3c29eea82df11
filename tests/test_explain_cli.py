"""`authz explain` against a real `authz serve`: the table, the marks, the exit codes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.errors import ConfigError
from authz.explain import build_request
from tests.support.certs import Authority, write_pair
from tests.support.keys import claims, rsa_key
from tests.support.policies import auth_policy, issuer, rule, to_yaml
from tests.support.procs import PYTHON, ROOT, Proc, free_port, start_sidecar

KEY = rsa_key("k1")
POLICY = to_yaml(
    auth_policy(
        "shop",
        namespace="t",
        issuers=[issuer(keys=[KEY])],
        rules=[
            rule("read", methods=["GET"], paths=["/orders/*"], scopes=["orders:read"]),
            rule(
                "customers",
                paths=["/customers/*"],
                responseBody={
                    "redact": [
                        {"paths": ["$.ssn", "$.cards[*].number"], "unlessScopes": ["pii:read"]},
                        {"paths": ["$..password"], "action": "remove"},
                    ]
                },
            ),
        ],
        response={
            "setHeaders": [{"name": "x-user", "claim": "sub"}],
            "removeHeaders": ["authorization"],
        },
    ),
    auth_policy(
        "trial",
        namespace="t",
        mode="dryRun",
        rules=[rule("open", paths=["/public/**"], anonymous=True)],
    ),
)


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("explain")
    (tmp / "policies.yaml").write_text(POLICY)
    address = f"127.0.0.1:{free_port()}"
    proc: Proc
    proc, _grpc, _http = start_sidecar(
        tmp, [tmp / "policies.yaml"], extra=["--admin-listen", address]
    )
    yield address
    proc.terminate()


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "authz", "explain", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONIOENCODING": "utf-8", "PATH": "/usr/bin:/bin"},
    )


def test_an_allowed_request_prints_each_step_and_exits_0(admin: str) -> None:
    token = KEY.sign(claims(sub="alice", scope="orders:read"))
    result = explain(
        "--admin",
        admin,
        "-H",
        f"Authorization: Bearer {token}",
        "GET",
        "https://shop.test/orders/7",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == "GET shop.test/orders/7"
    assert "policy: t/shop    rule: read" in out
    rows = [line.split()[:3] for line in out.splitlines() if line and line[0] in "✔✘○·"]
    assert rows == [
        ["✔", "host", "pass"],
        ["✔", "path", "pass"],
        ["✔", "rule", "pass"],
        ["✔", "token", "pass"],
        ["✔", "scopes", "pass"],
        ["·", "response", "info"],
    ]
    assert "\nALLOW\n" in out
    assert "set header       x-user: alice" in out
    assert "remove header    authorization" in out
    assert token not in out + result.stderr


def test_the_response_fields_a_token_would_see_redacted(admin: str) -> None:
    def redacted(scope: str) -> str:
        token = KEY.sign(claims(scope=scope))
        result = explain(
            "--admin", admin, "-H", f"authorization: Bearer {token}", "GET", "shop.test/customers/1"
        )
        assert result.returncode == 0, result.stderr
        (line,) = [line for line in result.stdout.splitlines() if "redact" in line]
        return line.split("info", 1)[1].strip()

    assert redacted("") == "response fields: mask $.ssn, $.cards[*].number; remove $..password"
    assert redacted("pii:read") == "response fields: remove $..password"


def test_a_denied_request_marks_the_failing_step_and_exits_1(admin: str) -> None:
    token = KEY.sign(claims(scope="orders:write"))
    result = explain(
        "--admin", admin, "-H", f"authorization: Bearer {token}", "GET", "shop.test/orders/7"
    )
    assert result.returncode == 1, result.stderr
    assert "✘  scopes" in result.stdout
    assert "FAIL    needs 'orders:read'" in result.stdout
    assert "DENY 403 insufficient_scope" in result.stdout
    assert token not in result.stdout + result.stderr


def test_a_missing_token_is_explained(admin: str) -> None:
    result = explain("--admin", admin, "GET", "http://shop.test:8080/orders/1?q=1")
    assert result.returncode == 1
    assert "✘  token" in result.stdout
    assert "DENY 401 missing_token" in result.stdout


def test_a_dry_run_policy_exits_0_and_shows_the_would_be_decision(admin: str) -> None:
    result = explain("--admin", admin, "POST", "http://trial.test/private")
    assert result.returncode == 0
    assert "ALLOW (dryRun policy; would be: DENY 403 access_denied)" in result.stdout


def test_json_output(admin: str) -> None:
    result = explain("--admin", admin, "--json", "GET", "http://nobody.test/")
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["reason"] == "no_policy"
    assert answer["steps"][0]["outcome"] == "FAIL"


def test_no_admin_api_is_a_clear_error_with_exit_2() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = explain("--admin", address, "--timeout", "2", "GET", "http://shop.test/")
    assert result.returncode == 2
    assert f"no admin API answers at {address}" in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = explain("GET", "http://shop.test/", "-H", "Bearer abc.def.ghi")
    assert result.returncode == 2
    assert "expected 'NAME: VALUE'" in result.stderr
    assert "abc.def.ghi" not in result.stderr  # a malformed header is never echoed


def test_build_request_reads_urls_like_curl() -> None:
    request = build_request(
        "get", "https://user@Shop.Test:8443/a/b?x=1#frag", ["X-Id: 7", "Host: other.test"]
    )
    assert (request.method, request.host, request.path) == ("GET", "other.test", "/a/b?x=1")
    assert dict(request.headers) == {"x-id": "7"}
    assert build_request("GET", "shop.test", []).path == "/"
    with pytest.raises(ConfigError):
        build_request("GET", "http://", [])


def test_explain_over_mutual_tls_to_an_admin_api_on_the_network(tmp_path: Path) -> None:
    """`authz serve --tls-*` with --admin-listen on every interface serves the admin API over
    the same mutual TLS; explain reaches it with the CA and a client certificate only."""
    ca = Authority.create("admin-ca")
    cert, key = write_pair(tmp_path, ca.issue("authz"), name="server")
    client_cert, client_key = write_pair(tmp_path, ca.issue("ops", client=True), name="ops")
    (tmp_path / "ca.crt").write_bytes(ca.cert)
    (tmp_path / "policies.yaml").write_text(POLICY)
    port = free_port()
    tls = [
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--tls-client-ca",
        str(tmp_path / "ca.crt"),
    ]
    proc, _grpc, _http = start_sidecar(
        tmp_path, [tmp_path / "policies.yaml"], extra=["--admin-listen", f"0.0.0.0:{port}", *tls]
    )
    try:
        admin = f"127.0.0.1:{port}"
        request = ("GET", "http://shop.test/orders/1")
        mutual = ["--tls-ca", str(tmp_path / "ca.crt"), "--tls-cert", str(client_cert)]
        mutual += ["--tls-key", str(client_key), "--tls-server-name", "localhost"]
        answered = explain("--admin", admin, *mutual, *request)
        assert answered.returncode == 1, answered.stderr  # denied: no token
        assert "missing_token" in answered.stdout
        plain = explain("--admin", admin, "--timeout", "2", *request)
        assert plain.returncode == 2
        no_client = explain("--admin", admin, "--timeout", "2", *mutual[:2], *request)
        assert no_client.returncode == 2
        assert "no admin API answers" in no_client.stderr
        half = explain(
            "--admin",
            admin,
            "--tls-ca",
            str(tmp_path / "ca.crt"),
            "--tls-key",
            str(client_key),
            *request,
        )
        assert (half.returncode, half.stderr) == (
            2,
            "authz: error: --tls-cert and --tls-key go together\n",
        )
    finally:
        proc.terminate()
