"""Conditions at load time: what a policy may say in `when`, and the clear refusal of the rest.

Each refusal is a Problem of the policy naming the field, as `authz validate` prints it; the
CEL guards (length, nesting, comprehensions, literal patterns, known names) are proven on the
expressions that would hurt the sidecar if they got through.
"""

from __future__ import annotations

from typing import Any

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.errors import PolicyError, Problem
from authz.jwt.providers import offline_provider
from authz.policy.celexpr import MAX_LENGTH, CelProblem, compile_cel
from authz.policy.compile import compile_policy
from authz.policy.conditions import Pattern
from authz.policy.model import CompiledPolicy
from tests.support.policies import auth_policy, rule
from tests.support.tiers import examples

ISSUER = {"issuer": "https://id.test", "audiences": ["a"], "jwksUri": "https://id.test/keys"}
PATHS = ["/tenants/{tenant}/orders/{order}", "/tenants/{tenant}/orders"]


def policy(*when: dict[str, Any], paths: list[str] | None = None) -> dict[str, Any]:
    guarded = rule("guarded", paths=PATHS if paths is None else paths, when=list(when))
    return auth_policy("p", issuers=[ISSUER], rules=[guarded])


def problems(*when: dict[str, Any], paths: list[str] | None = None) -> list[Problem]:
    try:
        compile_policy(policy(*when, paths=paths), bind=offline_provider)
    except PolicyError as exc:
        return list(exc.problems)
    return []


def compiled(*when: dict[str, Any]) -> CompiledPolicy:
    return compile_policy(policy(*when), bind=offline_provider)


def test_every_operator_compiles_into_its_operand() -> None:
    rule_ = compiled(
        {"claim": "tenant_id", "equalsParam": "tenant"},
        {"claim": "realm_access.roles", "containsAny": ["admin", "support"]},
        {"header": "X-Api-Version", "in": ["2", "3"]},
        {"param": "order", "matches": "[0-9]+"},
        {"claim": "email_verified", "exists": False},
        {"cel": "claims.acr == 'mfa' || request.method == 'GET'"},
    ).rules[0]
    tenant, roles, version, order, verified, cel = rule_.conditions
    assert (tenant.subject, tenant.name, tenant.operator, tenant.value) == (
        "claim",
        "tenant_id",
        "equalsParam",
        "tenant",
    )
    assert roles.claim_path == ("realm_access", "roles")
    assert roles.values == frozenset({"admin", "support"})
    assert version.name == "x-api-version"  # header names compare lower-case
    assert order.regex is not None
    assert order.regex.fullmatch("42") is True
    assert order.regex.fullmatch("4x") is False
    assert verified.exists is False
    assert cel.program is not None
    assert [c.index for c in rule_.conditions] == [0, 1, 2, 3, 4, 5]
    assert rule_.captures
    assert version.describe() == "header x-api-version in ['2', '3']"


@pytest.mark.parametrize(
    ("when", "field", "words"),
    [
        ({"claim": "t", "equalsParam": "tenantId"}, "when[0].equalsParam", "{tenantId} is not"),
        ({"param": "id", "exists": True}, "when[0].param", "they capture: {order}, {tenant}"),
        ({"cel": "params.id == 'x'"}, "when[0].cel", "{id} is not a parameter"),
        ({"claim": "t", "matches": "(a"}, "when[0].matches", "not a valid RE2 expression"),
        ({"claim": "t", "matches": "(?=a)b"}, "when[0].matches", "not a valid RE2"),
        ({"claim": "t", "matches": r"(a)\1"}, "when[0].matches", "not a valid RE2"),
        ({"cel": "claims.acr == "}, "when[0].cel", "Syntax error"),
        ({"cel": "claim.acr == 'mfa'"}, "when[0].cel", "unknown variable 'claim'"),
        ({"cel": "claims.acr.startswith('m')"}, "when[0].cel", "unknown function startswith()"),
        ({"cel": "claims.a.matches('(')"}, "when[0].cel", "invalid regular expression"),
        ({"cel": "request.headers['X-Api'] == '1'"}, "when[0].cel", "header names are lower"),
    ],
)
def test_a_bad_condition_is_a_problem_naming_the_field(
    when: dict[str, Any], field: str, words: str
) -> None:
    found = problems(when)
    assert any(p.path == f"spec.rules[0].{field}" and words in p.message for p in found), found


def test_two_operators_or_two_subjects_are_refused_with_the_crd_message() -> None:
    found = problems(
        {"claim": "a", "equals": "x", "notEquals": "y"},
        {"claim": "a", "header": "b", "exists": True},
        {"cel": "true", "equals": "x"},
        {"claim": "a"},
    )
    messages = [(p.path, p.message.split(" (")[0].split(";")[0]) for p in found]
    assert messages == [
        ("spec.rules[0].when[0]", "set exactly one operator"),
        ("spec.rules[0].when[1]", "set exactly one of claim, header, param or cel"),
        ("spec.rules[0].when[2]", "set exactly one operator"),
        ("spec.rules[0].when[3]", "set exactly one operator"),
    ]


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("/t/{id}/x/{id}", "the parameter {id} is used twice in this path"),
        ("/t/v{id}", "must be a whole segment"),
        ("/t/{1id}", "must be a whole segment"),
        ("/t/{id", "must be a whole segment"),
        ("/t/{}", "must be a whole segment"),
    ],
)
def test_bad_path_parameters_are_refused(pattern: str, words: str) -> None:
    found = problems(paths=[pattern])
    assert found == [Problem("spec.rules[0].match.paths[0]", found[0].message)]
    assert words in found[0].message


def test_a_parameter_of_any_path_of_the_rule_may_be_used() -> None:
    both = ["/a/{x}", "/b/{y}"]
    assert (
        problems({"param": "x", "exists": True}, {"param": "y", "exists": True}, paths=both) == []
    )
    assert problems({"param": "z", "exists": True}, paths=[]) != []


def test_a_bad_condition_leaves_other_policies_serving() -> None:
    from authz.policy.store import PolicyStore, SourceDocument

    store = PolicyStore(bind=offline_provider, publish=lambda _: None)
    good = auth_policy("good")
    bad = policy({"cel": "claims.x.map(v, v)"})
    bad["spec"]["hosts"] = ["bad.test"]
    built = store.update("f", [SourceDocument("a:0", good), SourceDocument("b:0", bad)])
    states = {s.key: (s.state.value, s.message) for s in built.states}
    assert states["default/good"][0] == "ready"
    assert states["default/p"][0] == "invalid"
    assert "map() is not allowed" in states["default/p"][1]


# --- CEL guards ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("(" * 40 + "true" + ")" * 40, "nest deeper than 32"),
        ("[" * 33 + "]" * 33 + " == []", "nest deeper than 32"),
        ("1" + " + 1" * (MAX_LENGTH // 4), f"longer than {MAX_LENGTH}"),
        ("claims.a.exists(x, claims.b.exists(y, x == y))", "inside another comprehension"),
        ("claims.a.all(x, [1].exists_one(y, true))", "inside another comprehension"),
        ("size(claims.a.map(x, claims.a)) > 0", "map() is not allowed"),
        ("size(claims.a.filter(x, true)) > 0", "filter() is not allowed"),
        ("claims.a.matches(request.headers['x-re'])", "one string literal"),
        ("matches(claims.a, 'x')", "as a method"),
        ("claims.a == 'x' # comment", "unexpected character '#'"),
    ],
)
def test_expressions_that_could_hurt_are_refused(source: str, words: str) -> None:
    with pytest.raises(CelProblem, match=None) as caught:
        compile_cel(source)
    assert words in str(caught.value)


def test_comprehensions_side_by_side_and_literals_that_look_like_code_are_fine() -> None:
    compile_cel("claims.a.exists(x, x == 'a') && claims.b.all(y, y != 'b')")
    compile_cel("claims.a == ')))(((' && claims.b == \"map(x, x)\" && claims.c == '''[[['''")
    compile_cel("claims.a == 'x' // a comment with map( in it")


def test_the_reads_of_an_expression_are_worked_out() -> None:
    program = compile_cel(
        "claims.tenant_id == params.tenant && has(claims.realm_access)"
        " && request.headers['x-a'] == source.ip"
    )
    assert program.variables == {"claims", "params", "request", "source"}
    assert program.claim_names == ("tenant_id", "realm_access")
    assert program.header_names == ("x-a",)
    assert program.param_names == {"tenant"}


@pytest.mark.parametrize(
    "source",
    [
        "claims.exists(k, k == 'a')",
        "'a' in claims",
        "size(claims) > 1",
        "claims['https://example.com/roles'] == 'a'",
        "claims.a.exists(claims, claims == 'x')",
    ],
)
def test_any_other_use_of_claims_hands_over_every_claim(source: str) -> None:
    assert compile_cel(source).claim_names is None


# --- the RE2 fast path --------------------------------------------------------------------------

PATTERNS = ["m[a-z]a", "(a+)+$", "[0-9]{2,4}", "", "é.", "a|ab", r"\p{L}+", "(?i)ADMIN"]


@settings(max_examples=examples(300), deadline=None)
@given(pattern=st.sampled_from(PATTERNS), text=st.text(alphabet="aAbm0123é\n-!Ω", max_size=12))
def test_pattern_answers_as_re2_fullmatch(pattern: str, text: str) -> None:
    reference = re2.compile(pattern).fullmatch(text) is not None
    assert Pattern(pattern).fullmatch(text) is reference


def test_pattern_refuses_what_cannot_be_encoded() -> None:
    assert Pattern(".*").fullmatch("\ud800") is False
    assert Pattern(".*").fullmatch("ok") is True
