"""RemoteKeys and KeyRegistry against a real HTTP server in its own process.

The server (tests/support/jwks_server.py) is scripted per path and counts the requests it
receives, so single-flight and rate limiting are proven on the wire, not by inspecting the
provider.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from authz.errors import TokenError
from authz.jwt.keys import KeySet
from authz.jwt.providers import KeyRegistry, RemoteKeys, StaticKeys, offline_provider
from authz.jwt.sources import KeySource, KeySourceKind
from authz.jwt.verify import IssuerSpec, Verifier
from authz.lifecycle import Background
from authz.settings import JwksSettings
from tests.support.jwks_server import JwksServer, Route
from tests.support.keys import AUDIENCE, ISSUER, ec_key, jwks, rsa_key
from tests.support.wait import until

RSA = rsa_key("rsa-1")
RSA_2 = rsa_key("rsa-2")
EC = ec_key("ec-1")
DOC = json.dumps(jwks(RSA))
FAST = JwksSettings(fetch_timeout=5.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JwksServer]:
    started = JwksServer.start(tmp_path_factory.mktemp("jwks") / "jwks-server.log")
    yield started
    started.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def unique(name: str = "jwks.json") -> str:
    return f"/{uuid.uuid4().hex}/{name}"


def remote(
    url: str,
    session: aiohttp.ClientSession,
    *,
    settings: JwksSettings = FAST,
    kind: KeySourceKind = KeySourceKind.JWKS_URI,
) -> RemoteKeys:
    return RemoteKeys(
        KeySource(kind, url), session=session, settings=settings, background=Background()
    )


def kids(keys: KeySet | None) -> list[str | None]:
    assert keys is not None
    return [k.kid for k in keys.keys]


# --- one provider -------------------------------------------------------------------------------


async def test_first_fetch_loads_keys(server: JwksServer, session: aiohttp.ClientSession) -> None:
    path = unique()
    provider = remote(await server.route(path, Route(body=DOC)), session)
    assert provider.keys is None
    assert provider.version == 0
    await provider.refresh()
    assert kids(provider.keys) == ["rsa-1"]
    assert provider.version == 1
    assert provider.last_error is None
    assert provider.first_attempt.is_set()
    assert server.hits(path) == 1


async def test_no_keys_until_a_fetch_succeeds(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    path = unique()
    provider = remote(await server.route(path, Route(status=500, body="boom")), session)
    await provider.refresh()
    assert provider.keys is None
    assert provider.version == 0
    assert provider.last_error == f"GET {server.url(path)} answered HTTP 500"
    assert provider.first_attempt.is_set()  # a failed first attempt counts as an attempt


@pytest.mark.parametrize(
    ("route", "error"),
    [
        pytest.param(Route(status=503), "answered HTTP 503", id="http-503"),
        pytest.param(Route(status=404, body=DOC), "answered HTTP 404", id="http-404"),
        pytest.param(Route(body="<html>"), "did not return JSON", id="not-json"),
        pytest.param(Route(body='{"keys": []}'), "no usable signature key", id="no-keys"),
        pytest.param(
            Route(body=json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
            "symmetric keys are never used",
            id="only-oct",
        ),
        pytest.param(Route(body="[1, 2]"), 'must be an object with a "keys" array', id="array"),
    ],
)
async def test_a_failing_server_keeps_the_last_good_keys(
    server: JwksServer, session: aiohttp.ClientSession, route: Route, error: str
) -> None:
    path = unique()
    provider = remote(await server.route(path, Route(body=DOC)), session)
    await provider.refresh()
    good = provider.keys
    await server.route(path, route)
    await provider.refresh()
    assert provider.keys is good
    assert provider.version == 1
    assert provider.last_error is not None
    assert error in provider.last_error
    await server.route(path, Route(body=DOC))
    await provider.refresh()
    assert provider.last_error is None
    assert provider.version == 1  # the same keys again: nothing changed


async def test_documents_over_the_size_limit_are_refused(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    settings = JwksSettings(max_document_bytes=len(DOC) + 10)
    path = unique()
    big = DOC + " " * 11
    for route in (Route(body=big), Route(body=big, chunks=3, chunk_delay=0.02)):
        provider = remote(await server.route(path, route), session, settings=settings)
        await provider.refresh()
        assert provider.keys is None
        assert provider.last_error == (
            f"GET {server.url(path)} answered more than {len(DOC) + 10} bytes"
        )
    # Exactly at the limit is fine.
    provider = remote(
        await server.route(path, Route(body=DOC + " " * 10)), session, settings=settings
    )
    await provider.refresh()
    assert kids(provider.keys) == ["rsa-1"]


async def test_a_large_document_arriving_in_pieces_is_read_whole(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    # Well under the 512 KiB default limit, but more than one network read.
    body = " " * 300_000 + json.dumps(jwks(RSA, EC))
    path = unique()
    provider = remote(
        await server.route(path, Route(body=body, chunks=4, chunk_delay=0.05)), session
    )
    await provider.refresh()
    assert provider.last_error is None
    assert kids(provider.keys) == ["rsa-1", "ec-1"]


async def test_a_slow_server_times_out(server: JwksServer, session: aiohttp.ClientSession) -> None:
    path = unique()
    settings = JwksSettings(fetch_timeout=0.1)
    provider = remote(
        await server.route(path, Route(body=DOC, delay=1.0)), session, settings=settings
    )
    await provider.refresh()
    assert provider.keys is None
    assert provider.last_error is not None
    assert "Timeout" in provider.last_error
    assert server.hits(path) == 1


async def test_redirects_are_not_followed(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    target = unique()
    await server.route(target, Route(body=DOC))
    path = unique()
    url = await server.route(path, Route(status=302, location=server.url(target)))
    provider = remote(url, session)
    await provider.refresh()
    assert provider.keys is None
    assert provider.last_error == f"GET {url} answered HTTP 302"
    assert server.hits(target) == 0


async def test_urls_the_sidecar_must_not_fetch_are_refused(session: aiohttp.ClientSession) -> None:
    provider = remote("http://jwks.example/keys", session)
    await provider.refresh()
    assert provider.keys is None
    assert provider.last_error == (
        "refusing to fetch http://jwks.example/keys: must use https (plain http is allowed "
        "only for loopback hosts)"
    )


# --- discovery ----------------------------------------------------------------------------------


async def _issuer(server: JwksServer, config: dict[str, Any] | str) -> tuple[str, str]:
    """Script a discovery document; returns (issuer, discovery path)."""
    base = unique("issuer")
    issuer = server.url(base)
    path = f"{base}/.well-known/openid-configuration"
    body = config if isinstance(config, str) else json.dumps(config).replace("ISSUER", issuer)
    await server.route(path, Route(body=body))
    return issuer, path


async def test_discovery_finds_the_jwks(server: JwksServer, session: aiohttp.ClientSession) -> None:
    jwks_path = unique()
    jwks_url = await server.route(jwks_path, Route(body=DOC))
    issuer, path = await _issuer(server, {"issuer": "ISSUER", "jwks_uri": jwks_url})
    provider = remote(issuer, session, kind=KeySourceKind.DISCOVERY)
    await provider.refresh()
    assert provider.last_error is None
    assert kids(provider.keys) == ["rsa-1"]
    assert server.hits(path) == 1
    assert server.hits(jwks_path) == 1


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param(
            {"issuer": "https://evil.test", "jwks_uri": "JWKS"},
            "discovery document names issuer 'https://evil.test', expected ",
            id="issuer-mismatch",
        ),
        pytest.param(
            {"issuer": "ISSUER/", "jwks_uri": "JWKS"},
            "discovery document names issuer ",
            id="issuer-trailing-slash",
        ),
        pytest.param(
            {"issuer": "ISSUER", "jwks_uri": "http://jwks.example/keys"},
            "refusing to fetch http://jwks.example/keys: must use https",
            id="jwks-uri-plain-http",
        ),
        pytest.param(
            {"issuer": "ISSUER", "jwks_uri": "https://user:pw@jwks.example/keys"},
            "must not carry credentials",
            id="jwks-uri-credentials",
        ),
        pytest.param({"issuer": "ISSUER"}, "discovery document has no jwks_uri", id="no-jwks-uri"),
        pytest.param("[]", "discovery document is not a JSON object", id="not-an-object"),
    ],
)
async def test_discovery_refusals(
    server: JwksServer, session: aiohttp.ClientSession, config: dict[str, Any] | str, error: str
) -> None:
    jwks_path = unique()
    jwks_url = await server.route(jwks_path, Route(body=DOC))
    if isinstance(config, dict):
        config = {k: v.replace("JWKS", jwks_url) for k, v in config.items()}
    issuer, _ = await _issuer(server, config)
    provider = remote(issuer, session, kind=KeySourceKind.DISCOVERY)
    await provider.refresh()
    assert provider.keys is None
    assert provider.last_error is not None
    assert error in provider.last_error
    assert server.hits(jwks_path) == 0


# --- unknown kids, versions ---------------------------------------------------------------------


async def test_unknown_kid_refresh_is_single_flight(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    path = unique()
    provider = remote(await server.route(path, Route(body=DOC, delay=0.3)), session)
    await asyncio.gather(*(provider.refresh_for_unknown_kid() for _ in range(20)))
    assert server.hits(path) == 1
    assert kids(provider.keys) == ["rsa-1"]


async def test_unknown_kid_refresh_is_rate_limited(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    path = unique()
    provider = remote(await server.route(path, Route(body=DOC)), session)
    await provider.refresh_for_unknown_kid()
    await provider.refresh_for_unknown_kid()
    await provider.refresh_for_unknown_kid()
    assert server.hits(path) == 1
    # Without the interval every call fetches: the limit above is what saved the requests.
    unlimited = remote(
        server.url(path), session, settings=JwksSettings(unknown_kid_min_interval=0.0)
    )
    await unlimited.refresh_for_unknown_kid()
    await unlimited.refresh_for_unknown_kid()
    assert server.hits(path) == 3


async def test_version_increases_only_when_keys_change(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    path = unique()
    provider = remote(await server.route(path, Route(body=json.dumps(jwks(RSA, EC)))), session)
    await provider.refresh()
    assert provider.version == 1
    await provider.refresh()
    assert provider.version == 1
    same = {"keys": [EC.jwk, {**RSA.jwk, "x5t": "ignored"}, {"kty": "oct", "k": "eA"}]}
    await server.route(path, Route(body=json.dumps(same, indent=2)))
    await provider.refresh()
    assert provider.version == 1
    await server.route(path, Route(status=500))
    await provider.refresh()
    assert provider.version == 1
    await server.route(path, Route(body=json.dumps(jwks(RSA, EC, RSA_2))))
    await provider.refresh()
    assert provider.version == 2
    assert kids(provider.keys) == ["rsa-1", "ec-1", "rsa-2"]
    await server.route(path, Route(body=json.dumps(jwks(RSA_2))))
    await provider.refresh()
    assert provider.version == 3


async def test_key_rotation_reaches_the_verifier(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    path = unique()
    provider = remote(await server.route(path, Route(body=DOC)), session)
    await provider.refresh()
    issuers = {
        ISSUER: IssuerSpec(
            issuer=ISSUER,
            audiences=frozenset({AUDIENCE}),
            algorithms=frozenset({"RS256"}),
            leeway=30,
            provider=provider,
        )
    }
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": 4_000_000_000}
    verifier = Verifier()
    old = RSA.sign(claims)
    await verifier.verify(old, issuers, now=1_800_000_000)
    await server.route(path, Route(body=json.dumps(jwks(RSA_2))))  # rsa-1 rotated out
    verified = await verifier.verify(RSA_2.sign(claims), issuers, now=1_800_000_000)
    assert verified.claims["sub"] == "alice"
    assert server.hits(path) == 1  # one refetch, caused by the unknown kid
    with pytest.raises(TokenError, match="no signing key"):  # the cached old token is stale
        await verifier.verify(old, issuers, now=1_800_000_000)


async def test_closing_a_provider_mid_refresh_does_not_cancel_its_waiters(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    path = unique()
    provider = remote(await server.route(path, Route(body=DOC)), session)
    await provider.refresh()
    await server.route(path, Route(body=DOC, delay=1.0))
    waiters = [asyncio.create_task(provider.refresh_for_unknown_kid()) for _ in range(3)]

    await until(lambda: server.hits(path) == 1, what="fetching")
    provider.close()  # a policy reload dropped the issuer while checks wait for its keys
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert results == [None, None, None]
    assert kids(provider.keys) == ["rsa-1"]


async def test_a_waiter_cancelled_itself_is_still_cancelled(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    path = unique()
    provider = remote(await server.route(path, Route(body=DOC, delay=0.5)), session)
    waiter = asyncio.create_task(provider.refresh())

    await until(lambda: server.hits(path) == 1, what="fetching")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await provider.refresh()  # the shared fetch itself carried on
    assert kids(provider.keys) == ["rsa-1"]
    assert server.hits(path) == 1


# --- the registry -------------------------------------------------------------------------------


@pytest.fixture
async def registry(session: aiohttp.ClientSession) -> AsyncIterator[KeyRegistry]:
    created = KeyRegistry(
        settings=JwksSettings(refresh_interval=0.05, retry_initial=0.05), session=session
    )
    yield created
    await created.close()


async def test_one_provider_per_source(server: JwksServer, registry: KeyRegistry) -> None:
    url = await server.route(unique(), Route(body=DOC))
    source = KeySource(KeySourceKind.JWKS_URI, url)
    first = registry.provider(source)
    assert registry.provider(KeySource(KeySourceKind.JWKS_URI, url)) is first
    assert isinstance(first, RemoteKeys)
    inline = registry.provider(KeySource.inline(jwks(RSA)))
    assert isinstance(inline, StaticKeys)
    assert kids(inline.keys) == ["rsa-1"]
    assert inline.version == 1
    with pytest.raises(ValueError, match="no usable signature key"):
        registry.provider(KeySource.inline({"keys": [{"kty": "oct", "k": "eA"}]}))
    assert set(map(id, registry.providers())) == {id(first), id(inline)}


async def test_first_attempts_waits_for_every_remote_source(
    server: JwksServer, registry: KeyRegistry
) -> None:
    good = registry.provider(
        KeySource(KeySourceKind.JWKS_URI, await server.route(unique(), Route(body=DOC)))
    )
    failing = registry.provider(
        KeySource(KeySourceKind.JWKS_URI, await server.route(unique(), Route(status=500)))
    )
    await registry.first_attempts(10.0)
    assert kids(good.keys) == ["rsa-1"]
    assert failing.keys is None
    assert failing.last_error is not None


async def test_first_attempts_gives_up_after_its_deadline(
    server: JwksServer, registry: KeyRegistry
) -> None:
    slow = registry.provider(
        KeySource(KeySourceKind.JWKS_URI, await server.route(unique(), Route(body=DOC, delay=1.0)))
    )
    await registry.first_attempts(0.1)
    assert slow.keys is None


async def test_first_attempts_without_remote_sources_returns(registry: KeyRegistry) -> None:
    registry.provider(KeySource.inline(jwks(RSA)))
    await registry.first_attempts(0.0)
    assert len(registry.providers()) == 1


async def test_background_refresh_picks_up_new_keys(
    server: JwksServer, registry: KeyRegistry
) -> None:
    path = unique()
    provider = registry.provider(
        KeySource(KeySourceKind.JWKS_URI, await server.route(path, Route(status=500)))
    )
    await registry.first_attempts(10.0)
    await server.route(path, Route(body=DOC))  # retried after a failure

    await until(lambda: provider.keys is not None, what="loaded")
    await server.route(path, Route(body=json.dumps(jwks(RSA_2))))  # refreshed on schedule

    await until(lambda: provider.version == 2, what="rotated")
    assert kids(provider.keys) == ["rsa-2"]


async def test_retain_stops_unused_providers(server: JwksServer, registry: KeyRegistry) -> None:
    dropped_path, kept_path = unique(), unique()
    dropped = KeySource(KeySourceKind.JWKS_URI, await server.route(dropped_path, Route(body=DOC)))
    kept = KeySource(KeySourceKind.JWKS_URI, await server.route(kept_path, Route(body=DOC)))
    first_dropped = registry.provider(dropped)
    kept_provider = registry.provider(kept)
    inline = registry.provider(KeySource.inline(jwks(RSA)))

    await until(
        lambda: server.hits(dropped_path) >= 2 and server.hits(kept_path) >= 2, what="both polled"
    )
    registry.retain([kept, inline.source])
    assert {id(p) for p in registry.providers()} == {id(kept_provider), id(inline)}
    # A fetch of the dropped source already on the wire has landed once the kept one polled again.
    kept_at = server.hits(kept_path)
    await until(lambda: server.hits(kept_path) > kept_at, what="kept polled again")
    stopped_at = server.hits(dropped_path)
    kept_at = server.hits(kept_path)

    await until(lambda: server.hits(kept_path) >= kept_at + 3, what="kept polled more")
    assert server.hits(dropped_path) == stopped_at
    assert registry.provider(dropped) is not first_dropped  # a new provider on next use


def test_offline_provider_never_fetches() -> None:
    remote_source = KeySource(KeySourceKind.JWKS_URI, "https://issuer.example/jwks")
    unfetched = offline_provider(remote_source)
    assert unfetched.keys is None
    assert unfetched.version == 0
    assert unfetched.last_error == "keys are not fetched in offline validation"
    assert kids(offline_provider(KeySource.inline(jwks(RSA))).keys) == ["rsa-1"]
    with pytest.raises(ValueError, match="no usable"):
        offline_provider(KeySource.inline({"keys": []}))
