"""Property-based: random CheckRequests and random tokens never escape the servicer, and nothing
is allowed without a valid token except on anonymous rules."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.memory import MemoryLimiter
from authz.server.servicer import AuthorizationServicer
from tests.support.keys import b64, claims, craft, rsa_key
from tests.support.policies import auth_policy, issuer, rule
from tests.support.tiers import examples

KEY = rsa_key("k1")
OTHER = rsa_key("k1")  # same kid, different key
HOSTS = ["api.test", "a.wild.test", "wild.test", "API.TEST:443", "other.test", ""]
POLICY = auth_policy(
    "p",
    namespace="t",
    hosts=["api.test", "*.wild.test"],
    issuers=[issuer(name="https://issuer.test", keys=[KEY])],
    rules=[
        rule("open", paths=["/public/**"], anonymous=True),
        rule("read", methods=["GET"], paths=["/orders/*"], scopes=["orders:read"]),
        rule("any", paths=["/me"]),
    ],
    response={
        "setHeaders": [{"name": "x-user", "claim": "sub"}, {"name": "x-deep", "claim": "a.b"}],
        "removeHeaders": ["authorization"],
    },
)
ANONYMOUS_RULES = {"open"}
VALID = [KEY.sign(claims(scope="orders:read")), KEY.sign(claims(scope=""))]


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def servicer() -> AuthorizationServicer:
    holder: list[object] = []
    store = PolicyStore(bind=offline_provider, publish=holder.append)
    snapshot = store.update("test", [SourceDocument("test:0", POLICY)])
    assert snapshot.states[0].state.value == "ready"
    return AuthorizationServicer(
        snapshot=lambda: snapshot, limiter=MemoryLimiter(), verifier=Verifier(cache_size=64)
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
tokens = st.one_of(
    st.text(max_size=200),
    st.sampled_from(VALID),
    st.builds(
        lambda t, i, c: t[:i] + c + t[i + 1 :],
        st.sampled_from(VALID),
        st.integers(0, 600),
        st.characters(),
    ),
    st.builds(
        lambda h, p: craft(h, p, b"sig"),
        st.dictionaries(st.sampled_from(["alg", "kid", "crit", "jku", "typ"]), json_values),
        st.dictionaries(
            st.sampled_from(["iss", "aud", "exp", "nbf", "iat", "sub", "scope"]), json_values
        ),
    ),
    st.builds(
        lambda c: OTHER.sign(c),
        st.fixed_dictionaries(
            {
                "iss": st.just("https://issuer.test"),
                "aud": st.just("orders-api"),
                "exp": st.just(int(time.time()) + 600),
            }
        ),
    ),
    st.builds(lambda s: craft({"alg": "RS256", "kid": "k1"}, b64(s), b"x"), st.binary(max_size=64)),
)
paths = st.one_of(
    st.sampled_from(
        [
            "/public/x",
            "/public/../orders/1",
            "/orders/1",
            "/me",
            "/orders/%2e%2e/me",
            "/public/%2F",
            "/x",
        ]
    ),
    st.text(max_size=40),
    st.builds(lambda s: "/" + s, st.text(max_size=40)),
)


def build_request(
    method: str, host: str, path: str, headers: dict[str, str], token: str | None
) -> pb.CheckRequest:
    request = pb.CheckRequest()
    http = request.attributes.request.http
    http.method, http.host, http.path = method, host, path
    http.headers.update(headers)
    if token is not None:
        http.headers["authorization"] = f"Bearer {token}"
    return request


@settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["GET", "POST", "HEAD", "get", ""]) | st.text(max_size=8),
    host=st.sampled_from(HOSTS) | st.text(max_size=30),
    path=paths,
    headers=st.dictionaries(
        st.sampled_from(["x-user", "cookie", "x-forwarded-for", ":path", "host"])
        | st.text(max_size=10),
        st.text(max_size=30),
        max_size=4,
    ),
    token=st.none() | tokens,
)
def test_nothing_escapes_and_nothing_is_allowed_without_a_valid_token(
    loop: asyncio.AbstractEventLoop,
    servicer: AuthorizationServicer,
    method: str,
    host: str,
    path: str,
    headers: dict[str, str],
    token: str | None,
) -> None:
    response = loop.run_until_complete(
        servicer.check(build_request(method, host, path, headers, token))
    )
    assert isinstance(response, pb.CheckResponse)
    kind = response.WhichOneof("http_response")
    assert kind in ("ok_response", "denied_response")
    if kind == "denied_response":
        assert response.status.code != 0
        assert response.denied_response.status.code in (400, 401, 403, 503)
        assert json.loads(response.denied_response.body)["error"]
        return
    assert response.status.code == 0
    rule = response.dynamic_metadata["rule"]
    assert rule in ANONYMOUS_RULES or token in VALID, (rule, token)
    if token not in VALID:
        assert all(h.header.key != "x-user" for h in response.ok_response.headers)
