"""Policies, tokens and a counting verifier for the brute-force tests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.blocks import BlockStore
from tests.support.keys import rsa_key
from tests.support.policies import auth_policy, issuer, rule

NOW = 1_800_000_000.0
KEY = rsa_key("k1")
ISSUER = "https://issuer.test"
PER_IP = {"name": "per-ip", "key": "sourceIP", "maxFailures": 3, "window": "60s", "blockFor": "15m"}


#: An anonymous health check and one rule that only needs a valid token.
RULES = (rule("health", paths=["/healthz"], anonymous=True), rule("api", paths=["/**"]))


def policy(
    protections: Sequence[Mapping[str, Any]] = (PER_IP,),
    *,
    name: str = "api",
    rules: Sequence[dict[str, Any]] = RULES,
    **spec: Any,
) -> dict[str, Any]:
    return auth_policy(
        name,
        namespace="t",
        issuers=[issuer(keys=[KEY], audiences=["api"])],
        rules=rules,
        protection={"bruteForce": [dict(p) for p in protections]},
        **spec,
    )


def build(*documents: dict[str, Any]) -> Snapshot:
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    snapshot = store.update(
        "t",
        [SourceDocument(f"p{i}", yaml.safe_load(json.dumps(d))) for i, d in enumerate(documents)],
    )
    assert all(s.state.value == "ready" for s in snapshot.states), snapshot.states
    return snapshot


def token(sub: str = "alice", **extra: Any) -> str:
    claims = {"iss": ISSUER, "aud": "api", "exp": NOW + 86400, "sub": sub, **extra}
    return KEY.sign(claims)


#: Signed by a key no policy trusts: a well-formed token that fails verification.
FORGED = rsa_key("k1")


def forged(sub: str = "alice") -> str:
    return FORGED.sign({"iss": ISSUER, "aud": "api", "exp": NOW + 600, "sub": sub})


async def check(
    snapshot: Snapshot,
    store: BlockStore | None,
    *,
    bearer: str | None = None,
    ip: str = "10.0.0.1",
    host: str = "api.test",
    path: str = "/orders",
    headers: dict[str, str] | None = None,
    now: float = NOW,
    verifier: Verifier | None = None,
    consume: bool = True,
    trace: Trace | None = None,
    hops: int = 0,
) -> Decision:
    all_headers = dict(headers or {})
    if bearer is not None:
        all_headers["authorization"] = f"Bearer {bearer}"
    request = CheckInput("GET", host, path, all_headers, source_ip=ip)
    return await decide(
        snapshot,
        request,
        verifier=verifier or Verifier(),
        now=now,
        trace=trace,
        consume=consume,
        trusted_proxy_hops=hops,
        block_store=store,
    )
