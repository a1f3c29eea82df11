"""What brute-force protection costs per check, in-process (docs/performance.md). Each scenario
proves its answer before it is timed, and the blocked one that it never reached the verifier."""

from __future__ import annotations

import asyncio
import functools
import time

from authz.jwt.verify import Verifier
from authz.ratelimit.blockmemory import MemoryBlocks
from authz.ratelimit.blocks import block_key
from authz.ratelimit.spec import KeyKind
from bench import micro
from bench.material import Material, sidecar_policy
from bench.procs import BenchError
from bench.results import InProcess

CLIENT = "127.0.0.1"  # the client address micro.check_request sends (Envoy's peer).
PROTECTION = {"name": "per-ip", "key": "sourceIP", "maxFailures": 5, "window": "1m"}
OK, UNAUTHENTICATED, PERMISSION_DENIED = 0, 16, 7  # google.rpc codes of the answers.


class _CountsOnly(MemoryBlocks):
    """Counts failures and starts blocks, but never enforces them: every forged check stays a
    counted 401 instead of turning into a cheap blocked one after `maxFailures`."""

    def blocked_ms(self, key: str, now_ms: int) -> int:
        return 0


async def _inprocess(material: Material, *, iterations: int, repeats: int) -> list[InProcess]:
    policy = sidecar_policy(material)
    policy["spec"]["protection"] = {"bruteForce": [{**PROTECTION, "blockFor": "31d"}]}
    plain, guarded = micro.snapshot(sidecar_policy(material)), micro.snapshot(policy)
    valid = micro.check_request(token=material.token)
    forged = micro.check_request(token=material.token_bad_signature)
    blocked_key = block_key("bench/bench:per-ip", KeyKind.SOURCE_IP, CLIENT)
    assert blocked_key is not None
    until = int((time.time() + 30 * 86400) * 1000)
    free, blocking, other = MemoryBlocks(), MemoryBlocks(), MemoryBlocks()
    blocking.put(blocked_key, until)
    other.put(blocked_key.replace(CLIENT, "192.0.2.1"), until)
    denied, failed = PERMISSION_DENIED, UNAUTHENTICATED
    scenarios = [
        ("none", "the policy without protection: allowed", plain, free, valid, OK),
        ("protected", "a sourceIP protection, nobody blocked: allowed", guarded, free, valid, OK),
        ("protected-busy", "the same, another client blocked: allowed", guarded, other, valid, OK),
        ("blocked", "the client blocked: 403 blocked", guarded, blocking, valid, denied),
        ("allowed-cold", "protected, token verified afresh: allowed", guarded, free, valid, OK),
        ("failing", "a forged token: 401, counted", guarded, _CountsOnly(), forged, failed),
    ]
    out: list[InProcess] = []
    for name, what, current, store, request, code in scenarios:
        verifier = Verifier(cache_size=0 if name == "allowed-cold" else 10_000)
        call = functools.partial(micro.servicer(current, verifier, blocks=store).check, request)
        out.append(
            await micro.measure(name, what, call, iterations=iterations, repeats=repeats, code=code)
        )
        # A verified token is remembered: none is when every check was blocked before it.
        (issuers,) = (p.issuers for p in current.policies)
        if name == "blocked" and verifier.cached(material.token, issuers, now=time.time()):
            raise BenchError("bruteforce blocked: a blocked check reached the token verifier")
    return out


def run_inprocess(material: Material, *, iterations: int, repeats: int) -> list[InProcess]:
    return asyncio.run(_inprocess(material, iterations=iterations, repeats=repeats))
