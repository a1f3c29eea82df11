"""An introspection endpoint that misbehaves: a small aiohttp server in this process whose answer
each test sets. Whatever it does, a check ends in a decision with a stable reason - 401 for what
the endpoint said about the token, 503 issuer_unavailable when the endpoint itself failed - and
the bounds (cache, single flight, call rate, tokens waiting) hold."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from authz.errors import INVALID_TOKEN, ISSUER_UNAVAILABLE
from tests.introspection.support import (
    check,
    introspecting_policy,
    snapshot_of,
    verifier,
    write_secret,
)

NOW = 1_800_000_000.0
SECRET = "s3cr3t:with/odd chars"
Answer = Callable[[dict[str, str]], web.StreamResponse]


def active(**members: Any) -> dict[str, Any]:
    answer = {
        "active": True,
        "aud": "orders-api",
        "scope": "orders:read",
        "client_id": "c1",
        "sub": "alice",
        "iat": NOW - 10,
        "exp": NOW + 600,
    }
    answer.update(members)
    return {k: v for k, v in answer.items() if v is not None}


class Endpoint:
    """The server's state: what it answers, and what it was asked."""

    def __init__(self) -> None:
        self.answer: Answer = lambda _form: web.json_response(active())
        #: What /introspect-b answers: a second issuer's endpoint on the same server.
        self.answer_b: Answer = lambda _form: web.json_response({"active": False})
        self.calls = 0
        self.authorizations: list[str] = []
        self.tokens: list[str] = []
        #: hold: each call waits for `release` before answering (a slow endpoint).
        self.hold = False
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if self.hold:
            self.arrived.set()
            await self.release.wait()
        self.authorizations.append(request.headers.get("authorization", ""))
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.tokens.append(form.get("token", ""))
        if request.path.endswith("-b"):
            return self.answer_b(form)
        return self.answer(form)


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, str]]:
    state = Endpoint()
    app = web.Application()
    app.router.add_post("/introspect", state.handle)
    app.router.add_post("/introspect-b", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state, f"http://127.0.0.1:{port}"
    state.release.set()
    await runner.cleanup()


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    return write_secret(tmp_path, SECRET)


def policy(base: str, **fields: Any) -> Any:
    return snapshot_of(
        introspecting_policy(base, endpoint=f"{base}/introspect", cache_seconds=60, **fields)
    )


async def test_client_secret_basic_is_form_encoded_and_the_token_is_posted(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    async with verifier(secrets) as (v, _):
        assert (await check(policy(base), v, "opaque-1", now=NOW)).allowed
    # RFC 6749 2.3.1: both parts form-urlencoded, then base64.
    assert state.authorizations == [
        "Basic b3JkZXJzLWdhdGV3YXk6czNjcjN0JTNBd2l0aCUyRm9kZCUyMGNoYXJz"
    ]
    assert state.tokens == ["opaque-1"]


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("huge", lambda _f: web.Response(body=b'{"active": true, "x": "' + b"a" * 200_000 + b'"}')),
        ("not json", lambda _f: web.Response(body=b"<html>oops</html>")),
        ("an array", lambda _f: web.json_response([active()])),
        ("deeply nested", lambda _f: web.Response(body=b"[" * 60_000 + b"]" * 60_000)),
        ("server error", lambda _f: web.json_response(active(), status=500)),
        ("redirect", lambda _f: web.Response(status=302, headers={"location": "/elsewhere"})),
    ],
)
async def test_a_broken_answer_is_503_never_allow(
    endpoint: tuple[Endpoint, str], secrets: Path, name: str, answer: Answer
) -> None:
    state, base = endpoint
    state.answer = answer
    async with verifier(secrets) as (v, introspector):
        decision = await check(policy(base), v, "opaque-1", now=NOW)
    assert (decision.allowed, decision.reason, decision.status) == (False, ISSUER_UNAVAILABLE, 503)
    assert introspector.cached == 0, name


@pytest.mark.parametrize(
    ("name", "answer", "why"),
    [
        ("inactive", {"active": False}, "not active"),
        ("active as a string", active(active="true"), "not active"),
        ("active as 1", active(active=1), "not active"),
        ("no active member", {k: v for k, v in active().items() if k != "active"}, "not active"),
        ("expired", active(exp=NOW - 120), "expired"),
        ("no exp", active(exp=None), "no exp"),
        ("exp as a string", active(exp=str(NOW + 600)), "not a number"),
        ("wrong audience", active(aud="billing-api"), "audience"),
        ("no audience", active(aud=None), "audience"),
        ("another issuer", active(iss="https://evil.test"), "issuer"),
        ("not yet valid", active(nbf=NOW + 3600), "not valid yet"),
    ],
)
async def test_what_the_answer_says_about_the_token_is_401(
    endpoint: tuple[Endpoint, str], secrets: Path, name: str, answer: Any, why: str
) -> None:
    state, base = endpoint
    state.answer = lambda _f: web.json_response(answer)
    async with verifier(secrets) as (v, _):
        decision = await check(policy(base), v, "opaque-1", now=NOW)
    assert (decision.allowed, decision.reason, decision.status) == (False, INVALID_TOKEN, 401), name
    assert why in decision.description


async def test_a_slow_endpoint_times_out_as_503(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    state.hold = True
    async with verifier(secrets, timeout=0.2) as (v, _):
        decision = await check(policy(base), v, "opaque-1", now=NOW)
    assert (decision.reason, decision.status) == (ISSUER_UNAVAILABLE, 503)
    assert "longer than 0.2s" in decision.description


async def test_the_cache_respects_cache_seconds_and_exp(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    state.answer = lambda _f: web.json_response(active(exp=NOW + 20))
    snapshot = policy(base)
    async with verifier(secrets) as (v, _):
        for offset in (0, 5, 19):
            assert (await check(snapshot, v, "t", now=NOW + offset)).allowed
        assert state.calls == 1
        # Past exp the cached answer is gone (and the token, per the answer, expired).
        after = await check(snapshot, v, "t", now=NOW + 60)
        assert after.reason == INVALID_TOKEN
        assert state.calls == 2


async def test_inactive_answers_are_cached_briefly(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    state.answer = lambda _f: web.json_response({"active": False})
    snapshot = policy(base)
    async with verifier(secrets, negative_cache_seconds=5.0) as (v, _):
        for offset in (0, 1, 4):
            assert (await check(snapshot, v, "bad", now=NOW + offset)).reason == INVALID_TOKEN
        assert state.calls == 1
        await check(snapshot, v, "bad", now=NOW + 6)
        assert state.calls == 2


async def test_a_flood_of_made_up_tokens_is_bounded(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    state.answer = lambda _f: web.json_response({"active": False})
    snapshot = policy(base)
    bounds: dict[str, Any] = {"call_rate": 1.0, "call_burst": 10, "negative_cache_size": 4}
    async with verifier(secrets, **bounds) as (v, introspector):
        decisions = [await check(snapshot, v, f"made-up-{i}", now=NOW) for i in range(40)]
        assert state.calls == 10  # the burst; the rest were shed without a call
        assert introspector.cached == 4
    reasons = [d.reason for d in decisions]
    assert reasons.count(INVALID_TOKEN) == 10
    assert reasons.count(ISSUER_UNAVAILABLE) == 30
    assert "rate-limited" in decisions[-1].description


async def test_distinct_tokens_waiting_are_bounded(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    state.hold = True
    snapshot = policy(base)
    async with verifier(secrets, max_pending=2) as (v, _):
        first = [asyncio.ensure_future(check(snapshot, v, f"t{i}", now=NOW)) for i in range(2)]
        await state.arrived.wait()
        refused = await check(snapshot, v, "t3", now=NOW)
        assert (refused.reason, refused.status) == (ISSUER_UNAVAILABLE, 503)
        assert "too many" in refused.description
        state.release.set()
        assert all(d.allowed for d in await asyncio.gather(*first))


async def test_made_up_tokens_do_not_evict_active_answers(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    state.answer = lambda form: web.json_response(
        active() if form["token"] == "real" else {"active": False}
    )
    snapshot = policy(base)
    async with verifier(secrets, cache_size=2, negative_cache_size=2) as (v, _):
        assert (await check(snapshot, v, "real", now=NOW)).allowed
        for i in range(20):
            await check(snapshot, v, f"made-up-{i}", now=NOW)
        calls = state.calls
        assert (await check(snapshot, v, "real", now=NOW + 1)).allowed
        assert state.calls == calls  # still cached


async def test_a_large_answer_is_used_but_not_cached(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    state.answer = lambda _f: web.json_response(active(padding="x" * 20_000))
    snapshot = policy(base)
    async with verifier(secrets, max_cached_answer_bytes=8192) as (v, introspector):
        assert (await check(snapshot, v, "t", now=NOW)).allowed
        assert (await check(snapshot, v, "t", now=NOW)).allowed
        assert (state.calls, introspector.cached) == (2, 0)


async def test_the_token_never_reaches_logs_or_decisions(
    endpoint: tuple[Endpoint, str], secrets: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state, base = endpoint
    state.answer = lambda _f: web.json_response(active(), status=503)
    token = "opaque-token-VERY-SECRET"
    async with verifier(secrets) as (v, _):
        decision = await check(policy(base), v, token, now=NOW)
    assert decision.reason == ISSUER_UNAVAILABLE
    everything = caplog.text + json.dumps(decision.description) + repr(decision)
    assert token not in everything
    assert SECRET not in everything
    assert "HTTP 503" in caplog.text


async def test_short_lived_and_revoked_apply_to_introspected_tokens(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    state.answer = lambda _f: web.json_response(active(iat=NOW - 10, exp=NOW + 3600))
    async with verifier(secrets) as (v, _):
        long_lived = await check(policy(base, maxTokenLifetime="15m"), v, "t", now=NOW)
        assert (long_lived.reason, long_lived.status) == (INVALID_TOKEN, 401)
        assert "maxTokenLifetime" in long_lived.description
        snapshot = policy(base, maxTokenLifetime="2h")
        assert (await check(snapshot, v, "t", now=NOW)).allowed
        v.revocations.revoke(kind="subject", value="alice", now=NOW)
        revoked = await check(snapshot, v, "t", now=NOW + 1)
        assert (revoked.reason, revoked.status) == (INVALID_TOKEN, 401)
        assert "revoked" in revoked.description


async def test_each_issuer_gets_its_own_call_and_answer(
    endpoint: tuple[Endpoint, str], secrets: Path
) -> None:
    state, base = endpoint
    state.answer = lambda _f: web.json_response({"active": False})
    state.answer_b = lambda _f: web.json_response(active(sub="bob"))
    document = introspecting_policy(base, endpoint=f"{base}/introspect", cache_seconds=60)
    second = dict(document["spec"]["issuers"][0])
    second.update(
        issuer="https://b.test",
        jwksUri="https://b.test/jwks",
        introspection={**second["introspection"], "endpoint": f"{base}/introspect-b"},
    )
    document["spec"]["issuers"].append(second)
    document["spec"]["response"]["setHeaders"].append({"name": "x-sub", "claim": "sub"})
    snapshot = snapshot_of(document)
    async with verifier(secrets) as (v, _):
        decisions = await asyncio.gather(*(check(snapshot, v, "t", now=NOW) for _ in range(10)))
    assert all(d.allowed for d in decisions)
    assert ("x-sub", "bob") in decisions[0].set_headers
    assert state.calls == 2  # one per endpoint, shared by the ten checks
