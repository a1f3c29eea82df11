"""Opaque tokens and revocation end to end: a real authorization server (oidc-provider), the
sidecar as `authz serve`, Envoy in front, and `authz revoke` as an operator would run it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.envoy import Envoy, start_envoy
from tests.support.http import Response, request
from tests.support.oidc import GATEWAY, JWT_RESOURCE, OidcProvider
from tests.support.policies import auth_policy, issuer, rule, write_policies
from tests.support.procs import PYTHON, ROOT, Proc, free_port, start_echo, start_sidecar
from tests.support.wait import wait_for

HOST = "orders.test"


@dataclass
class Stack:
    op: OidcProvider
    envoy: Envoy
    admin: str
    procs: list[Proc]

    def get(self, token: str | None, path: str = "/orders/1") -> Response:
        return request(self.envoy.url, path, host=HOST, token=token)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("opaque")
    op = OidcProvider.start(tmp)
    secret = tmp / "secrets" / "shop" / "idp-client" / "secret"
    secret.parent.mkdir(parents=True)
    secret.write_text(GATEWAY.secret)
    policy = auth_policy(
        "orders",
        namespace="shop",
        hosts=[HOST],
        issuers=[
            issuer(
                name=op.issuer,
                audiences=["orders-api"],
                discovery=True,
                maxTokenLifetime="10m",
                introspection={
                    "clientId": GATEWAY.client_id,
                    "clientSecretRef": {"name": "idp-client", "key": "secret"},
                    "cacheSeconds": 1,
                },
            )
        ],
        rules=[rule("read", paths=["/orders/**"], scopes=["orders:read"])],
        response={
            "setHeaders": [{"name": "x-client", "claim": "client_id"}],
            "removeHeaders": ["authorization"],
        },
    )
    policies = write_policies(tmp / "policies.yaml", policy)
    admin = f"127.0.0.1:{free_port()}"
    sidecar, grpc, _ = start_sidecar(
        tmp,
        [policies],
        extra=["--admin-listen", admin, "--secrets-dir", str(tmp / "secrets")],
    )
    echo, echo_port = start_echo(tmp)
    envoy = start_envoy(tmp, authz=grpc, upstream_port=echo_port)
    yield Stack(op, envoy, admin, [sidecar, echo])
    for proc in [envoy.proc, echo, sidecar]:
        proc.terminate()
    op.stop()


def test_an_opaque_token_passes_envoy_with_its_client_id(stack: Stack) -> None:
    token = stack.op.client_credentials_token(scope="orders:read").access_token
    response = stack.get(token)
    assert response.status == 200, response.body
    seen = response.json()["headers"]
    assert seen["x-client"] == GATEWAY.client_id
    assert "authorization" not in seen


def test_a_made_up_opaque_token_is_401(stack: Stack) -> None:
    response = stack.get("made-up-opaque-token")
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_revoked_at_the_provider_is_refused_within_the_cache_bound(stack: Stack) -> None:
    token = stack.op.client_credentials_token(scope="orders:read").access_token
    assert stack.get(token).status == 200
    stack.op.revoke(token)
    wait_for(lambda: stack.get(token).status == 401, what="a 401 after revocation")


def revoke(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "authz", "revoke", "--admin", stack.admin, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_authz_revoke_refuses_a_jwt_by_jti(stack: Stack) -> None:
    import jwt as pyjwt

    token = stack.op.client_credentials_token(resource=JWT_RESOURCE).access_token
    other = stack.op.client_credentials_token(resource=JWT_RESOURCE).access_token
    assert stack.get(token).status == 200
    jti = pyjwt.decode(token, options={"verify_signature": False})["jti"]
    done = revoke(stack, "--jti", jti, "--issuer", stack.op.issuer)
    assert done.returncode == 0, done.stderr
    assert f"revoked jti {jti}" in done.stdout
    assert "other replicas still accept" in done.stderr
    refused = stack.get(token)
    assert refused.status == 401
    assert b"revoked" in refused.body
    assert stack.get(other).status == 200  # only that token
    listed = revoke(stack, "--list")
    assert jti in listed.stdout


def test_authz_revoke_usage_errors_exit_2(stack: Stack) -> None:
    assert revoke(stack).returncode == 2  # neither --jti nor --subject
    assert revoke(stack, "--jti", "a", "--subject", "b").returncode == 2
    dead = subprocess.run(
        [PYTHON, "-m", "authz", "revoke", "--admin", f"127.0.0.1:{free_port()}", "--jti", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dead.returncode == 2
    assert "no admin API answers" in dead.stderr
    assert "Traceback" not in dead.stderr
