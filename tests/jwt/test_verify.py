"""Verifier: signatures, claims, per-issuer algorithm allowlists, kid selection and the cache.

Keys come from `FakeProvider`, a KeyProvider (the verifier's seam) whose keys a test changes at
will - with or without bumping `version` - so the tests can tell a cached verification from a
fresh signature check by what the verifier accepts.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.errors import KeysUnavailable, TokenError
from authz.jwt.keys import SUPPORTED_ALGORITHMS, KeySet, parse_jwks
from authz.jwt.sources import KeySource, KeySourceKind
from authz.jwt.verify import IssuerSpec, Verifier
from tests.support.keys import AUDIENCE, ISSUER, SigningKey, craft, ec_key, ed_key, jwks, rsa_key
from tests.support.tiers import examples

NOW = 1_800_000_000
RSA = rsa_key("rsa-1")
RSA_2 = rsa_key("rsa-2")
IMPOSTOR = rsa_key("rsa-1")  # same kid as RSA, different key
EC = ec_key("ec-1")
ED = ed_key("ed-1")


class FakeProvider:
    """A KeyProvider whose keys the test controls; counts unknown-kid refreshes."""

    def __init__(self, *keys: SigningKey, name: str = "fake") -> None:
        self.source = KeySource(KeySourceKind.JWKS_URI, f"https://{name}.test/jwks")
        self._keys: KeySet | None = parse_jwks(jwks(*keys)) if keys else None
        self._version = 1 if keys else 0
        self.refreshes = 0
        #: Keys published by the next unknown-kid refresh (None: the refresh finds nothing new).
        self.on_refresh: tuple[SigningKey, ...] | None = None
        #: When set, an unknown-kid refresh waits for it (to model a slow issuer).
        self.block: asyncio.Event | None = None

    @property
    def keys(self) -> KeySet | None:
        return self._keys

    @property
    def version(self) -> int:
        return self._version

    @property
    def last_error(self) -> str | None:
        return None

    def publish(self, *keys: SigningKey, bump: bool = True) -> None:
        """Replace the keys; `bump=False` models keys changing without a version change."""
        self.publish_document(jwks(*keys), bump=bump)

    def publish_document(self, document: dict[str, Any], *, bump: bool = True) -> None:
        self._keys = parse_jwks(document)
        if bump:
            self._version += 1

    async def refresh_for_unknown_kid(self) -> None:
        self.refreshes += 1
        if self.block is not None:
            await self.block.wait()
        if self.on_refresh is not None:
            self.publish(*self.on_refresh)


def spec(
    provider: FakeProvider,
    *,
    issuer: str = ISSUER,
    audiences: tuple[str, ...] = (AUDIENCE,),
    algorithms: frozenset[str] = SUPPORTED_ALGORITHMS,
    leeway: float = 30.0,
) -> dict[str, IssuerSpec]:
    return {
        issuer: IssuerSpec(
            issuer=issuer,
            audiences=frozenset(audiences),
            algorithms=algorithms,
            leeway=leeway,
            provider=provider,
        )
    }


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": NOW + 600}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def sign_raw(key: SigningKey, body: dict[str, Any]) -> str:
    """Sign any JSON payload (PyJWT's encode refuses some hostile claim values)."""
    return jwt.api_jws.encode(
        json.dumps(body).encode(), key.private, algorithm=key.alg, headers={"kid": key.kid}
    )


def no_kid(key: SigningKey, body: dict[str, Any], alg: str | None = None) -> str:
    return jwt.encode(body, key.private, algorithm=alg or key.alg)


async def verify(
    token: str,
    issuers: dict[str, IssuerSpec],
    *,
    now: float = NOW,
    verifier: Verifier | None = None,
) -> dict[str, Any]:
    verified = await (verifier or Verifier()).verify(token, issuers, now=now)
    return dict(verified.claims)


# --- signatures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "alg"),
    [(RSA, "RS256"), (RSA, "RS512"), (RSA, "PS256"), (EC, "ES256"), (ED, "EdDSA")],
)
async def test_valid_tokens_verify(key: SigningKey, alg: str) -> None:
    provider = FakeProvider(RSA, EC, ED)
    verified = await Verifier().verify(key.sign(claims(), alg=alg), spec(provider), now=NOW)
    assert verified.alg == alg
    assert verified.claims["sub"] == "alice"
    assert verified.issuer.issuer == ISSUER


async def test_a_forged_signature_is_refused() -> None:
    provider = FakeProvider(RSA)
    with pytest.raises(TokenError, match=r"^token signature is invalid$"):
        await verify(IMPOSTOR.sign(claims()), spec(provider))


async def test_a_swapped_payload_is_refused() -> None:
    header, _, signature = RSA.sign(claims(sub="alice")).split(".")
    payload = RSA.sign(claims(sub="admin")).split(".")[1]
    swapped = f"{header}.{payload}.{signature}"
    with pytest.raises(TokenError, match="signature is invalid"):
        await verify(swapped, spec(FakeProvider(RSA)))


async def test_a_garbage_signature_is_invalid_not_an_error() -> None:
    token = craft({"alg": "ES256", "kid": "ec-1"}, claims(), bytes(64))
    with pytest.raises(TokenError, match="signature is invalid"):
        await verify(token, spec(FakeProvider(EC)))
    token = craft({"alg": "ES256", "kid": "ec-1"}, claims(), b"short")
    with pytest.raises(TokenError, match="signature is invalid"):
        await verify(token, spec(FakeProvider(EC)))


async def test_malformed_tokens_are_token_errors() -> None:
    with pytest.raises(TokenError, match="alg none"):
        await verify(craft({"alg": "none"}, claims()), spec(FakeProvider(RSA)))


async def test_the_size_cap_applies() -> None:
    token = RSA.sign(claims())
    verifier = Verifier(max_token_bytes=len(token) - 1)
    with pytest.raises(TokenError, match=f"larger than {len(token) - 1} bytes"):
        await verifier.verify(token, spec(FakeProvider(RSA)), now=NOW)


# --- claims -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "now", "message"),
    [
        pytest.param(claims(exp=None), NOW, "token has no exp claim", id="no-exp"),
        pytest.param(claims(exp="tomorrow"), NOW, "exp claim is not a number", id="exp-string"),
        pytest.param(claims(exp=True), NOW, "exp claim is not a number", id="exp-bool"),
        pytest.param(claims(exp=float("inf")), NOW, "exp claim is not a number", id="exp-inf"),
        pytest.param(claims(exp=10**400), NOW, "exp claim is not a number", id="exp-overflow"),
        pytest.param(claims(exp=-(10**400)), NOW, "exp claim is not a number", id="exp-underflow"),
        pytest.param(claims(nbf=10**400), NOW, "nbf claim is not a number", id="nbf-overflow"),
        pytest.param(claims(iat=10**4000), NOW, "iat claim is not a number", id="iat-overflow"),
        pytest.param(claims(exp=NOW - 31), NOW, "token has expired", id="expired-past-leeway"),
        pytest.param(claims(nbf=NOW + 31), NOW, "token is not valid yet", id="nbf-future"),
        pytest.param(claims(nbf="soon"), NOW, "token nbf claim is not a number", id="nbf-string"),
        pytest.param(claims(iat=NOW + 31), NOW, "issued in the future", id="iat-future"),
        pytest.param(claims(iat=[1]), NOW, "token iat claim is not a number", id="iat-list"),
        pytest.param(claims(aud=None), NOW, "audience is not accepted", id="no-aud"),
        pytest.param(claims(aud="other"), NOW, "audience is not accepted", id="aud-other"),
        pytest.param(claims(aud=["a", "b"]), NOW, "audience is not accepted", id="aud-list-other"),
        pytest.param(claims(aud=[]), NOW, "audience is not accepted", id="aud-empty-list"),
        pytest.param(claims(aud=[[AUDIENCE]]), NOW, "audience is not accepted", id="aud-nested"),
        pytest.param(claims(aud={"x": AUDIENCE}), NOW, "audience is not accepted", id="aud-obj"),
        pytest.param(claims(iss="https://evil.test"), NOW, "issuer is not trusted", id="iss-other"),
        pytest.param(claims(iss=None), NOW, "issuer is not trusted", id="no-iss"),
        pytest.param(claims(iss=["x"]), NOW, "issuer is not trusted", id="iss-list"),
        pytest.param(claims(iss=ISSUER + "/"), NOW, "issuer is not trusted", id="iss-slash"),
    ],
)
async def test_claim_checks(body: dict[str, Any], now: float, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        await verify(sign_raw(RSA, body), spec(FakeProvider(RSA)), now=now)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(claims(exp=NOW - 30), id="exp-within-leeway"),
        pytest.param(claims(exp=NOW + 0.5), id="exp-float"),
        pytest.param(claims(nbf=NOW + 30), id="nbf-within-leeway"),
        pytest.param(claims(iat=NOW + 30), id="iat-within-leeway"),
        pytest.param(claims(nbf=NOW - 10, iat=NOW - 10), id="nbf-iat-past"),
        pytest.param(claims(aud=["other", AUDIENCE]), id="aud-list"),
        pytest.param(claims(aud=[7, AUDIENCE]), id="aud-list-mixed"),
    ],
)
async def test_claims_accepted(body: dict[str, Any]) -> None:
    assert (await verify(RSA.sign(body), spec(FakeProvider(RSA))))["sub"] == "alice"


async def test_leeway_is_per_issuer() -> None:
    token = RSA.sign(claims(exp=NOW - 5))
    assert (await verify(token, spec(FakeProvider(RSA), leeway=10)))["sub"] == "alice"
    with pytest.raises(TokenError, match="expired"):
        await verify(token, spec(FakeProvider(RSA), leeway=0))


async def test_any_listed_audience_is_enough() -> None:
    token = RSA.sign(claims(aud="billing-api"))
    issuers = spec(FakeProvider(RSA), audiences=("orders-api", "billing-api"))
    assert (await verify(token, issuers))["aud"] == "billing-api"


async def test_the_issuer_is_chosen_by_iss() -> None:
    a, b = FakeProvider(RSA, name="a"), FakeProvider(EC, name="b")
    issuers = {**spec(a, issuer="https://a.test"), **spec(b, issuer="https://b.test")}
    verified = await Verifier().verify(EC.sign(claims(iss="https://b.test")), issuers, now=NOW)
    assert verified.issuer.issuer == "https://b.test"
    with pytest.raises(TokenError, match="no signing key"):  # a's keys never consulted for b
        await verify(RSA.sign(claims(iss="https://b.test")), issuers)


# --- algorithms and key selection ---------------------------------------------------------------


async def test_alg_allowlist_per_issuer() -> None:
    issuers = spec(FakeProvider(RSA), algorithms=frozenset({"RS256"}))
    assert (await verify(RSA.sign(claims()), issuers))["sub"] == "alice"
    with pytest.raises(TokenError, match=r"^token algorithm is not allowed$"):
        await verify(RSA.sign(claims(), alg="PS256"), issuers)


async def test_alg_must_fit_the_key() -> None:
    narrowed = FakeProvider()
    narrowed.publish_document({"keys": [{**RSA.jwk, "alg": "RS256"}]})
    with pytest.raises(TokenError, match="does not fit the signing key"):
        await verify(RSA.sign(claims(), alg="PS256"), spec(narrowed))
    # ES256 on an RSA kid: the key type decides, whatever the header claims.
    with pytest.raises(TokenError, match="does not fit the signing key"):
        await verify(EC.sign(claims(), headers={"kid": "rsa-1"}), spec(FakeProvider(RSA)))


async def test_hmac_with_the_public_key_is_refused() -> None:
    token = jwt.encode(claims(), "s" * 32, algorithm="HS256", headers={"kid": "rsa-1"})
    with pytest.raises(TokenError, match="algorithm is not allowed"):
        await verify(token, spec(FakeProvider(RSA)))


async def test_kid_selects_the_key() -> None:
    provider = FakeProvider(RSA, RSA_2)
    assert (await verify(RSA_2.sign(claims()), spec(provider)))["sub"] == "alice"
    with pytest.raises(TokenError, match="signature is invalid"):
        await verify(RSA_2.sign(claims(), headers={"kid": "rsa-1"}), spec(provider))


async def test_a_shared_kid_picks_the_key_that_fits_the_alg() -> None:
    ec_same_kid = ec_key("rsa-1")  # an RSA and an EC key published under one kid
    provider = FakeProvider(RSA, ec_same_kid)
    assert (await verify(ec_same_kid.sign(claims()), spec(provider)))["sub"] == "alice"
    assert (await verify(RSA.sign(claims()), spec(provider)))["sub"] == "alice"


async def test_no_kid_needs_exactly_one_key_for_the_alg() -> None:
    assert (await verify(no_kid(RSA, claims()), spec(FakeProvider(RSA))))["sub"] == "alice"
    # One RSA and one EC key: the alg picks the only fitting key.
    mixed = FakeProvider(RSA, EC)
    assert (await verify(no_kid(EC, claims()), spec(mixed)))["sub"] == "alice"
    assert (await verify(no_kid(RSA, claims()), spec(mixed)))["sub"] == "alice"
    with pytest.raises(TokenError, match="no kid and the issuer has no single key"):
        await verify(no_kid(RSA, claims()), spec(FakeProvider(RSA, RSA_2)))
    with pytest.raises(TokenError, match="no kid and the issuer has no single key"):
        await verify(no_kid(ED, claims()), spec(FakeProvider(RSA)))


async def test_keys_unavailable_before_the_first_load() -> None:
    provider = FakeProvider()
    with pytest.raises(KeysUnavailable) as caught:
        await verify(RSA.sign(claims()), spec(provider))
    assert caught.value.code == "issuer_unavailable"


async def test_a_first_load_in_flight_is_waited_for_not_answered_503() -> None:
    """A policy published a moment ago: its first fetch is running when the first token comes."""
    provider = FakeProvider()
    provider.on_refresh = (RSA,)
    assert (await verify(RSA.sign(claims()), spec(provider)))["sub"] == "alice"
    assert provider.refreshes == 1


async def test_unknown_kid_refreshes_once_then_verifies() -> None:
    provider = FakeProvider(RSA)
    provider.on_refresh = (RSA, RSA_2)
    assert (await verify(RSA_2.sign(claims()), spec(provider)))["sub"] == "alice"
    assert provider.refreshes == 1
    await verify(RSA.sign(claims()), spec(provider))
    assert provider.refreshes == 1  # known kids never refresh


async def test_unknown_kid_still_unknown_after_refresh() -> None:
    provider = FakeProvider(RSA)
    with pytest.raises(TokenError, match=r"^no signing key of the issuer matches the token's kid$"):
        await verify(RSA_2.sign(claims()), spec(provider))
    assert provider.refreshes == 1


async def test_unknown_kid_wait_is_bounded() -> None:
    provider = FakeProvider(RSA)
    provider.block = asyncio.Event()  # the issuer never answers
    verifier = Verifier(unknown_kid_wait=0.05)
    with pytest.raises(TokenError, match="no signing key"):
        await verifier.verify(RSA_2.sign(claims()), spec(provider), now=NOW)
    assert provider.refreshes == 1


# --- the cache ----------------------------------------------------------------------------------


async def test_a_cached_token_skips_the_signature_check() -> None:
    provider = FakeProvider(RSA)
    verifier = Verifier()
    token = RSA.sign(claims())
    issuers = spec(provider)
    await verifier.verify(token, issuers, now=NOW)
    # The keys change but the version does not: only a cache hit can still accept the token.
    provider.publish(RSA_2, bump=False)
    assert (await verifier.verify(token, issuers, now=NOW)).claims["sub"] == "alice"
    with pytest.raises(TokenError, match="no signing key"):
        await Verifier().verify(token, issuers, now=NOW)  # a fresh verifier checks and fails


async def test_a_version_bump_invalidates_cached_entries() -> None:
    provider = FakeProvider(RSA, RSA_2)
    verifier = Verifier()
    token = RSA.sign(claims())
    issuers = spec(provider)
    await verifier.verify(token, issuers, now=NOW)
    provider.publish(RSA_2)  # rsa-1 revoked
    with pytest.raises(TokenError, match="no signing key"):
        await verifier.verify(token, issuers, now=NOW)


async def test_a_failed_verification_is_not_cached() -> None:
    provider = FakeProvider(RSA_2)
    verifier = Verifier()
    token = RSA.sign(claims())
    issuers = spec(provider)
    with pytest.raises(TokenError):
        await verifier.verify(token, issuers, now=NOW)
    provider.publish(RSA, bump=False)
    assert (await verifier.verify(token, issuers, now=NOW)).claims["sub"] == "alice"


async def test_cached_tokens_still_expire_and_obey_the_allowlist() -> None:
    provider = FakeProvider(RSA)
    verifier = Verifier()
    token = RSA.sign(claims(exp=NOW + 60))
    await verifier.verify(token, spec(provider), now=NOW)
    with pytest.raises(TokenError, match="expired"):
        await verifier.verify(token, spec(provider), now=NOW + 91)
    with pytest.raises(TokenError, match="algorithm is not allowed"):
        await verifier.verify(token, spec(provider, algorithms=frozenset({"ES256"})), now=NOW)


async def test_a_cache_entry_does_not_satisfy_another_audience() -> None:
    provider = FakeProvider(RSA)
    verifier = Verifier()
    token = RSA.sign(claims())
    await verifier.verify(token, spec(provider), now=NOW)
    with pytest.raises(TokenError, match="audience is not accepted"):
        await verifier.verify(token, spec(provider, audiences=("billing-api",)), now=NOW)
    with pytest.raises(TokenError, match="issuer is not trusted"):
        await verifier.verify(token, spec(provider, issuer="https://other.test"), now=NOW)


async def test_a_cache_entry_does_not_satisfy_another_provider() -> None:
    trusted = FakeProvider(RSA, name="trusted")
    verifier = Verifier()
    token = RSA.sign(claims())
    await verifier.verify(token, spec(trusted), now=NOW)
    # Same issuer name, same version, but keys from another source: the entry must not count.
    other = FakeProvider(RSA_2, name="other")
    assert other.version == trusted.version
    with pytest.raises(TokenError, match="no signing key"):
        await verifier.verify(token, spec(other), now=NOW)


async def test_the_cache_is_a_bounded_lru() -> None:
    provider = FakeProvider(RSA)
    verifier = Verifier(cache_size=2)
    issuers = spec(provider)
    first, second, third = (RSA.sign(claims(sub=s)) for s in ("a", "b", "c"))
    for token in (first, second, third):
        await verifier.verify(token, issuers, now=NOW)
    await verifier.verify(second, issuers, now=NOW)  # second is now the most recent
    fourth = RSA.sign(claims(sub="d"))
    await verifier.verify(fourth, issuers, now=NOW)  # evicts third, not second
    provider.publish(RSA_2, bump=False)  # only cached tokens can still pass
    assert (await verifier.verify(second, issuers, now=NOW)).claims["sub"] == "b"
    assert (await verifier.verify(fourth, issuers, now=NOW)).claims["sub"] == "d"
    for evicted in (first, third):
        with pytest.raises(TokenError, match="no signing key"):
            await verifier.verify(evicted, issuers, now=NOW)


async def test_cache_size_zero_disables_the_cache() -> None:
    provider = FakeProvider(RSA)
    verifier = Verifier(cache_size=0)
    token = RSA.sign(claims())
    await verifier.verify(token, spec(provider), now=NOW)
    provider.publish(RSA_2, bump=False)
    with pytest.raises(TokenError, match="no signing key"):
        await verifier.verify(token, spec(provider), now=NOW)


async def test_clear_empties_the_cache() -> None:
    provider = FakeProvider(RSA)
    verifier = Verifier()
    token = RSA.sign(claims())
    await verifier.verify(token, spec(provider), now=NOW)
    provider.publish(RSA_2, bump=False)
    verifier.clear()
    with pytest.raises(TokenError, match="no signing key"):
        await verifier.verify(token, spec(provider), now=NOW)


# --- the cached entry's remembered window -------------------------------------------------------

_TIMES = st.floats(min_value=NOW - 200, max_value=NOW + 200, allow_nan=False)
_CLAIM_TIME = st.one_of(st.none(), st.integers(min_value=NOW - 150, max_value=NOW + 150))


@settings(max_examples=examples(60), deadline=None)
@given(
    exp=st.integers(min_value=NOW - 150, max_value=NOW + 150),
    nbf=_CLAIM_TIME,
    iat=_CLAIM_TIME,
    leeway=st.sampled_from([0.0, 5.0, 30.0]),
    max_lifetime=st.sampled_from([None, 60.0, 400.0]),
    times=st.lists(_TIMES, min_size=1, max_size=8),
)
async def test_a_cached_token_answers_as_the_full_claim_checks_do(
    exp: int,
    nbf: int | None,
    iat: int | None,
    leeway: float,
    max_lifetime: float | None,
    times: list[float],
) -> None:
    """A warm entry answers from the window it remembered: at every time, in any order (the
    clock may step back), its answer is the one the full checks give a fresh verifier."""
    provider = FakeProvider(RSA)
    issuer = IssuerSpec(
        issuer=ISSUER,
        audiences=frozenset({AUDIENCE}),
        algorithms=SUPPORTED_ALGORITHMS,
        leeway=leeway,
        provider=provider,
        max_lifetime=max_lifetime,
    )
    issuers = {ISSUER: issuer}
    token = RSA.sign(claims(exp=exp, nbf=nbf, iat=iat))
    warm = Verifier()

    async def outcome(verifier: Verifier, now: float) -> str:
        try:
            return str((await verifier.verify(token, issuers, now=now)).claims["sub"])
        except TokenError as exc:
            return str(exc)

    first_pass = [await outcome(warm, now) for now in times]
    second_pass = [await outcome(warm, now) for now in reversed(times)]
    fresh = [await outcome(Verifier(cache_size=0), now) for now in times]
    assert first_pass == fresh
    assert second_pass == fresh[::-1]
