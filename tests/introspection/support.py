"""What the introspection tests share: a policy whose issuer introspects, its secret on disk,
and a way to decide one request against it with a real Introspector."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from authz.jwt.introspector import Introspector
from authz.jwt.providers import offline_provider
from authz.jwt.revocation import Revocations
from authz.jwt.secrets import FileSecrets
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.settings import IntrospectionSettings
from tests.support.policies import auth_policy, issuer, rule

HOST = "orders.test"
SECRET_NAME = "idp-client"


def write_secret(root: Path, value: str, *, namespace: str = "default") -> Path:
    """The client secret where a mounted Secret `idp-client` would put its key `secret`."""
    path = root / namespace / SECRET_NAME / "secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    return root


def introspecting_policy(
    issuer_url: str,
    *,
    endpoint: str | None,
    client_id: str = "orders-gateway",
    cache_seconds: int | None = None,
    **issuer_fields: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "clientId": client_id,
        "clientSecretRef": {"name": SECRET_NAME, "key": "secret"},
    }
    if endpoint is not None:
        spec["endpoint"] = endpoint
    if cache_seconds is not None:
        spec["cacheSeconds"] = cache_seconds
    fields: dict[str, Any] = {"introspection": spec, **issuer_fields}
    if endpoint is None:
        fields["discovery"] = True
    else:
        fields["jwksUri"] = f"{issuer_url}/jwks"
    return auth_policy(
        "orders",
        hosts=[HOST],
        issuers=[issuer(name=issuer_url, audiences=["orders-api"], **fields)],
        rules=[rule("read", paths=["/orders/**"], scopes=["orders:read"])],
        response={"setHeaders": [{"name": "x-client", "claim": "client_id"}]},
    )


def snapshot_of(document: dict[str, Any]) -> Snapshot:
    store = PolicyStore(bind=offline_provider)
    built = store.update(
        "test", [SourceDocument("policy.yaml:0", yaml.safe_load(yaml.safe_dump(document)))]
    )
    assert [s.state.value for s in built.states] == ["ready"], built.states
    return built


@asynccontextmanager
async def verifier(
    secrets: Path, *, observe: Callable[[str], None] | None = None, **settings: Any
) -> AsyncIterator[tuple[Verifier, Introspector]]:
    """A Verifier with a real Introspector; `settings` override IntrospectionSettings fields."""
    async with aiohttp.ClientSession() as session:
        introspector = Introspector(
            session=session,
            secrets=FileSecrets(secrets),
            observe=observe,
            settings=replace(IntrospectionSettings(secrets_dir=secrets), **settings),
        )
        yield Verifier(introspector=introspector, revocations=Revocations()), introspector


async def check(
    snapshot: Snapshot,
    verifier: Verifier,
    token: str | None,
    *,
    now: float,
    path: str = "/orders/1",
    trace: Trace | None = None,
) -> Decision:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    request = CheckInput(method="GET", host=HOST, raw_path=path, headers=headers)
    return await decide(snapshot, request, verifier=verifier, now=now, trace=trace)
