"""The OAuth test harness against the real oidc-provider: what the sidecar's OAuth tests rely on.

Each claim the harness makes (a token's format, its binding, introspection and revocation, key
rotation on restart) is checked here from the client's side with independent code: PyJWT against
the served JWKS, `cryptography` for certificate digests, the RFC 7638 example for thumbprints.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.support.keys import ec_key, rsa_key
from tests.support.oidc import (
    AUDIENCE,
    DPOP_CLIENT,
    GATEWAY,
    JWT_RESOURCE,
    MTLS_CLIENT,
    OPAQUE_RESOURCE,
    SCOPES,
    Client,
    OidcError,
    OidcProvider,
    Resource,
    check_installed,
)
from tests.support.oidc.proofs import ClientCertificate, DpopKey, jwk_thumbprint


@pytest.fixture(scope="module")
def op(
    tmp_path_factory: pytest.TempPathFactory, start_oidc: Callable[..., OidcProvider]
) -> Iterator[OidcProvider]:
    with start_oidc(tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


def verify_jwt(op: OidcProvider, token: str) -> dict[str, Any]:
    """Verify an access token as a resource server would: key by kid from the served JWKS."""
    key = jwt.PyJWKClient(op.jwks_uri, cache_keys=False).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256", "ES256"],
        audience=AUDIENCE,
        issuer=op.issuer,
        options={"require": ["iss", "aud", "exp", "iat", "jti", "sub"]},
    )
    return claims


def test_discovery_advertises_what_the_tests_use(op: OidcProvider) -> None:
    doc = op.discovery
    assert doc["issuer"] == op.issuer == f"http://127.0.0.1:{op.port}"
    for endpoint in (op.token_endpoint, op.introspection_endpoint, op.revocation_endpoint):
        assert endpoint.startswith(op.issuer + "/")
    assert op.jwks_uri == f"{op.issuer}/jwks"
    assert "client_credentials" in doc["grant_types_supported"]
    assert set(SCOPES) <= set(doc["scopes_supported"])
    assert doc["tls_client_certificate_bound_access_tokens"] is True
    assert "ES256" in doc["dpop_signing_alg_values_supported"]
    assert [k["kid"] for k in op.jwks()["keys"]] == ["op-rsa-1"]
    assert all("d" not in k for k in op.jwks()["keys"])  # public halves only


def test_opaque_token_introspects_until_revoked(op: OidcProvider) -> None:
    token = op.client_credentials_token(scope="orders:read", resource=OPAQUE_RESOURCE)
    assert token.token_type == "Bearer"
    assert token.scope == "orders:read"
    assert token.access_token.count(".") == 0  # opaque: nothing for a resource server to decode

    info = op.introspect(token.access_token)
    assert info["active"] is True
    assert info["scope"] == "orders:read"
    assert info["client_id"] == GATEWAY.client_id
    assert info["iss"] == op.issuer
    assert info["aud"] == AUDIENCE
    assert info["exp"] - info["iat"] == 300  # the resource server's lifetime
    assert info["token_type"] == "Bearer"
    assert "cnf" not in info

    # Another confidential client (the sidecar's own) may introspect it, but not revoke it.
    assert op.introspect(token.access_token, client=DPOP_CLIENT)["active"] is True
    with pytest.raises(OidcError) as refused:
        op.revoke(token.access_token, client=DPOP_CLIENT)
    assert (refused.value.status, refused.value.error) == (400, "invalid_request")
    assert op.introspect(token.access_token)["active"] is True

    op.revoke(token.access_token)
    assert op.introspect(token.access_token) == {"active": False}


def test_jwt_access_token_verifies_against_the_served_jwks(op: OidcProvider) -> None:
    token = op.client_credentials_token(scope="orders:read orders:write", resource=JWT_RESOURCE)
    header = jwt.get_unverified_header(token.access_token)
    assert header["typ"] == "at+jwt"  # RFC 9068
    assert header["kid"] == "op-rsa-1"

    claims = verify_jwt(op, token.access_token)
    assert claims["scope"] == "orders:read orders:write"
    assert claims["sub"] == claims["client_id"] == GATEWAY.client_id
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]
    assert "cnf" not in claims

    # A limit of the provider, not of the harness: JWTs are neither introspected nor revoked.
    for call in (op.introspect, op.revoke):
        with pytest.raises(OidcError) as refused:
            call(token.access_token)
        assert (refused.value.status, refused.value.error) == (400, "unsupported_token_type")


def test_scopes_are_limited_to_the_client_and_the_resource(
    tmp_path: Path, start_oidc: Callable[..., OidcProvider]
) -> None:
    reader = Client("reader", "reader-secret", scope="orders:read")
    with start_oidc(tmp_path, clients=[reader]) as op:
        with pytest.raises(OidcError) as refused:
            op.client_credentials_token(reader, scope="orders:write")
        assert refused.value.error == "invalid_scope"
        token = op.client_credentials_token(reader, scope="orders:read", resource=JWT_RESOURCE)
        assert verify_jwt(op, token.access_token)["scope"] == "orders:read"


def test_a_resource_server_chooses_the_signing_algorithm(
    tmp_path: Path, start_oidc: Callable[..., OidcProvider]
) -> None:
    es256 = "https://orders.test/es256"
    resources = {es256: Resource("jwt", alg="ES256", ttl=60)}
    with start_oidc(tmp_path, keys=[rsa_key("op-rsa"), ec_key("op-ec")], resources=resources) as op:
        token = op.client_credentials_token(resource=es256)
        header = jwt.get_unverified_header(token.access_token)
        assert (header["alg"], header["kid"]) == ("ES256", "op-ec")
        claims = verify_jwt(op, token.access_token)
        assert claims["exp"] - claims["iat"] == token.expires_in == 60


@pytest.mark.parametrize(
    ("client", "resource", "status", "error"),
    [
        (Client(GATEWAY.client_id, "not-the-secret"), OPAQUE_RESOURCE, 401, "invalid_client"),
        (Client("nobody", GATEWAY.secret), OPAQUE_RESOURCE, 401, "invalid_client"),
        (GATEWAY, "https://unknown.test/", 400, "invalid_target"),
    ],
    ids=["bad-secret", "unknown-client", "unknown-resource"],
)
def test_refused_token_requests(
    op: OidcProvider, client: Client, resource: str, status: int, error: str
) -> None:
    with pytest.raises(OidcError) as refused:
        op.client_credentials_token(client, resource=resource)
    assert (refused.value.status, refused.value.error) == (status, error)


def test_thumbprint_matches_the_rfc_7638_example() -> None:
    example = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
        "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMi"
        "cAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3X"
        "PksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(example) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_dpop_bound_tokens_carry_the_key_thumbprint(op: OidcProvider, alg: str) -> None:
    key = DpopKey.generate(alg)
    token = op.dpop_token(key, resource=JWT_RESOURCE)
    assert token.token_type == "DPoP"
    assert verify_jwt(op, token.access_token)["cnf"] == {"jkt": key.thumbprint}

    opaque = op.dpop_token(key, resource=OPAQUE_RESOURCE)
    info = op.introspect(opaque.access_token)
    assert (info["token_type"], info["cnf"]) == ("DPoP", {"jkt": key.thumbprint})


def test_dpop_proofs_are_checked_by_the_provider(op: OidcProvider) -> None:
    key = DpopKey.generate()
    with pytest.raises(OidcError) as no_proof:
        op.client_credentials_token(DPOP_CLIENT)  # registered as dpop_bound_access_tokens
    assert no_proof.value.error == "invalid_grant"

    wrong_url = key.proof("POST", op.issuer + "/elsewhere")
    with pytest.raises(OidcError) as refused:
        op.request_token(headers={"DPoP": wrong_url})
    assert refused.value.error == "invalid_dpop_proof"

    proof = key.proof("POST", op.token_endpoint)
    assert op.request_token(DPOP_CLIENT, headers={"DPoP": proof}).token_type == "DPoP"
    with pytest.raises(OidcError) as replayed:
        op.request_token(DPOP_CLIENT, headers={"DPoP": proof})
    assert replayed.value.error == "invalid_grant"


def test_dpop_nonce_challenge_is_answered(
    tmp_path: Path, start_oidc: Callable[..., OidcProvider]
) -> None:
    with start_oidc(tmp_path, dpop_nonce=True) as op:
        key = DpopKey.generate()
        with pytest.raises(OidcError) as challenged:
            op.request_token(headers={"DPoP": key.proof("POST", op.token_endpoint)})
        assert challenged.value.error == "use_dpop_nonce"
        assert challenged.value.headers["dpop-nonce"]

        token = op.dpop_token(key)
        assert verify_jwt(op, token.access_token)["cnf"] == {"jkt": key.thumbprint}


def test_certificate_bound_tokens_carry_the_certificate_digest(op: OidcProvider) -> None:
    cert = ClientCertificate.generate()
    digest = x509.load_pem_x509_certificate(cert.pem.encode()).fingerprint(hashes.SHA256())
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert cert.x5t_s256 == expected

    token = op.mtls_token(cert)
    assert verify_jwt(op, token.access_token)["cnf"] == {"x5t#S256": expected}
    opaque = op.mtls_token(cert, resource=OPAQUE_RESOURCE)
    assert op.introspect(opaque.access_token)["cnf"] == {"x5t#S256": expected}

    with pytest.raises(OidcError) as no_cert:
        op.client_credentials_token(MTLS_CLIENT)
    assert no_cert.value.error == "invalid_grant"


def test_restart_rotates_keys_and_keeps_tokens(
    tmp_path: Path, start_oidc: Callable[..., OidcProvider]
) -> None:
    with start_oidc(tmp_path) as op:
        issuer = op.issuer
        old_jwt = op.client_credentials_token(resource=JWT_RESOURCE).access_token
        opaque = op.client_credentials_token(resource=OPAQUE_RESOURCE).access_token

        op.restart(keys=[rsa_key("op-rsa-2")])
        assert op.issuer == op.discovery["issuer"] == issuer
        assert [k["kid"] for k in op.jwks()["keys"]] == ["op-rsa-2"]
        new_jwt = op.client_credentials_token(resource=JWT_RESOURCE).access_token
        assert jwt.get_unverified_header(new_jwt)["kid"] == "op-rsa-2"
        assert verify_jwt(op, new_jwt)["client_id"] == GATEWAY.client_id
        with pytest.raises(jwt.PyJWKClientError):
            verify_jwt(op, old_jwt)  # its key is gone
        assert op.introspect(opaque)["active"] is True  # a graceful restart keeps tokens

        # Rotation with overlap: the new key signs, the previous one still verifies.
        op.restart(keys=[rsa_key("op-rsa-3"), *op.keys])
        assert [k["kid"] for k in op.jwks()["keys"]] == ["op-rsa-3", "op-rsa-2"]
        assert verify_jwt(op, new_jwt)["client_id"] == GATEWAY.client_id
        newest = op.client_credentials_token(resource=JWT_RESOURCE).access_token
        assert jwt.get_unverified_header(newest)["kid"] == "op-rsa-3"

        op.restart(keep_tokens=False)
        assert op.introspect(opaque) == {"active": False}


def test_missing_install_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"npm ci --prefix tests/support/oidc"):
        check_installed(tmp_path)
