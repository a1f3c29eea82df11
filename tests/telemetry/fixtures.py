"""A policy with inline keys, compiled into a snapshot, and a servicer over it: real parts, in process."""

from __future__ import annotations

from typing import Any

from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.memory import MemoryLimiter
from authz.server.observe import CheckObserver
from authz.server.servicer import AuthorizationServicer
from tests.support.keys import rsa_key
from tests.support.policies import auth_policy, issuer, rule

KEY = rsa_key("k1")
HOST = "api.test"
DRY_HOST = "dry.test"


def policy(*, name: str, host: str, mode: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"mode": mode} if mode is not None else {}
    return auth_policy(
        name,
        namespace="t",
        hosts=[host],
        issuers=[issuer(name="https://issuer.test", keys=[KEY])],
        rules=[
            rule("open", paths=["/public/**"], anonymous=True),
            rule("read", methods=["GET"], paths=["/orders/*"], scopes=["orders:read"]),
        ],
        response={
            "setHeaders": [{"name": "x-user", "claim": "sub"}],
            "removeHeaders": ["authorization"],
        },
        **extra,
    )


def snapshot() -> Snapshot:
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    snap = store.update(
        "test",
        [
            SourceDocument("test:0", policy(name="p", host=HOST)),
            SourceDocument("test:1", policy(name="dry", host=DRY_HOST, mode="dryRun")),
        ],
    )
    assert [s.state.value for s in snap.states] == ["ready", "ready"], snap.states
    return snap


def servicer(observer: CheckObserver | None = None) -> AuthorizationServicer:
    snap = snapshot()
    return AuthorizationServicer(
        snapshot=lambda: snap,
        limiter=MemoryLimiter(),
        verifier=Verifier(cache_size=64),
        observer=observer,
    )
