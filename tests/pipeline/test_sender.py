"""The sender step with tokens from a real authorization server (oidc-provider): DPoP-bound
(cnf.jkt) and certificate-bound (cnf x5t#S256) tokens are accepted only from their holder, and
every downgrade or mismatch is a 401 with RFC 9449's or RFC 6750's challenge."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from tests.support.keys import rsa_key
from tests.support.oidc import (
    AUDIENCE,
    JWT_RESOURCE,
    ClientCertificate,
    DpopKey,
    OidcProvider,
    Token,
)
from tests.support.policies import auth_policy, issuer, rule

HOST = "orders.test"
STRICT = "strict.test"
NONCE = "nonce.test"
URL = f"https://{HOST}/orders"
#: An issuer of our own, for tokens no real server would issue (a cnf that cannot be checked).
SELF_ISSUER = "https://self.test"
SELF_KEY = rsa_key("self-1")


@dataclass
class World:
    op: OidcProvider
    snapshot: Snapshot
    key: DpopKey
    bound: Token
    cert: ClientCertificate
    cert_bound: Token
    plain: Token


def policies(op: OidcProvider) -> list[dict[str, Any]]:
    keys = op.jwks()
    trusted = issuer(name=op.issuer, audiences=[AUDIENCE], jwks=keys, dpopAlgorithms=["ES256"])
    reads = [rule("read", paths=["/orders", "/orders/*"], scopes=["orders:read"])]
    own = issuer(name=SELF_ISSUER, audiences=[AUDIENCE], keys=[SELF_KEY])
    return [
        auth_policy("orders", hosts=[HOST], issuers=[trusted, own], rules=reads),
        auth_policy(
            "strict",
            hosts=[STRICT],
            issuers=[{**trusted, "requireBoundTokens": True}],
            rules=reads,
        ),
        auth_policy("nonce", hosts=[NONCE], issuers=[{**trusted, "dpopNonce": True}], rules=reads),
    ]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, start_oidc: Callable[..., OidcProvider]
) -> Iterator[World]:
    with start_oidc(tmp_path_factory.mktemp("oidc")) as op:
        store = PolicyStore(bind=offline_provider)
        snapshot = store.update(
            "test", [SourceDocument(f"p:{i}", p) for i, p in enumerate(policies(op))]
        )
        assert [s.state.value for s in snapshot.states] == ["ready"] * 3, snapshot.states
        key, cert = DpopKey.generate(), ClientCertificate.generate()
        yield World(
            op,
            snapshot,
            key,
            op.dpop_token(key),
            cert,
            op.mtls_token(cert),
            op.client_credentials_token(resource=JWT_RESOURCE),
        )


def check(
    world: World,
    *,
    authorization: str | None,
    dpop: str | None = None,
    method: str = "GET",
    path: str = "/orders",
    host: str = HOST,
    scheme: str = "https",
    certificate: str = "",
    verifier: Verifier | None = None,
    consume: bool = True,
    headers: dict[str, str] | None = None,
    trace: Trace | None = None,
) -> Decision:
    sent = dict(headers or {})
    if authorization is not None:
        sent["authorization"] = authorization
    if dpop is not None:
        sent["dpop"] = dpop
    request = CheckInput(
        method=method,
        host=host,
        raw_path=path,
        headers=sent,
        scheme=scheme,
        authority=host,
        peer_certificate=certificate,
    )

    async def run() -> Decision:
        return await decide(
            world.snapshot,
            request,
            verifier=verifier or Verifier(),
            now=time.time(),
            consume=consume,
            trace=trace,
        )

    return asyncio.run(run())


def dpop_check(world: World, **proof_options: Any) -> Decision:
    token = world.bound.access_token
    method = proof_options.pop("method", "GET")
    url = proof_options.pop("url", URL)
    proof = world.key.proof(method, url, access_token=token, **proof_options)
    return check(world, authorization=f"DPoP {token}", dpop=proof)


def challenge(decision: Decision) -> str:
    return dict(decision.response_headers)["www-authenticate"]


# --- DPoP ----------------------------------------------------------------------------------------


def test_the_provider_binds_the_token_to_the_key(world: World) -> None:
    assert world.bound.token_type == "DPoP"
    claims = jwt.decode(world.bound.access_token, options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": world.key.thumbprint}


def test_a_dpop_bound_token_with_its_proof_is_allowed(world: World) -> None:
    decision = dpop_check(world)
    assert decision.allowed, decision
    # The query and fragment are not part of htu; the path is compared in normal form.
    token = world.bound.access_token
    proof = world.key.proof("GET", "HTTPS://Orders.TEST:443/orders/./1", access_token=token)
    decision = check(world, authorization=f"DPoP {token}", dpop=proof, path="/orders/1?page=2#frag")
    assert decision.allowed, decision


def test_a_replayed_proof_is_refused(world: World) -> None:
    verifier = Verifier()
    token = world.bound.access_token
    proof = world.key.proof("GET", URL, access_token=token)
    first = check(world, authorization=f"DPoP {token}", dpop=proof, verifier=verifier)
    again = check(world, authorization=f"DPoP {token}", dpop=proof, verifier=verifier)
    assert first.allowed
    assert (again.status, again.reason) == (401, "invalid_dpop_proof")
    assert again.description == "DPoP proof was already used"
    assert challenge(again).startswith('DPoP realm="orders.test", error="invalid_dpop_proof"')
    assert challenge(again).endswith('algs="ES256"')


class SharedStore:
    """The seam to Redis (authz.jwt.replay.SharedReplay), answering what it is told to."""

    def __init__(self, answer: bool | None) -> None:
        self.answer = answer
        self.claims: list[tuple[bytes, float]] = []

    async def first_use(self, key: bytes, *, ttl: float) -> bool | None:
        self.claims.append((key, ttl))
        return self.answer


@pytest.mark.parametrize(
    ("answer", "allowed"), [(True, True), (False, False), (None, True)], ids=str
)
def test_a_proof_new_here_is_claimed_in_the_shared_store(
    world: World, answer: bool | None, allowed: bool
) -> None:
    store = SharedStore(answer)
    verifier = Verifier(shared_replay=store)
    token = world.bound.access_token
    proof = world.key.proof("GET", URL, access_token=token)
    decision = check(world, authorization=f"DPoP {token}", dpop=proof, verifier=verifier)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.description == "DPoP proof was already used"
    ((key, ttl),) = store.claims
    assert len(key) == 32
    assert 0 < ttl <= 120
    # A replay to this process is caught here, without asking the shared store.
    again = check(world, authorization=f"DPoP {token}", dpop=proof, verifier=verifier)
    assert again.description == "DPoP proof was already used"
    assert len(store.claims) == 1


def test_explain_does_not_use_a_proof_up(world: World) -> None:
    verifier = Verifier()
    token = world.bound.access_token
    proof = world.key.proof("GET", URL, access_token=token)
    for _ in range(2):
        explained = check(
            world, authorization=f"DPoP {token}", dpop=proof, verifier=verifier, consume=False
        )
        assert explained.allowed
    assert check(world, authorization=f"DPoP {token}", dpop=proof, verifier=verifier).allowed
    replayed = check(
        world, authorization=f"DPoP {token}", dpop=proof, verifier=verifier, consume=False
    )
    assert replayed.description == "DPoP proof was already used"


@pytest.mark.parametrize(
    ("options", "description"),
    [
        ({"method": "POST"}, "DPoP proof htm is not the request method"),
        ({"url": "https://orders.test/admin"}, "DPoP proof htu is not the request URL"),
        ({"url": "http://orders.test/orders"}, "DPoP proof htu is not the request URL"),
        ({"url": "https://evil.test/orders"}, "DPoP proof htu is not the request URL"),
        ({"url": "https://orders.test:8443/orders"}, "DPoP proof htu is not the request URL"),
        ({"url": "https://u@orders.test/orders"}, "DPoP proof htu is not the request URL"),
        (
            {"url": "https://orders.test/orders/%2e%2e/admin"},
            "DPoP proof htu is not the request URL",
        ),
        ({"url": "https://[::1/orders"}, "DPoP proof htu is not the request URL"),
        ({"iat": int(time.time()) + 3600}, "DPoP proof was issued in the future"),
        ({"iat": int(time.time()) - 3600}, "DPoP proof is too old"),
        ({"access_token": "some.other.token"}, "DPoP proof ath does not match the access token"),
    ],
    ids=[
        "other-method",
        "other-path",
        "other-scheme",
        "other-host",
        "other-port",
        "userinfo",
        "dot-segments-elsewhere",
        "broken-url",
        "iat-future",
        "iat-past",
        "wrong-ath",
    ],
)
def test_a_proof_for_something_else_is_refused(
    world: World, options: dict[str, Any], description: str
) -> None:
    if "access_token" in options:
        token = world.bound.access_token
        proof = world.key.proof("GET", URL, access_token=options["access_token"])
        decision = check(world, authorization=f"DPoP {token}", dpop=proof)
    else:
        decision = dpop_check(world, **options)
    assert (decision.status, decision.reason, decision.description) == (
        401,
        "invalid_dpop_proof",
        description,
    )


def test_a_proof_by_another_key_is_refused(world: World) -> None:
    token = world.bound.access_token
    thief = DpopKey.generate()
    decision = check(
        world,
        authorization=f"DPoP {token}",
        dpop=thief.proof("GET", URL, access_token=token),
    )
    assert decision.reason == "invalid_dpop_proof"
    assert decision.description == "DPoP proof key is not the one the token is bound to"


def test_a_proof_alg_outside_dpop_algorithms_is_refused(world: World) -> None:
    token = world.bound.access_token
    ed = DpopKey.generate("EdDSA")
    decision = check(
        world, authorization=f"DPoP {token}", dpop=ed.proof("GET", URL, access_token=token)
    )
    assert decision.description == "DPoP proof algorithm is not allowed"


@pytest.mark.parametrize(
    ("authorization", "dpop", "reason", "description"),
    [
        (
            "Bearer {token}",
            "{proof}",
            "invalid_token",
            "a DPoP-bound token must use the DPoP scheme",
        ),
        ("Bearer {token}", None, "invalid_token", "a DPoP-bound token must use the DPoP scheme"),
        ("DPoP {token}", None, "invalid_dpop_proof", "no DPoP proof"),
        ("DPoP {token}", "{proof},{proof}", "invalid_dpop_proof", "more than one DPoP proof"),
        ("DPoP {token}", "{big}", "invalid_dpop_proof", "DPoP proof is larger than 4096 bytes"),
        (
            "DPoP {token}",
            "%%%.###.***",
            "invalid_dpop_proof",
            "DPoP proof is not a well-formed signed JWT",
        ),
    ],
    ids=["bearer-with-proof", "bearer", "no-proof", "two-proofs", "oversized", "bad-base64"],
)
def test_downgrades_and_broken_proofs(
    world: World, authorization: str, dpop: str | None, reason: str, description: str
) -> None:
    token = world.bound.access_token
    proof = world.key.proof("GET", URL, access_token=token)
    values = {"token": token, "proof": proof, "big": proof + "A" * 4096}
    decision = check(
        world,
        authorization=authorization.format(**values),
        dpop=dpop.format(**values) if dpop is not None else None,
    )
    assert (decision.status, decision.reason, decision.description) == (401, reason, description)
    assert challenge(decision).startswith(f'DPoP realm="orders.test", error="{reason}"')
    assert token not in challenge(decision)
    assert proof not in challenge(decision)


def test_an_unbound_token_sent_as_dpop_is_refused(world: World) -> None:
    token = world.plain.access_token
    decision = check(world, authorization=f"DPoP {token}")
    assert (decision.reason, decision.description) == (
        "invalid_token",
        "the token is not DPoP-bound",
    )
    assert check(world, authorization=f"Bearer {token}").allowed


def test_require_bound_tokens(world: World) -> None:
    plain = check(world, authorization=f"Bearer {world.plain.access_token}", host=STRICT)
    assert (plain.status, plain.reason) == (401, "invalid_token")
    assert plain.description == "this issuer's tokens must be sender-constrained"
    assert challenge(plain).startswith('Bearer realm="strict.test", error="invalid_token"')
    token = world.bound.access_token
    proof = world.key.proof("GET", f"https://{STRICT}/orders", access_token=token)
    assert check(world, authorization=f"DPoP {token}", dpop=proof, host=STRICT).allowed


def test_the_trace_says_which_check_failed(world: World) -> None:
    trace = Trace()
    token = world.bound.access_token
    check(world, authorization=f"Bearer {token}", trace=trace)
    assert [(s.name, s.outcome) for s in trace.steps][-1] == ("sender", "fail")


def test_behind_a_trusted_proxy_the_scheme_is_the_forwarded_one(world: World) -> None:
    token = world.bound.access_token
    proof = world.key.proof("GET", URL, access_token=token)
    sent = {"authorization": f"DPoP {token}", "dpop": proof, "x-forwarded-proto": "https"}
    request = CheckInput(
        method="GET", host=HOST, raw_path="/orders", headers=sent, scheme="http", authority=HOST
    )

    async def run(hops: int) -> Decision:
        return await decide(
            world.snapshot, request, verifier=Verifier(), now=time.time(), trusted_proxy_hops=hops
        )

    assert asyncio.run(run(1)).allowed
    assert asyncio.run(run(0)).description == "DPoP proof htu is not the request URL"


# --- certificate-bound ---------------------------------------------------------------------------


def test_a_certificate_bound_token_with_its_certificate_is_allowed(world: World) -> None:
    token = world.cert_bound.access_token
    decision = check(world, authorization=f"Bearer {token}", certificate=world.cert.url_encoded)
    assert decision.allowed, decision


@pytest.mark.parametrize(
    ("certificate", "description"),
    [
        ("", "no client certificate was presented"),
        ("other", "the client certificate is not the one the token is bound to"),
        ("garbage", "the client certificate is not one PEM certificate"),
        ("double", "the client certificate is not one PEM certificate"),
    ],
)
def test_a_certificate_bound_token_without_its_certificate(
    world: World, certificate: str, description: str
) -> None:
    forwarded = {
        "": "",
        "other": ClientCertificate.generate().url_encoded,
        "garbage": "-----BEGIN%20GARBAGE",
        "double": urllib.parse.quote(world.cert.url_encoded, safe=""),
    }[certificate]
    token = world.cert_bound.access_token
    decision = check(world, authorization=f"Bearer {token}", certificate=forwarded)
    assert (decision.status, decision.reason, decision.description) == (
        401,
        "invalid_token",
        description,
    )
    assert challenge(decision).startswith('Bearer realm="orders.test", error="invalid_token"')


def test_a_certificate_bound_token_sent_as_dpop_is_refused(world: World) -> None:
    token = world.cert_bound.access_token
    decision = check(world, authorization=f"DPoP {token}", certificate=world.cert.url_encoded)
    assert decision.description == "the token is not DPoP-bound"


# --- a binding that cannot be checked ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cnf", "description"),
    [
        ({"x5t": "sha1-thumbprint"}, "the token's binding cannot be checked here"),
        ({}, "the token's binding cannot be checked here"),
        ("jkt", "token cnf claim is malformed"),
        ({"jkt": 5}, "token cnf claim is malformed"),
        ({"x5t#S256": ["a"]}, "token cnf claim is malformed"),
    ],
    ids=["unknown-method", "empty", "not-an-object", "jkt-not-string", "x5t-not-string"],
)
def test_a_binding_that_cannot_be_checked_is_refused(
    world: World, cnf: object, description: str
) -> None:
    token = SELF_KEY.sign(
        {
            "iss": SELF_ISSUER,
            "aud": AUDIENCE,
            "sub": "s",
            "exp": time.time() + 60,
            "scope": "orders:read",
            "cnf": cnf,
        }
    )
    decision = check(world, authorization=f"Bearer {token}", certificate=world.cert.url_encoded)
    assert (decision.status, decision.reason, decision.description) == (
        401,
        "invalid_token",
        description,
    )


# --- server nonces -------------------------------------------------------------------------------


def test_an_issuer_with_dpop_nonce_hands_one_out_and_requires_it(world: World) -> None:
    verifier = Verifier()
    token = world.bound.access_token
    url = f"https://{NONCE}/orders"
    first = check(
        world,
        authorization=f"DPoP {token}",
        dpop=world.key.proof("GET", url, access_token=token),
        host=NONCE,
        verifier=verifier,
    )
    assert (first.status, first.reason) == (401, "use_dpop_nonce")
    headers = dict(first.response_headers)
    assert headers["www-authenticate"].startswith('DPoP realm="nonce.test", error="use_dpop_nonce"')
    nonce = headers["dpop-nonce"]
    retried = check(
        world,
        authorization=f"DPoP {token}",
        dpop=world.key.proof("GET", url, access_token=token, nonce=nonce),
        host=NONCE,
        verifier=verifier,
    )
    assert retried.allowed, retried
    assert dict(retried.response_headers)["dpop-nonce"] == nonce
    # A nonce made up by the client, or minted by another process's secret, is not one.
    for made_up in ("made-up", Verifier().nonces.current(time.time())):
        refused = check(
            world,
            authorization=f"DPoP {token}",
            dpop=world.key.proof("GET", url, access_token=token, nonce=made_up),
            host=NONCE,
            verifier=verifier,
        )
        assert refused.reason == "use_dpop_nonce"
    # Issuers without dpopNonce send none.
    plain = dpop_check(world)
    assert "dpop-nonce" not in dict(plain.response_headers)
