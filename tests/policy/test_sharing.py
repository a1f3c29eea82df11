"""Policies that repeat an issuer or a rule word for word share what it compiles to; an edit, a
problem or another binder never reaches another policy through that sharing."""

from __future__ import annotations

from typing import Any

import pytest

from authz.errors import PolicyError
from authz.jwt.providers import KeyProvider, offline_provider
from authz.jwt.sources import KeySource
from authz.policy.compile import compile_policy
from authz.policy.model import CompiledPolicy
from tests.support import policies
from tests.support.keys import ISSUER, rsa_key

KEY, OTHER = rsa_key("k1"), rsa_key("k2")

LIMIT = {"name": "writes", "requests": 10, "window": "1m", "key": "claim:sub"}


def document(
    name: str, *, key: Any = KEY, paths: tuple[str, ...] = ("/items/*",)
) -> dict[str, Any]:
    return policies.auth_policy(
        name,
        issuers=[policies.issuer(keys=[key])],
        rules=[
            policies.rule("read", methods=["GET"], paths=list(paths), scopes=["items:read"]),
            policies.rule("write", methods=["POST"], scopes=["items:write"], rateLimits=[LIMIT]),
        ],
    )


def compiled(doc: dict[str, Any], bind: Any = offline_provider) -> CompiledPolicy:
    return compile_policy(doc, bind=bind)


def kids(policy: CompiledPolicy) -> list[str | None]:
    keys = policy.issuers[ISSUER].provider.keys
    assert keys is not None
    return [k.kid for k in keys.keys]


def test_identical_inline_keys_share_one_key_set_and_issuer() -> None:
    first, second = compiled(document("a")), compiled(document("b"))
    assert first.issuers[ISSUER].provider.keys is second.issuers[ISSUER].provider.keys
    registry: dict[KeySource, KeyProvider] = {}

    def bind(source: KeySource) -> KeyProvider:
        return registry.setdefault(source, offline_provider(source))

    third, fourth = compiled(document("c"), bind), compiled(document("d"), bind)
    assert third.issuers[ISSUER] is fourth.issuers[ISSUER]


def test_editing_one_policys_keys_leaves_the_other_alone() -> None:
    first = compiled(document("a"))
    edited = compiled(document("b", key=OTHER))
    assert (kids(first), kids(edited)) == (["k1"], ["k2"])
    assert compiled(document("a")).issuers[ISSUER].provider.keys is not None
    assert kids(compiled(document("a"))) == ["k1"]


def test_each_use_is_bound_by_the_binder_of_that_compile() -> None:
    bound: list[KeySource] = []

    def recording(source: KeySource) -> KeyProvider:
        bound.append(source)
        return offline_provider(source)

    first = compiled(document("a"))
    again = compiled(document("a"), recording)
    assert len(bound) == 1
    assert again.issuers[ISSUER].provider is not first.issuers[ISSUER].provider
    assert again.issuers[ISSUER].provider.source == first.issuers[ISSUER].provider.source


def test_identical_rules_are_one_object_and_limits_stay_per_policy() -> None:
    first, second = compiled(document("a")), compiled(document("b"))
    assert first.rules[0] is second.rules[0]
    assert first.rules[1].rate_limits[0].prefix != second.rules[1].rate_limits[0].prefix
    edited = compiled(document("c", paths=("/other/*",)))
    assert edited.rules[0] is not first.rules[0]
    assert edited.rules[0].matches("GET", "/other/1")
    assert not first.rules[0].matches("GET", "/other/1")


def test_a_broken_rule_is_reported_each_time_and_shares_nothing() -> None:
    good = compiled(document("a"))
    for _ in range(2):
        with pytest.raises(PolicyError) as caught:
            compiled(document("b", paths=("/items/**/x",)))
        assert [p.path for p in caught.value.problems] == ["spec.rules[0].match.paths[0]"]
    assert compiled(document("a")).rules[0] is good.rules[0]
