"""End to end through the real Envoy: what a client and the upstream actually see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.gateway import HOST, Gateway, orders_policy, start_gateway
from tests.support.http import Response, request
from tests.support.keys import SigningKey, claims, ec_key, rsa_key
from tests.support.wait import wait_for


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, SigningKey]:
    return rsa_key("rsa-1"), ec_key("ec-1")


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, keys: tuple[SigningKey, SigningKey]
) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw"), *keys)
    yield gw
    gw.stop()


def get(gw: Gateway, path: str, **kwargs: object) -> Response:
    kwargs.setdefault("host", HOST)
    return request(gw.url, path, **kwargs)  # type: ignore[arg-type]


def echoed(response: Response) -> dict[str, str]:
    assert response.status == 200, response.body
    headers: dict[str, str] = response.json()["headers"]
    return headers


def test_allowed_request_reaches_upstream_with_identity_headers(
    gateway: Gateway, keys: tuple[SigningKey, SigningKey]
) -> None:
    token = keys[0].sign(claims(sub="alice", org={"tenant": "acme"}, roles=["buyer", "admin"]))
    headers = echoed(
        get(
            gateway,
            "/orders/42",
            token=token,
            headers={"x-user-id": "mallory", "X-Tenant": "evil", "x-keep": "1"},
        )
    )
    assert headers["x-user-id"] == "alice"  # the client's spoofed value was overwritten
    assert headers["x-tenant"] == "acme"  # nested claim by dotted path
    assert headers["x-roles"] == "buyer,admin"  # arrays joined with ","
    assert headers["x-gateway"] == "authz"
    assert headers["x-keep"] == "1"
    assert "authorization" not in headers


def test_header_for_absent_claim_is_removed_not_forwarded(
    gateway: Gateway, keys: tuple[SigningKey, SigningKey]
) -> None:
    token = keys[1].sign(claims(sub="bob"))  # ES256 key; no org, no roles
    headers = echoed(
        get(gateway, "/orders", token=token, headers={"x-tenant": "evil", "x-roles": "root"})
    )
    assert headers["x-user-id"] == "bob"
    assert "x-tenant" not in headers
    assert "x-roles" not in headers


def test_missing_token_is_401_with_challenge_and_json_body(gateway: Gateway) -> None:
    response = get(gateway, "/orders")
    assert response.status == 401
    assert response.headers["www-authenticate"] == f'Bearer realm="{HOST}"'
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "missing_token"
    assert len(body["decision_id"]) == 16
    assert response.headers["x-authz-decision-id"] == body["decision_id"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("expired", "token has expired"),
        ("wrong-audience", "token audience is not accepted here"),
        ("wrong-issuer", "token issuer is not trusted here"),
        ("bad-signature", "token signature is invalid"),
    ],
)
def test_invalid_tokens_are_401_invalid_token(
    gateway: Gateway, keys: tuple[SigningKey, SigningKey], case: str, expected: str
) -> None:
    key = keys[0]
    if case == "expired":
        token = key.sign(claims(ttl=-120))
    elif case == "wrong-audience":
        token = key.sign(claims(aud="billing-api"))
    elif case == "wrong-issuer":
        token = key.sign(claims(iss="https://evil.test"))
    else:
        token = rsa_key(key.kid).sign(claims())  # same kid, another key
    response = get(gateway, "/orders", token=token)
    assert response.status == 401
    challenge = response.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert f'error_description="{expected}"' in challenge
    assert response.json()["error"] == "invalid_token"


def test_insufficient_scope_is_403_naming_the_scope(
    gateway: Gateway, keys: tuple[SigningKey, SigningKey]
) -> None:
    token = keys[0].sign(claims(scope="orders:read"))
    response = get(gateway, "/orders", method="POST", token=token)
    assert response.status == 403
    assert (
        response.headers["www-authenticate"]
        == f'Bearer realm="{HOST}", error="insufficient_scope", scope="orders:write"'
    )
    assert response.json()["error"] == "insufficient_scope"
    writer = keys[0].sign(claims(scope="orders:read orders:write"))
    assert get(gateway, "/orders", method="POST", token=writer).status == 200


def test_any_of_scopes(gateway: Gateway, keys: tuple[SigningKey, SigningKey]) -> None:
    assert get(gateway, "/admin/users", token=keys[0].sign(claims(scope="superuser"))).status == 200
    assert (
        get(gateway, "/admin/users", token=keys[0].sign(claims(scp=["admin"], scope=""))).status
        == 200
    )
    assert (
        get(gateway, "/admin/users", token=keys[0].sign(claims(scope="orders:read"))).status == 403
    )


def test_anonymous_rule_needs_no_token_but_rejects_a_bad_one(
    gateway: Gateway, keys: tuple[SigningKey, SigningKey]
) -> None:
    assert get(gateway, "/healthz").status == 200
    assert get(gateway, "/docs/a/b/c").status == 200
    assert get(gateway, "/healthz", token="garbage").status == 401
    assert get(gateway, "/healthz", token=keys[0].sign(claims(ttl=-100))).status == 401


def test_unknown_host_and_unmatched_path_are_denied(
    gateway: Gateway, keys: tuple[SigningKey, SigningKey]
) -> None:
    token = keys[0].sign(claims(scope="orders:read orders:write admin"))
    unknown = get(gateway, "/orders", host="other.test", token=token)
    assert unknown.status == 403
    assert unknown.json()["error"] == "no_policy"
    unmatched = get(gateway, "/secret", token=token)
    assert unmatched.status == 403
    assert unmatched.json()["error"] == "access_denied"
    assert (
        get(gateway, "/orders", host="ORDERS.test:8443", token=token).status == 200
    )  # case and port ignored


@pytest.mark.parametrize(
    "path",
    [
        "/healthz/../orders",
        "/docs/../orders",
        "/docs/%2e%2e/orders",
        "/docs/.%2E/orders",
        "//docs/..//orders",
        "/docs/./../orders?x=1",
    ],
)
def test_path_traversal_out_of_an_anonymous_rule_needs_a_token(gateway: Gateway, path: str) -> None:
    response = get(gateway, path)
    assert response.status == 401, (path, response.status, response.body)


def test_the_sidecar_did_not_log_tokens(
    gateway: Gateway, keys: tuple[SigningKey, SigningKey]
) -> None:
    token = keys[0].sign(claims())
    assert get(gateway, "/orders", token=token).status == 200
    signature = token.rsplit(".", 1)[1]
    assert signature not in gateway.sidecar.output()


@pytest.fixture(scope="module")
def raw_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys: tuple[SigningKey, SigningKey]
) -> Iterator[Gateway]:
    """Envoy without path normalization: the sidecar's own normalization must hold."""
    gw = start_gateway(tmp_path_factory.mktemp("raw"), *keys, normalize=False)
    yield gw
    gw.stop()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/healthz/../orders", 401),
        ("/docs/%2e%2e/orders", 401),
        ("/docs//..//orders", 401),
        ("/docs/..%2Forders", 400),
        ("/docs/%2F../orders", 400),
        ("/docs/%5C../orders", 400),
        ("/docs/..%5corders", 400),
        ("/docs/%00", 400),
        ("/docs/%zz", 400),
        ("/../../etc/passwd", 400),
        ("/docs/../../orders", 400),
    ],
)
def test_sidecar_normalizes_when_envoy_does_not(
    raw_gateway: Gateway, path: str, status: int
) -> None:
    response = get(raw_gateway, path)
    assert response.status == status, (path, response.status, response.body)
    if status == 400:
        assert response.json()["error"] == "invalid_path"


UPSTREAM_DEPENDENT_PATHS = [
    "/docs/%252e%252e/admin",  # an upstream that decodes twice sees /docs/../admin
    "/docs/..%3b/admin",  # one that cuts path parameters at ";" sees /docs/../admin
    "/docs/..%3B/admin",
    "/docs/%c0%ae%c0%ae/admin",  # one that accepts overlong UTF-8 sees /docs/../admin
    "/docs/%252f..%252fadmin",
    "/docs/%25%32%65%25%32%65/admin",
]


@pytest.mark.parametrize("normalizing", [True, False], ids=["envoy-normalizes", "envoy-raw"])
@pytest.mark.parametrize("path", UPSTREAM_DEPENDENT_PATHS)
def test_paths_whose_meaning_depends_on_the_upstream_are_400(
    gateway: Gateway, raw_gateway: Gateway, normalizing: bool, path: str
) -> None:
    response = get(gateway if normalizing else raw_gateway, path)
    assert response.status == 400, (path, response.status, response.body)
    assert response.json()["error"] == "invalid_path"


@pytest.mark.parametrize("path", ["/docs/a%20b", "/docs/%6d%6D", "/docs/caf%c3%a9"])
def test_ordinary_escapes_still_reach_the_upstream(gateway: Gateway, path: str) -> None:
    assert get(gateway, path).status == 200, path


def test_hot_reload_and_a_broken_file_beside_a_good_one(
    tmp_path: Path, keys: tuple[SigningKey, SigningKey]
) -> None:
    gw = start_gateway(tmp_path, *keys)
    try:
        token = keys[0].sign(claims())
        assert get(gw, "/orders", host="new.test", token=token).status == 403
        (gw.policies / "new.yaml").write_text(
            orders_policy(gw.jwks_url, name="new", hosts=("new.test",))
        )
        (gw.policies / "broken.yaml").write_text(
            "apiVersion: authz.dev/v1alpha1\nkind: AuthPolicy\nmetadata: {name: b}\nspec: {hosts: [x.test]}\n"
        )
        wait_for(
            lambda: get(gw, "/orders", host="new.test", token=token).status == 200,
            what="new policy enforced",
        )
        assert get(gw, "/orders", token=token).status == 200  # the other policy was untouched
        # An invalid new version of a good policy: the previous version keeps serving.
        (gw.policies / "new.yaml").write_text(
            orders_policy(gw.jwks_url, name="new", hosts=("new.test",)).replace("allOf", "alOf")
        )
        wait_for(
            lambda: "shop/new" in gw.sidecar.output() and "alOf" in gw.sidecar.output(),
            what="the broken file reported",
        )
        assert get(gw, "/orders", host="new.test", token=token).status == 200
        assert "spec.rules[2].scopes.alOf: unknown field" in gw.sidecar.output()
        # A half-saved file that does not parse: its last good documents keep serving.
        good = orders_policy(gw.jwks_url, name="new", hosts=("new.test",))
        (gw.policies / "new.yaml").write_text(good)
        wait_for(
            lambda: "policy shop/new (" in gw.sidecar.output().rsplit("alOf", 1)[-1],
            what="the fixed policy accepted",
        )
        (gw.policies / "new.yaml").write_text(good + "garbage: [\n")
        wait_for(
            lambda: "the file's last good version keeps serving" in gw.sidecar.output(),
            what="the syntax error reported",
        )
        assert get(gw, "/orders", host="new.test", token=token).status == 200
        # Deleting the file removes the policy.
        (gw.policies / "new.yaml").unlink()
        wait_for(
            lambda: get(gw, "/orders", host="new.test", token=token).status == 403,
            what="the fixed policy enforced",
        )
    finally:
        gw.stop()


def test_key_rotation_is_accepted_without_restart(tmp_path: Path) -> None:
    old, new = rsa_key("2026-01"), rsa_key("2026-02")
    gw = start_gateway(tmp_path, old)
    try:
        assert get(gw, "/orders", token=old.sign(claims())).status == 200
        gw.publish_keys(old, new)  # the issuer rotates: the new kid appears in its JWKS
        response = get(gw, "/orders", token=new.sign(claims()))
        assert response.status == 200, response.body  # unknown kid -> immediate refetch, no restart
        gw.publish_keys(new)  # the old key is retired
        # A token with an unknown kid refetches at most every 10 s; the periodic refresh also runs.
        assert get(gw, "/orders", token=new.sign(claims(sub="x"))).status == 200
    finally:
        gw.stop()


def test_sigterm_drains_and_exits_zero(tmp_path: Path, keys: tuple[SigningKey, SigningKey]) -> None:
    gw = start_gateway(tmp_path, *keys)
    try:
        assert get(gw, "/orders", token=keys[0].sign(claims())).status == 200
    finally:
        code = gw.sidecar.terminate()
        gw.stop()
    assert code == 0, gw.sidecar.output()
    assert "stopped" in gw.sidecar.output()
