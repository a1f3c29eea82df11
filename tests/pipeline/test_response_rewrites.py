"""The allow step's query rewrites and the scopes it hands to ext_proc, through `decide` and
into the CheckResponse Envoy receives: smuggled spellings removed, claims percent-encoded,
absent or unsafe claims removing the parameter, and only the waiving scopes reported."""

from __future__ import annotations

from typing import Any

import pytest

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import Trace
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.server.convert import EXT_PROC_HEADER, to_check_response
from tests.support.keys import rsa_key
from tests.support.policies import auth_policy, issuer, rule

NOW = 1_800_000_000
KEY = rsa_key("q1")
ISSUER = "https://issuer.test"

POLICY = auth_policy(
    "crm",
    namespace="t",
    issuers=[issuer(name=ISSUER, audiences=["crm"], keys=[KEY])],
    rules=[
        rule(
            "customers",
            paths=["/customers/**"],
            responseBody={
                "redact": [
                    {"paths": ["$.ssn"], "unlessScopes": ["pii:read", "pii:ssn"]},
                    {"paths": ["$.card"], "unlessScopes": ["pci:read"]},
                ]
            },
        ),
        rule("open", paths=["/open"]),
    ],
    response={
        "removeQueryParameters": ["api_key", "a b"],
        "setQueryParameters": [
            {"name": "tenant", "claim": "org.tenant"},
            {"name": "src", "value": "gw&x=1"},
        ],
    },
)


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    store = PolicyStore(bind=offline_provider)
    built = store.update("test", [SourceDocument("p.yaml:0", POLICY)])
    assert [s.state.value for s in built.states] == ["ready"], built.states
    return built


async def run(
    snapshot: Snapshot, path: str, *, trace: Trace | None = None, **claims: Any
) -> Decision:
    payload = {"iss": ISSUER, "aud": "crm", "sub": "ada", "exp": NOW + 600, **claims}
    request = CheckInput(
        method="GET",
        host="crm.test",
        raw_path=path,
        headers={"authorization": f"Bearer {KEY.sign(payload)}"},
    )
    return await decide(snapshot, request, verifier=Verifier(), now=NOW, trace=trace)


async def test_query_rewrites(snapshot: Snapshot) -> None:
    decision = await run(snapshot, "/open?tenant=evil&x=1", org={"tenant": "acme corp/1"})
    assert decision.allowed
    assert decision.set_query == (("tenant", "acme%20corp%2F1"), ("src", "gw%26x%3D1"))
    assert decision.remove_query == ("api_key", "a%20b")
    ok = to_check_response(decision).ok_response
    assert [(q.key, q.value) for q in ok.query_parameters_to_set] == list(decision.set_query)
    assert list(ok.query_parameters_to_remove) == list(decision.remove_query)


@pytest.mark.parametrize(
    "query",
    [
        "api%5Fkey=1",
        "api%5fkey=1",
        "%61pi_key=1",
        "api_key",
        "a+b=1",
        "a%20b=1",
        "tenant%3D=1&ten%61nt=2",
    ],
)
async def test_smuggled_spellings_are_removed_as_sent(snapshot: Snapshot, query: str) -> None:
    decision = await run(snapshot, f"/open?{query}", org={"tenant": "acme"})
    sent = [part.partition("=")[0] for part in query.split("&")]
    smuggled = [key for key in sent if key not in ("tenant%3D",)]
    assert set(smuggled) <= set(decision.remove_query) | {"tenant"}
    assert "tenant%3D" not in decision.remove_query  # decodes to "tenant=", another name


async def test_double_encoding_is_not_decoded_twice(snapshot: Snapshot) -> None:
    decision = await run(snapshot, "/open?api%255Fkey=1")
    assert "api%255Fkey" not in decision.remove_query  # the upstream sees "api%5Fkey"


@pytest.mark.parametrize("tenant", [None, "", "a\r\nb", "nul\x00", {"deep": 1}])
async def test_absent_or_unsafe_claim_removes_the_parameter(
    snapshot: Snapshot, tenant: Any
) -> None:
    claims: dict[str, Any] = {} if tenant is None else {"org": {"tenant": tenant}}
    decision = await run(snapshot, "/open?tenant=evil", **claims)
    if isinstance(tenant, dict):
        assert decision.set_query[0][0] == "tenant"  # objects render as compact JSON
        return
    assert [name for name, _ in decision.set_query] == ["src"]
    assert "tenant" in decision.remove_query


async def test_flooded_query_is_bounded(snapshot: Snapshot) -> None:
    query = "&".join(f"k{i}=1" for i in range(50_000)) + "&api%5Fkey=1"
    decision = await run(snapshot, f"/open?{query}")
    assert decision.allowed
    assert "api%5Fkey" not in decision.remove_query  # beyond the keys looked at


async def test_scopes_for_the_response_filter(snapshot: Snapshot) -> None:
    trace = Trace()
    decision = await run(
        snapshot, "/customers/1", trace=trace, scope="pii:read pci:read orders:write"
    )
    assert decision.scopes == ("pci:read", "pii:read")  # only waiving scopes, never the rest
    metadata = to_check_response(decision).dynamic_metadata
    scopes = metadata.fields["scopes"].list_value.values
    assert [v.string_value for v in scopes] == ["pci:read", "pii:read"]
    explained = [s.detail for s in trace.steps if s.name == "redact"]
    assert explained == ["response fields: mask $.ssn"]
    plain = await run(snapshot, "/open", scope="pii:read")
    assert plain.scopes == ()
    assert "scopes" not in to_check_response(plain).dynamic_metadata


def test_generated_fields_match_envoy_numbers() -> None:
    fields = pb.OkHttpResponse.DESCRIPTOR.fields_by_name
    assert fields["query_parameters_to_set"].number == 7
    assert fields["query_parameters_to_remove"].number == 8


async def test_the_ext_proc_marker_is_set_only_where_nothing_is_redacted(
    snapshot: Snapshot,
) -> None:
    def marker(decision: Decision) -> tuple[list[str], bool]:
        ok = to_check_response(decision).ok_response
        set_ = [h.header.value for h in ok.headers if h.header.key == EXT_PROC_HEADER]
        return set_, EXT_PROC_HEADER in ok.headers_to_remove

    assert marker(await run(snapshot, "/open")) == (["skip"], False)
    # a rule that redacts for this token: the marker (maybe forged by the client) is removed
    assert marker(await run(snapshot, "/customers/1", scope="pii:read")) == ([], True)
    # every redaction waived: nothing for ext_proc to do
    both = await run(snapshot, "/customers/1", scope="pii:read pii:ssn pci:read")
    assert marker(both) == (["skip"], False)
    # a dryRun policy's would-be denial is allowed by Envoy: never marked
    would_be = Decision(False, "insufficient_scope", 403, dry_run=True)
    assert marker(would_be) == ([], True)
