"""Property: taking a claim away never turns a denial into an allow.

For any set of conditions - declarative on claims, and CEL built from comparisons, negation,
&&, || and ?: - and any claims, a request that is denied stays denied when one of the claims
the conditions read is missing. The one deliberate exception is a test for absence itself
(`exists: false`, CEL's `has()` and `in` on the claims map), which is not generated.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pipeline.test_conditions import check, guarded
from tests.support.tiers import examples

NAMES = ("a", "b", "c")
VALUES = ("x", "y", "7", "true")
claim_value = st.one_of(
    st.sampled_from(VALUES),
    st.lists(st.sampled_from(VALUES), max_size=3),
    st.integers(-2, 9),
    st.booleans(),
    st.none(),
    st.dictionaries(st.sampled_from(VALUES), st.sampled_from(VALUES), max_size=2),
)
claims_strategy = st.dictionaries(st.sampled_from(NAMES), claim_value)
value = st.sampled_from(VALUES)
values = st.lists(value, min_size=1, max_size=3)


@st.composite
def declarative(draw: st.DrawFn) -> dict[str, Any]:
    operator, operand = draw(
        st.one_of(
            st.tuples(st.sampled_from(["equals", "notEquals", "contains", "matches"]), value),
            st.tuples(st.sampled_from(["in", "notIn", "containsAny", "containsAll"]), values),
            st.just(("exists", True)),
            st.just(("equalsParam", "tenant")),
        )
    )
    return {"claim": draw(st.sampled_from(NAMES)), operator: operand}


def _atom(name: str, literal: str, kind: int) -> str:
    return [
        f"claims.{name} == '{literal}'",
        f"claims.{name} != '{literal}'",
        f"claims.{name} in ['{literal}', 'y']",
        f"'{literal}' in claims.{name}",
        f"size(claims.{name}) > 1",
        f"claims.{name} == 7",
        f"claims.{name}.exists(v, v == '{literal}')",
    ][kind]


cel_expression = st.recursive(
    st.builds(_atom, st.sampled_from(NAMES), value, st.integers(0, 6)),
    lambda inner: st.one_of(
        st.builds("!({})".format, inner),
        st.builds("({}) && ({})".format, inner, inner),
        st.builds("({}) || ({})".format, inner, inner),
        st.builds("({}) ? ({}) : ({})".format, inner, inner, inner),
    ),
    max_leaves=6,
)
condition = st.one_of(declarative(), st.builds(lambda e: {"cel": e}, cel_expression))


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    when=st.lists(condition, min_size=1, max_size=4),
    claims=claims_strategy,
    removed=st.sampled_from(NAMES),
)
def test_a_missing_claim_never_turns_a_denial_into_an_allow(
    when: list[dict[str, Any]], claims: dict[str, Any], removed: str
) -> None:
    policy = guarded(*when)
    with_claim = check(policy, claims)
    without = check(policy, {k: v for k, v in claims.items() if k != removed})
    if with_claim is not None:
        assert without is not None, (when, claims, removed)
