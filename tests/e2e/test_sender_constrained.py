"""Sender-constrained tokens through the real Envoy, with tokens from the real oidc-provider.

Two Envoys guard the same sidecar: one plain-HTTP listener, and one TLS listener that requires a
client certificate (signed by the test CA) and forwards it to the sidecar
(`include_peer_certificate`). DPoP proofs name the URL the client used - `http://orders.test/...`
on the first, `https://orders.test/...` on the second - so the scheme Envoy reports is checked
too. Duplicated DPoP headers are sent as two header lines; Envoy joins them before the check.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import ipaddress
import json
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authz.devtools.envoyconf import gateway_config
from authz.server.listen import ListenAddress, parse_listen
from tests.support import tiers
from tests.support.envoy import Envoy, envoy_binary, start_envoy
from tests.support.oidc import AUDIENCE, JWT_RESOURCE, ClientCertificate, DpopKey, OidcProvider
from tests.support.policies import auth_policy, issuer, rule, write_policies
from tests.support.procs import Proc, free_port, start_echo, start_sidecar
from tests.support.redis import RedisServer
from tests.support.wait import wait_for

HOST = "orders.test"
NONCE_HOST = "nonce.test"
STRICT_HOST = "strict.test"
_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


# --- a small CA: a server certificate for Envoy, client certificates for the callers --------------


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    client: ClientCertificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class TestCA:
    """A CA that signs certificates into `folder` (PEM files, as Envoy and ssl read them)."""

    __test__ = False

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name("test-ca"))
            .issuer_name(_name("test-ca"))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.pem = folder / "ca.pem"
        self.pem.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, server: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self._key, hashes.SHA256())
        cert_file, key_file = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        client = ClientCertificate(
            cert.public_bytes(serialization.Encoding.PEM).decode(),
            cert.public_bytes(serialization.Encoding.DER),
        )
        return Issued(cert_file, key_file, client)


def tls_envoy(tmp: Path, *, authz: str, upstream_port: int, ca: TestCA) -> Envoy:
    """Envoy with a TLS listener that requires a client certificate signed by `ca`."""
    server = ca.issue(HOST, server=True)
    port, admin_port = free_port(), free_port()
    config = gateway_config(
        listen=ListenAddress("127.0.0.1", port),
        admin=ListenAddress("127.0.0.1", admin_port),
        upstream=ListenAddress("127.0.0.1", upstream_port),
        authz=parse_listen(authz, flag="authz"),
    )
    config["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _TLS,
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(server.cert)},
                        "private_key": {"filename": str(server.key)},
                    }
                ],
                "validation_context": {"trusted_ca": {"filename": str(ca.pem)}},
            },
        },
    }
    # start_envoy picks its own ports; this listener needs its TLS settings in the bootstrap.
    tiers.starting("Envoy")
    path = tmp / "tls-envoy.json"
    path.write_text(json.dumps(config))
    argv = [envoy_binary(), "-c", str(path), "--disable-hot-restart", "--concurrency", "1"]
    proc = Proc("tls-envoy", [*argv, "--log-level", "warn"], log=tmp / "tls-envoy.log")
    proc.wait_http(f"http://127.0.0.1:{admin_port}/ready")
    return Envoy(proc, port, admin_port)


# --- the gateway ----------------------------------------------------------------------------------


@dataclass
class World:
    op: OidcProvider
    plain: Envoy
    tls: Envoy
    ca: TestCA
    client: Issued
    sidecar: Proc
    echo: Proc
    policies: Path
    echo_port: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("sender")
    with OidcProvider.start(tmp) as op:
        trusted = issuer(
            name=op.issuer, audiences=[AUDIENCE], jwksUri=op.jwks_uri, dpopAlgorithms=["ES256"]
        )
        policies = tmp / "policies"
        policies.mkdir()
        write_policies(
            policies / "orders.yaml",
            auth_policy(
                "orders",
                hosts=[HOST],
                issuers=[trusted],
                rules=[rule("read", paths=["/orders", "/orders/*"], scopes=["orders:read"])],
            ),
            auth_policy(
                "strict",
                hosts=[STRICT_HOST],
                issuers=[{**trusted, "requireBoundTokens": True}],
                rules=[rule("read", paths=["/orders"], scopes=["orders:read"])],
            ),
            auth_policy(
                "nonce",
                hosts=[NONCE_HOST],
                issuers=[{**trusted, "dpopNonce": True}],
                rules=[rule("read", paths=["/orders"], scopes=["orders:read"])],
            ),
        )
        sidecar, grpc, _ = start_sidecar(tmp, [policies])
        echo, echo_port = start_echo(tmp)
        plain = start_envoy(tmp, authz=grpc, upstream_port=echo_port)
        ca = TestCA(tmp)
        tls = tls_envoy(tmp, authz=grpc, upstream_port=echo_port, ca=ca)
        world = World(
            op, plain, tls, ca, ca.issue("orders-client"), sidecar, echo, policies, echo_port
        )
        try:
            yield world
        finally:
            for proc in (tls.proc, plain.proc, echo, sidecar):
                proc.terminate()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> str:
        return str(json.loads(self.body)["error_description"])


def send(
    envoy: Envoy,
    path: str,
    headers: Sequence[tuple[str, str]],
    *,
    method: str = "GET",
    client: Issued | None = None,
    ca: TestCA | None = None,
    host: str = HOST,
) -> Answer:
    """One request; `headers` may repeat a name (each pair is its own header line)."""
    conn: http.client.HTTPConnection
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca.pem))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
        conn = http.client.HTTPSConnection("127.0.0.1", envoy.port, context=context, timeout=10)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


# --- DPoP -----------------------------------------------------------------------------------------


def test_a_dpop_bound_token_with_its_proof_passes_envoy(world: World) -> None:
    key = DpopKey.generate()
    token = world.op.dpop_token(key).access_token
    proof = key.proof("GET", f"http://{HOST}/orders", access_token=token)
    answer = send(
        world.plain, "/orders?page=2", [("Authorization", f"DPoP {token}"), ("DPoP", proof)]
    )
    assert answer.status == 200, answer

    # The same proof again: a replay.
    again = send(
        world.plain, "/orders?page=2", [("Authorization", f"DPoP {token}"), ("DPoP", proof)]
    )
    assert again.status == 401
    assert json.loads(again.body)["error"] == "invalid_dpop_proof"
    assert again.error() == "DPoP proof was already used"
    assert again.headers["www-authenticate"] == (
        'DPoP realm="orders.test", error="invalid_dpop_proof", '
        'error_description="DPoP proof was already used", algs="ES256"'
    )
    # The decision log says which check failed, and neither the token nor the proof appears.
    line = decision_line(world.sidecar, again.headers["x-authz-decision-id"])
    assert (line["reason"], line["detail"]) == ("invalid_dpop_proof", "DPoP proof was already used")
    output = world.sidecar.output()
    assert token not in output
    assert proof not in output


def decision_line(sidecar: Proc, decision_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        for raw in sidecar.output().splitlines():
            if raw.startswith("{") and f'"decision_id":"{decision_id}"' in raw:
                found.append(json.loads(raw))
                return True
        return False

    wait_for(logged, what=f"decision {decision_id} in the decision log")
    return found[0]


@pytest.mark.parametrize(
    ("method", "url", "description"),
    [
        ("POST", f"http://{HOST}/orders", "DPoP proof htm is not the request method"),
        ("GET", f"http://{HOST}/orders/7", "DPoP proof htu is not the request URL"),
        ("GET", f"https://{HOST}/orders", "DPoP proof htu is not the request URL"),
    ],
    ids=["other-method", "other-path", "other-scheme"],
)
def test_a_proof_for_another_request(world: World, method: str, url: str, description: str) -> None:
    key = DpopKey.generate()
    token = world.op.dpop_token(key).access_token
    proof = key.proof(method, url, access_token=token)
    answer = send(world.plain, "/orders", [("Authorization", f"DPoP {token}"), ("DPoP", proof)])
    assert (answer.status, answer.error()) == (401, description)


def test_downgrades_and_hostile_proofs_are_refused(world: World) -> None:
    key = DpopKey.generate()
    token = world.op.dpop_token(key).access_token
    url = f"http://{HOST}/orders"

    def proof(**options: object) -> str:
        return key.proof("GET", url, access_token=token, **options)  # type: ignore[arg-type]

    auth = ("Authorization", f"DPoP {token}")
    plain = world.op.client_credentials_token(resource=JWT_RESOURCE).access_token
    cases: dict[str, tuple[list[tuple[str, str]], str]] = {
        "sent as Bearer": (
            [("Authorization", f"Bearer {token}"), ("DPoP", proof())],
            "a DPoP-bound token must use the DPoP scheme",
        ),
        "no proof": ([("Authorization", f"DPoP {token}")], "no DPoP proof"),
        "two proofs": (
            [("Authorization", f"DPoP {token}"), ("DPoP", proof()), ("DPoP", proof())],
            "more than one DPoP proof",
        ),
        "oversized proof": (
            [("Authorization", f"DPoP {token}"), ("DPoP", proof() + "A" * 5000)],
            "DPoP proof is larger than 4096 bytes",
        ),
        "wrong ath": (
            [("Authorization", f"DPoP {token}"), ("DPoP", key.proof("GET", url, access_token="x"))],
            "DPoP proof ath does not match the access token",
        ),
        "alg none": (
            [("Authorization", f"DPoP {token}"), ("DPoP", _unsigned(proof()))],
            "DPoP proof is not a well-formed signed JWT",
        ),
        "thief's key": (
            [
                ("Authorization", f"DPoP {token}"),
                ("DPoP", DpopKey.generate().proof("GET", url, access_token=token)),
            ],
            "DPoP proof key is not the one the token is bound to",
        ),
        "iat far future": (
            [auth, ("DPoP", proof(iat=int(time.time()) + 3600))],
            "DPoP proof was issued in the future",
        ),
        "iat far past": (
            [auth, ("DPoP", proof(iat=int(time.time()) - 3600))],
            "DPoP proof is too old",
        ),
        "private key in jwk": (
            [auth, ("DPoP", proof(headers={"jwk": {**key.jwk, "d": _b64(b"k" * 32)}}))],
            "DPoP proof key is not a usable public key",
        ),
        "HMAC proof": (
            [auth, ("DPoP", _symmetric(token, url))],
            "DPoP proof algorithm is not allowed",
        ),
        "symmetric jwk": (
            [auth, ("DPoP", _symmetric(token, url, claimed="ES256"))],
            "DPoP proof key is symmetric",
        ),
        "unbound token as DPoP": (
            [("Authorization", f"DPoP {plain}"), ("DPoP", proof())],
            "the token is not DPoP-bound",
        ),
        "malformed base64": (
            [auth, ("DPoP", "e30.%%%.e30")],
            "DPoP proof is not a well-formed signed JWT",
        ),
    }
    for name, (headers, description) in cases.items():
        answer = send(world.plain, "/orders", headers)
        assert (answer.status, answer.error()) == (401, description), name
        assert token not in answer.headers["www-authenticate"], name
    # The sidecar is still answering, and the honest request still passes.
    assert (
        send(world.plain, "/orders", [("Authorization", f"DPoP {token}"), ("DPoP", proof())]).status
        == 200
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(proof: str) -> str:
    header = _b64(json.dumps({"typ": "dpop+jwt", "alg": "none"}).encode())
    return f"{header}.{proof.split('.')[1]}."


def _symmetric(token: str, url: str, *, claimed: str = "HS256") -> str:
    """An HS256 proof whose jwk is the (attacker's) shared secret; with `claimed`, its header
    names another algorithm."""
    secret = b"s" * 32
    claims = {"htm": "GET", "htu": url, "iat": int(time.time()), "jti": "j", "ath": _ath(token)}
    jwk = {"kty": "oct", "k": _b64(secret)}
    signed = jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "dpop+jwt", "jwk": jwk})
    if claimed == "HS256":
        return signed
    header = _b64(json.dumps({"typ": "dpop+jwt", "alg": claimed, "jwk": jwk}).encode())
    return f"{header}.{signed.split('.', 1)[1]}"


def _ath(token: str) -> str:
    return _b64(hashlib.sha256(token.encode()).digest())


def test_require_bound_tokens_refuses_a_plain_bearer_token(world: World) -> None:
    plain = world.op.client_credentials_token(resource=JWT_RESOURCE).access_token
    refused = send(world.plain, "/orders", [("Authorization", f"Bearer {plain}")], host=STRICT_HOST)
    assert (refused.status, refused.error()) == (
        401,
        "this issuer's tokens must be sender-constrained",
    )
    assert send(world.plain, "/orders", [("Authorization", f"Bearer {plain}")]).status == 200
    key = DpopKey.generate()
    token = world.op.dpop_token(key).access_token
    proof = key.proof("GET", f"http://{STRICT_HOST}/orders", access_token=token)
    bound = [("Authorization", f"DPoP {token}"), ("DPoP", proof)]
    assert send(world.plain, "/orders", bound, host=STRICT_HOST).status == 200


def test_dpop_over_tls_names_the_https_url(world: World) -> None:
    key = DpopKey.generate()
    token = world.op.dpop_token(key).access_token
    https = key.proof("GET", f"https://{HOST}/orders", access_token=token)
    answer = send(
        world.tls,
        "/orders",
        [("Authorization", f"DPoP {token}"), ("DPoP", https)],
        client=world.client,
        ca=world.ca,
    )
    assert answer.status == 200, answer
    plain = key.proof("GET", f"http://{HOST}/orders", access_token=token)
    answer = send(
        world.tls,
        "/orders",
        [("Authorization", f"DPoP {token}"), ("DPoP", plain)],
        client=world.client,
        ca=world.ca,
    )
    assert (answer.status, answer.error()) == (401, "DPoP proof htu is not the request URL")


def test_a_server_nonce_is_handed_out_and_required(world: World) -> None:
    key = DpopKey.generate()
    token = world.op.dpop_token(key).access_token
    url = f"http://{NONCE_HOST}/orders"
    auth = ("Authorization", f"DPoP {token}")
    first = send(
        world.plain,
        "/orders",
        [auth, ("DPoP", key.proof("GET", url, access_token=token))],
        host=NONCE_HOST,
    )
    assert first.status == 401
    assert json.loads(first.body)["error"] == "use_dpop_nonce"
    nonce = first.headers["dpop-nonce"]
    proof = key.proof("GET", url, access_token=token, nonce=nonce)
    retried = send(world.plain, "/orders", [auth, ("DPoP", proof)], host=NONCE_HOST)
    assert retried.status == 200
    assert retried.headers["dpop-nonce"] == nonce  # the current nonce, for the next proof


# --- certificate-bound ----------------------------------------------------------------------------


def test_a_certificate_bound_token_from_its_certificate(world: World) -> None:
    token = world.op.mtls_token(world.client.client).access_token
    auth = [("Authorization", f"Bearer {token}")]
    assert send(world.tls, "/orders", auth, client=world.client, ca=world.ca).status == 200

    other = world.ca.issue("another-client")
    refused = send(world.tls, "/orders", auth, client=other, ca=world.ca)
    assert (refused.status, refused.error()) == (
        401,
        "the client certificate is not the one the token is bound to",
    )
    assert refused.headers["www-authenticate"].startswith('Bearer realm="orders.test"')

    no_tls = send(world.plain, "/orders", auth)
    assert (no_tls.status, no_tls.error()) == (401, "no client certificate was presented")
    # A certificate in a header is not a certificate.
    forged = send(
        world.plain, "/orders", [*auth, ("x-client-cert", world.client.client.url_encoded)]
    )
    assert (forged.status, forged.error()) == (401, "no client certificate was presented")


# --- the replay cache across replicas -------------------------------------------------------------


def test_a_proof_replayed_to_another_replica_is_caught_through_redis(
    world: World, tmp_path: Path
) -> None:
    """Two sidecars sharing a Redis, each behind its own Envoy: a proof used at one is refused
    at the other."""
    redis = RedisServer(tmp_path / "redis").start()
    started: list[Proc] = []
    try:
        envoys = []
        for name in ("replica-a", "replica-b"):
            folder = tmp_path / name
            folder.mkdir()
            sidecar, grpc, _ = start_sidecar(
                folder, [world.policies], extra=("--redis-url", redis.url), name=name
            )
            started.append(sidecar)
            envoy = start_envoy(folder, authz=grpc, upstream_port=world.echo_port)
            started.append(envoy.proc)
            envoys.append(envoy)
        key = DpopKey.generate()
        token = world.op.dpop_token(key).access_token
        proof = key.proof("GET", f"http://{HOST}/orders", access_token=token)
        headers = [("Authorization", f"DPoP {token}"), ("DPoP", proof)]
        assert send(envoys[0], "/orders", headers).status == 200
        replayed = send(envoys[1], "/orders", headers)
        assert (replayed.status, replayed.error()) == (401, "DPoP proof was already used")
        fresh = key.proof("GET", f"http://{HOST}/orders", access_token=token)
        assert send(envoys[1], "/orders", [headers[0], ("DPoP", fresh)]).status == 200
    finally:
        for proc in reversed(started):
            proc.terminate()
        redis.stop()
