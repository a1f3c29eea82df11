"""Brute-force blocking in the decision: who counts, who is blocked, for how long, at what cost.

Time is the `now` each check is given (an injected clock): no test sleeps."""

from __future__ import annotations

import pytest

from authz import errors
from authz.jwt.verify import Verifier
from authz.pipeline.address import parse_address
from authz.pipeline.context import Context
from authz.pipeline.request import CheckInput
from authz.pipeline.steps.blocks import key_of
from authz.pipeline.trace import NULL_TRACE, Trace
from authz.ratelimit.blockmemory import MemoryBlocks
from authz.ratelimit.blocks import Block, block_key, split_key
from tests.bruteforce.support import (
    NOW,
    PER_IP,
    build,
    check,
    forged,
    policy,
    token,
)

SNAPSHOT = build(policy())


async def fail(store: MemoryBlocks, times: int, *, ip: str = "10.0.0.1", now: float = NOW) -> None:
    for i in range(times):
        decision = await check(SNAPSHOT, store, bearer=forged(), ip=ip, now=now + i)
        assert decision.status == 401, decision


async def test_max_failures_block_the_client_even_with_a_valid_token() -> None:
    store = MemoryBlocks()
    await fail(store, 2)
    assert (await check(SNAPSHOT, store, bearer=token(), now=NOW + 3)).allowed
    await fail(store, 1, now=NOW + 4)  # the third 401 within 60 s starts the block
    decision = await check(SNAPSHOT, store, bearer=token(), now=NOW + 5)
    assert (decision.status, decision.reason) == (403, errors.BLOCKED)
    assert dict(decision.response_headers)["retry-after"] == str(15 * 60 - 1)
    assert decision.policy == "t/api"
    # Still blocked one second before the end, admitted at the end.
    almost = await check(SNAPSHOT, store, bearer=token(), now=NOW + 4 + 15 * 60 - 1)
    assert almost.reason == errors.BLOCKED
    assert dict(almost.response_headers)["retry-after"] == "1"
    assert (await check(SNAPSHOT, store, bearer=token(), now=NOW + 4 + 15 * 60)).allowed


async def test_a_blocked_request_never_reaches_the_token_verifier() -> None:
    store, verifier = MemoryBlocks(), Verifier()
    (issuers,) = (p.issuers for p in SNAPSHOT.policies)
    for i in range(3):
        await check(SNAPSHOT, store, bearer=forged(), now=NOW + i, verifier=verifier)
    for i in range(50):
        decision = await check(SNAPSHOT, store, bearer=token(), now=NOW + 10 + i, verifier=verifier)
        assert decision.reason == errors.BLOCKED
    # A token whose signature was checked is remembered; this one never was: the blocked
    # requests cost no signature check.
    assert verifier.cached(token(), issuers, now=NOW + 60) is None
    assert (await check(SNAPSHOT, None, bearer=token(), now=NOW + 61, verifier=verifier)).allowed
    assert verifier.cached(token(), issuers, now=NOW + 62) is not None


async def test_successful_requests_never_count() -> None:
    store = MemoryBlocks()
    for i in range(100):
        assert (await check(SNAPSHOT, store, bearer=token(), now=NOW + i)).allowed
        assert (await check(SNAPSHOT, store, path="/healthz", now=NOW + i)).allowed
    await fail(store, 2, now=NOW + 100)
    assert (await check(SNAPSHOT, store, bearer=token(), now=NOW + 200)).allowed
    assert store.counted_keys == 1
    assert len(store) == 0


async def test_other_denials_do_not_count() -> None:
    store = MemoryBlocks()
    snapshot = build(policy(rules=[{"name": "scoped", "scopes": {"allOf": ["admin"]}}]))
    for i in range(10):
        decision = await check(snapshot, store, bearer=token(), now=NOW + i)
        assert decision.reason == errors.INSUFFICIENT_SCOPE  # 403: authenticated, not a guess
    assert store.counted_keys == 0


async def test_missing_tokens_count_too() -> None:
    store = MemoryBlocks()
    for i in range(3):
        assert (await check(SNAPSHOT, store, now=NOW + i)).reason == errors.MISSING_TOKEN
    assert (await check(SNAPSHOT, store, bearer=token(), now=NOW + 3)).reason == errors.BLOCKED


async def test_failures_outside_the_window_do_not_add_up() -> None:
    store = MemoryBlocks()
    for i in range(10):  # one failure every 30 s: never 3 within 60 s
        await fail(store, 1, now=NOW + 30 * i)
    assert (await check(SNAPSHOT, store, bearer=token(), now=NOW + 285)).allowed
    await fail(store, 1, now=NOW + 295)  # 240, 270 and 295: three within 60 s
    assert (await check(SNAPSHOT, store, bearer=token(), now=NOW + 296)).reason == errors.BLOCKED


async def test_clients_are_blocked_separately() -> None:
    store = MemoryBlocks()
    await fail(store, 3, ip="10.0.0.1")
    assert (await check(SNAPSHOT, store, bearer=token(), ip="10.0.0.2")).allowed
    assert (await check(SNAPSHOT, store, bearer=token(), ip="10.0.0.1")).reason == errors.BLOCKED


async def test_the_client_address_comes_from_x_forwarded_for_behind_trusted_proxies() -> None:
    store = MemoryBlocks()
    for i in range(3):
        xff = {"x-forwarded-for": f"1.1.1.{i}, 203.0.113.9"}  # the left entry is the client's lie
        await check(SNAPSHOT, store, bearer=forged(), headers=xff, ip="10.9.9.9", hops=1)
    xff = {"x-forwarded-for": "203.0.113.9"}
    decision = await check(SNAPSHOT, store, bearer=token(), headers=xff, ip="10.9.9.9", hops=1)
    assert decision.reason == errors.BLOCKED
    assert [split_key(b.key)[2] for b in await store.blocks(int(NOW * 1000))] == ["203.0.113.9"]
    # The proxy's own address is not blocked.
    assert (await check(SNAPSHOT, store, bearer=token(), ip="10.9.9.9")).allowed


async def test_a_request_without_the_key_value_is_neither_counted_nor_blocked() -> None:
    by_header = {**PER_IP, "name": "per-client", "key": "header:x-client-id"}
    snapshot = build(policy([by_header]))
    store = MemoryBlocks()
    for i in range(10):
        await check(snapshot, store, bearer=forged(), now=NOW + i)
    assert store.counted_keys == 0
    assert (await check(snapshot, store, bearer=token(), now=NOW + 11)).allowed


async def test_header_values_are_stored_hashed() -> None:
    by_header = {**PER_IP, "name": "per-key", "key": "header:x-api-key"}
    snapshot = build(policy([by_header]))
    store = MemoryBlocks()
    secret = "sk_live_0123456789"
    for i in range(3):
        await check(snapshot, store, bearer=forged(), headers={"x-api-key": secret}, now=NOW + i)
    (block,) = await store.blocks(int(NOW * 1000))
    assert secret not in block.key
    assert block.key.startswith("t/api:per-key#")
    blocked = await check(snapshot, store, bearer=token(), headers={"x-api-key": secret})
    assert blocked.reason == errors.BLOCKED


async def test_a_claim_key_reads_the_presented_token() -> None:
    by_sub = {**PER_IP, "name": "per-sub", "key": "claim:sub"}
    snapshot = build(policy([by_sub]))
    store = MemoryBlocks()
    for i in range(3):
        await check(snapshot, store, bearer=forged("mallory"), ip=f"10.0.0.{i}", now=NOW + i)
    assert [b.key for b in await store.blocks(int(NOW * 1000))] == ["t/api:per-sub=mallory"]
    refused = await check(snapshot, store, bearer=token("mallory"), ip="10.1.1.1")
    assert refused.reason == errors.BLOCKED
    assert (await check(snapshot, store, bearer=token("alice"), ip="10.1.1.1")).allowed
    # Garbage that is no JWT has no claim: not counted.
    for i in range(5):
        await check(snapshot, store, bearer="not-a-jwt", now=NOW + i)
    assert len(store) == 1


async def test_every_protection_counts_and_the_longest_block_answers() -> None:
    short = {**PER_IP, "name": "short", "blockFor": "1m"}
    long = {**PER_IP, "name": "long", "maxFailures": 3, "blockFor": "1h"}
    snapshot = build(policy([short, long]))
    store = MemoryBlocks()
    for i in range(3):
        await check(snapshot, store, bearer=forged(), now=NOW + i)
    decision = await check(snapshot, store, bearer=token(), now=NOW + 3)
    assert dict(decision.response_headers)["retry-after"] == str(3600 - 1)
    assert "long" in decision.description


async def test_dry_run_counts_and_logs_would_be_blocks_without_blocking() -> None:
    snapshot = build(policy(mode="dryRun"))
    store = MemoryBlocks()
    for i in range(3):
        await check(snapshot, store, bearer=forged(), now=NOW + i)
    assert len(store) == 1  # the block started...
    decision = await check(snapshot, store, bearer=token(), now=NOW + 4)
    assert decision.dry_run
    assert decision.reason == errors.BLOCKED


async def test_explain_shows_the_block_and_counts_nothing() -> None:
    store = MemoryBlocks()
    for i in range(5):
        await check(SNAPSHOT, store, bearer=forged(), now=NOW + i, consume=False)
    assert store.counted_keys == 0
    await fail(store, 3)
    trace = Trace()
    decision = await check(SNAPSHOT, store, bearer=token(), trace=trace, consume=False)
    assert decision.reason == errors.BLOCKED
    (step,) = [s for s in trace.steps if s.name == "blocks"]
    assert step.outcome == "fail"
    assert "per-ip" in step.detail


async def test_policies_without_protection_never_touch_the_store() -> None:
    plain = build(policy([], name="plain"))
    store = MemoryBlocks()
    for i in range(10):
        await check(plain, store, host="plain.test", bearer=forged(), now=NOW + i)
    assert store.counted_keys == 0


class _Away(MemoryBlocks):
    @property
    def available(self) -> bool:
        return False


async def test_closed_failure_mode_denies_while_the_shared_store_is_away() -> None:
    closed = build(policy(rateLimitFailureMode="closed"))
    decision = await check(closed, _Away(), bearer=token())
    assert (decision.status, decision.reason) == (503, errors.RATELIMIT_UNAVAILABLE)
    assert (await check(SNAPSHOT, _Away(), bearer=token())).allowed  # fallback: carries on


async def test_clearing_a_block_by_key_or_by_value() -> None:
    store = MemoryBlocks()
    await fail(store, 3, ip="10.0.0.1")
    await fail(store, 3, ip="10.0.0.2")
    assert await store.clear("t/api:per-ip=10.0.0.1") == 1
    assert await store.clear("10.0.0.2") == 1
    assert await store.clear("10.0.0.3") == 0
    assert (await check(SNAPSHOT, store, bearer=token(), ip="10.0.0.2")).allowed


def test_block_keys_split_into_policy_protection_and_value() -> None:
    assert split_key("ns/p:per-ip=2001:db8::1") == ("ns/p", "per-ip", "2001:db8::1")
    assert split_key("ns/p:per-key#abc") == ("ns/p", "per-key", "#abc")
    assert split_key("ns/p:sub=a=b") == ("ns/p", "sub", "a=b")


@pytest.mark.parametrize("max_keys", [1, 100])
async def test_a_flood_of_distinct_clients_stays_bounded(max_keys: int) -> None:
    store = MemoryBlocks(max_keys=max_keys)
    now_ms = int(NOW * 1000)
    for i in range(5000):
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        for j in range(3):
            await check(SNAPSHOT, store, bearer="x", ip=ip, now=NOW + j)
    assert len(store) <= max_keys
    assert store.counted_keys <= max_keys
    assert store.evicted > 0
    blocks = await store.blocks(now_ms)
    assert len(blocks) == min(max_keys, 5000)
    assert blocks[-1] == Block("t/api:per-ip=10.0.19.135", now_ms + 2000 + 15 * 60 * 1000)


@pytest.mark.parametrize(
    "peer", ["10.0.0.1", "::ffff:10.0.0.1", "2001:DB8::1", "[2001:db8::1]:443"]
)
def test_the_address_fast_path_builds_the_same_key_as_block_key(peer: str) -> None:
    policy = SNAPSHOT.policies[0]
    protection = policy.brute_force[0]
    request = CheckInput("GET", "api.test", "/", {}, source_ip=peer)
    ctx = Context(request, policy, Verifier(), None, NOW, True, 0, NULL_TRACE)
    expected = block_key(protection.prefix, protection.key.kind, str(parse_address(peer)))
    assert key_of(protection, ctx) == expected
    assert expected is not None
    assert expected.endswith("=10.0.0.1") or expected.endswith("=2001:db8::1")


async def test_hostile_key_values_stay_small_and_never_stored_raw() -> None:
    by_header = {**PER_IP, "name": "per-key", "key": "header:x-api-key"}
    by_claim = {**PER_IP, "name": "per-sub", "key": "claim:sub"}
    snapshot = build(policy([by_header, by_claim]))
    store = MemoryBlocks()
    huge = "k" * 60_000
    oversized = forged("x" * 9000)  # a token past the verifier's size limit: no claim is read
    for i in range(3):
        await check(snapshot, store, bearer=oversized, headers={"x-api-key": huge}, now=NOW + i)
    (block,) = await store.blocks(int(NOW * 1000))  # the header counted; the claim was not read
    assert len(block.key) < 80
    long_sub = forged("é" * 100)  # long, not ASCII: hashed
    for i in range(3):
        await check(snapshot, store, bearer=long_sub, ip="10.0.0.9", now=NOW + i)
    keys = [b.key for b in await store.blocks(int(NOW * 1000))]
    assert any(k.startswith("t/api:per-sub#") for k in keys)
    assert all(len(k) < 80 for k in keys)
