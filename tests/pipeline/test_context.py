"""The Context steps share: built by hand, a single step runs on it like in decide."""

from __future__ import annotations

from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.context import NO_CLAIMS, Context
from authz.pipeline.request import CheckInput
from authz.pipeline.steps import path, rule, scopes
from authz.pipeline.trace import NULL_TRACE, Step, Trace
from authz.policy.model import CompiledPolicy
from authz.policy.store import PolicyStore, SourceDocument
from tests.support import policies
from tests.support.keys import rsa_key

POLICY = policies.auth_policy(
    "c",
    namespace="t",
    issuers=[policies.issuer(name="https://i.test", audiences=["a"], keys=[rsa_key("k")])],
    rules=[
        policies.rule("open", paths=["/open/**"], anonymous=True),
        policies.rule("scoped", paths=["/scoped"], scopes=["s"]),
    ],
)


def compiled() -> CompiledPolicy:
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    snapshot = store.update("t", [SourceDocument("c", POLICY)])
    found = snapshot.lookup("c.test")
    assert found is not None
    return found


POLICY_C = compiled()


def context(raw_path: str, *, xff: str = "", hops: int = 0, trace: Trace | None = None) -> Context:
    headers = {"x-forwarded-for": xff} if xff else {}
    request = CheckInput("GET", "c.test", raw_path, headers, source_ip="10.0.0.9")
    return Context(request, POLICY_C, Verifier(), None, 0.0, True, hops, trace or NULL_TRACE)


def test_a_fresh_context_has_found_nothing() -> None:
    ctx = context("/open/x")
    assert (ctx.token, ctx.claims, ctx.subject, ctx.response_headers) == (None, NO_CLAIMS, None, ())
    assert ctx.rule_name() is None


def test_steps_hand_on_what_they_found() -> None:
    trace = Trace()
    ctx = context("/open/./a//b", trace=trace)
    assert path.normalize(ctx) is None
    assert rule.match_rule(ctx) is None
    assert (ctx.path, ctx.rule_name()) == ("/open/a/b", "open")
    assert trace.steps == [
        Step("path", "pass", "normalized to '/open/a/b'"),
        Step("rule", "pass", "rule 'open' matches GET /open/a/b"),
    ]


def test_without_a_verified_token_there_are_no_scopes() -> None:
    ctx = context("/scoped")
    path.normalize(ctx)
    rule.match_rule(ctx)
    denied = scopes.check_scopes(ctx)
    assert denied is not None
    assert (denied.status, denied.reason) == (403, "insufficient_scope")


def test_the_address_is_worked_out_once() -> None:
    ctx = context("/", xff="10.1.1.1, 10.2.2.2", hops=1)
    first = ctx.address()
    assert str(first) == "10.2.2.2"
    assert ctx.address() is first
    assert context("/", hops=1).address() is None  # no X-Forwarded-For: unknown, not guessed
