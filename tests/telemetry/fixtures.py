"""A policy with inline keys, compiled into a snapshot, and a servicer over it: real parts, in process."""

from __future__ import annotations

import json

import yaml

from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.memory import MemoryLimiter
from authz.server.observe import CheckObserver
from authz.server.servicer import AuthorizationServicer
from tests.support.keys import rsa_key

KEY = rsa_key("k1")
HOST = "api.test"
DRY_HOST = "dry.test"


def policy(*, name: str, host: str, mode: str | None = None) -> dict[str, object]:
    document = yaml.safe_load(
        f"""
apiVersion: authz.dev/v1alpha1
kind: AuthPolicy
metadata: {{name: {name}, namespace: t}}
spec:
  hosts: [{host}]
  issuers:
  - issuer: https://issuer.test
    audiences: [orders-api]
    jwks: {json.dumps({"keys": [KEY.jwk]})}
  rules:
  - {{name: open, match: {{paths: ["/public/**"]}}, allowAnonymous: true}}
  - {{name: read, match: {{methods: [GET], paths: ["/orders/*"]}}, scopes: {{allOf: [orders:read]}}}}
  response:
    setHeaders: [{{name: x-user, claim: sub}}]
    removeHeaders: [authorization]
"""
    )
    if mode is not None:
        document["spec"]["mode"] = mode
    result: dict[str, object] = document
    return result


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
