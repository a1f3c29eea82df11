"""Opaque tokens of a real authorization server (npm oidc-provider), introspected by the sidecar.

Tokens come from the client-credentials grant; revocation happens at the provider (RFC 7009);
the provider is stopped and restarted under the sidecar. Time is the check's `now`: the real
wall clock, since the provider stamps exp with its own, plus offsets to pass cache bounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from authz.errors import INVALID_TOKEN, ISSUER_UNAVAILABLE
from authz.pipeline.trace import Trace
from tests.introspection.support import (
    check,
    introspecting_policy,
    snapshot_of,
    verifier,
    write_secret,
)
from tests.support.oidc import GATEWAY, JWT_RESOURCE, OidcProvider


@pytest.fixture(scope="module")
def op(
    tmp_path_factory: pytest.TempPathFactory, start_oidc: Callable[..., OidcProvider]
) -> Iterator[OidcProvider]:
    with start_oidc(tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "secrets", GATEWAY.secret + "\n")


async def test_an_opaque_token_is_allowed_with_its_introspected_members(
    op: OidcProvider, secrets: Path
) -> None:
    snapshot = snapshot_of(introspecting_policy(op.issuer, endpoint=op.introspection_endpoint))
    token = op.client_credentials_token(scope="orders:read").access_token
    async with verifier(secrets) as (v, _):
        trace = Trace()
        decision = await check(snapshot, v, token, now=time.time(), trace=trace)
    assert decision.allowed, decision
    assert ("x-client", GATEWAY.client_id) in decision.set_headers
    assert any("valid introspected token" in s.detail for s in trace.steps)


async def test_discovery_finds_the_introspection_endpoint(op: OidcProvider, secrets: Path) -> None:
    snapshot = snapshot_of(introspecting_policy(op.issuer, endpoint=None))
    token = op.client_credentials_token(scope="orders:read").access_token
    async with verifier(secrets) as (v, _):
        assert (await check(snapshot, v, token, now=time.time())).allowed


async def test_scopes_of_the_answer_are_enforced(op: OidcProvider, secrets: Path) -> None:
    snapshot = snapshot_of(introspecting_policy(op.issuer, endpoint=op.introspection_endpoint))
    token = op.client_credentials_token(scope="orders:write").access_token
    async with verifier(secrets) as (v, _):
        decision = await check(snapshot, v, token, now=time.time())
    assert (decision.allowed, decision.reason) == (False, "insufficient_scope")


async def test_a_token_revoked_at_the_provider_is_refused_once_the_cache_bound_passes(
    op: OidcProvider, secrets: Path
) -> None:
    snapshot = snapshot_of(
        introspecting_policy(op.issuer, endpoint=op.introspection_endpoint, cache_seconds=10)
    )
    token = op.client_credentials_token(scope="orders:read").access_token
    now = time.time()
    async with verifier(secrets) as (v, introspector):
        assert (await check(snapshot, v, token, now=now)).allowed
        op.revoke(token)
        # Within cacheSeconds the cached answer serves (the documented bound) ...
        assert (await check(snapshot, v, token, now=now + 5)).allowed
        # ... and past it the provider is asked again and says inactive.
        late = await check(snapshot, v, token, now=now + 11)
        assert (late.allowed, late.reason, late.status) == (False, INVALID_TOKEN, 401)
        assert "not active" in late.description
        assert introspector.cached == 1  # the inactive answer, cached briefly


async def test_wrong_secret_or_audience_never_allows(op: OidcProvider, tmp_path: Path) -> None:
    wrong = write_secret(tmp_path / "wrong", "not-the-secret")
    snapshot = snapshot_of(introspecting_policy(op.issuer, endpoint=op.introspection_endpoint))
    token = op.client_credentials_token(scope="orders:read").access_token
    async with verifier(wrong) as (v, _):
        decision = await check(snapshot, v, token, now=time.time())
    assert (decision.allowed, decision.reason, decision.status) == (False, ISSUER_UNAVAILABLE, 503)
    assert "not-the-secret" not in decision.description

    other = introspecting_policy(op.issuer, endpoint=op.introspection_endpoint)
    other["spec"]["issuers"][0]["audiences"] = ["billing-api"]
    async with verifier(write_secret(tmp_path / "ok", GATEWAY.secret)) as (v, _):
        decision = await check(snapshot_of(other), v, token, now=time.time())
    assert (decision.reason, decision.status) == (INVALID_TOKEN, 401)


async def test_a_missing_secret_is_503_naming_the_file(op: OidcProvider, tmp_path: Path) -> None:
    snapshot = snapshot_of(introspecting_policy(op.issuer, endpoint=op.introspection_endpoint))
    token = op.client_credentials_token(scope="orders:read").access_token
    async with verifier(tmp_path / "empty") as (v, introspector):
        decision = await check(snapshot, v, token, now=time.time())
    assert (decision.reason, decision.status) == (ISSUER_UNAVAILABLE, 503)
    assert introspector.cached == 0


async def test_jwts_of_the_same_issuer_are_still_verified_locally(
    op: OidcProvider, secrets: Path
) -> None:
    snapshot = snapshot_of(introspecting_policy(op.issuer, endpoint=op.introspection_endpoint))
    jwt_token = op.client_credentials_token(resource=JWT_RESOURCE).access_token
    async with verifier(secrets) as (v, introspector):
        decision = await check(snapshot, v, jwt_token, now=time.time())
    # Keys are never fetched offline: the JWT went to local verification, not introspection.
    assert (decision.reason, decision.status) == (ISSUER_UNAVAILABLE, 503)
    assert "signing keys" in decision.description
    assert introspector.cached == 0


async def test_provider_stopped_then_restarted(op: OidcProvider, secrets: Path) -> None:
    snapshot = snapshot_of(
        introspecting_policy(op.issuer, endpoint=op.introspection_endpoint, cache_seconds=30)
    )
    cached = op.client_credentials_token(scope="orders:read").access_token
    fresh = op.client_credentials_token(scope="orders:read").access_token
    now = time.time()
    async with verifier(secrets, breaker_threshold=2, breaker_open=5.0) as (v, _):
        assert (await check(snapshot, v, cached, now=now)).allowed
        op.stop()
        try:
            # A cached positive answer keeps serving; a new token fails closed with 503.
            assert (await check(snapshot, v, cached, now=now + 1)).allowed
            for _ in range(2):
                down = await check(snapshot, v, fresh, now=now + 1)
                assert (down.allowed, down.reason, down.status) == (False, ISSUER_UNAVAILABLE, 503)
        finally:
            op.restart()
        # The breaker is open: no call yet, even though the provider is back ...
        shed = await check(snapshot, v, fresh, now=now + 2)
        assert shed.reason == ISSUER_UNAVAILABLE
        assert "failing" in shed.description
        # ... and after breaker_open one call probes it: the token survived the restart.
        assert (await check(snapshot, v, fresh, now=now + 7)).allowed


async def test_one_call_for_many_concurrent_checks_of_one_token(
    op: OidcProvider, secrets: Path
) -> None:
    snapshot = snapshot_of(introspecting_policy(op.issuer, endpoint=op.introspection_endpoint))
    token = op.client_credentials_token(scope="orders:read").access_token
    results: list[str] = []
    async with verifier(secrets, observe=results.append) as (v, _):
        now = time.time()
        decisions = await asyncio.gather(*(check(snapshot, v, token, now=now) for _ in range(50)))
    assert all(d.allowed for d in decisions)
    assert results.count("active") == 1
    assert results.count("cached") == 0  # the 49 others joined the one call in flight
