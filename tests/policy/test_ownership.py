"""Host ownership: what a namespace's grants cover, hostile patterns, and the store refusing
policies whose hosts were not granted (never serving part of one)."""

from __future__ import annotations

import re

import pytest

from authz.jwt.providers import offline_provider
from authz.policy.ownership import HostGrants, grants_from, normalize_grant
from authz.policy.snapshot import PolicyStateKind, Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from tests.support.policies import auth_policy

ORIGIN = "--allowed-hosts grants.yaml"


def grants(data: object) -> HostGrants:
    return grants_from(data, origin=ORIGIN)


def allowed(grant: list[str], host: str) -> bool:
    """Whether a policy of namespace "shop" may claim `host` (already normalized)."""
    return not grants({"shop": grant}).refused_hosts("shop", [host])


@pytest.mark.parametrize(
    ("grant", "host", "expected"),
    [
        # An exact grant covers that host only.
        (["orders.example.com"], "orders.example.com", True),
        (["orders.example.com"], "api.orders.example.com", False),
        (["orders.example.com"], "example.com", False),
        (["orders.example.com"], "*.orders.example.com", False),
        (["orders.example.com"], "orders.example.co", False),
        (["orders.example.com"], "xorders.example.com", False),
        # A wildcard grant covers hosts below its domain, at any depth, never the apex.
        (["*.shop.example.com"], "a.shop.example.com", True),
        (["*.shop.example.com"], "a.b.shop.example.com", True),
        (["*.shop.example.com"], "shop.example.com", False),
        (["*.shop.example.com"], "evilshop.example.com", False),
        (["*.shop.example.com"], "shop.example.com.evil.test", False),
        # A wildcard policy host needs a wildcard grant at least as broad.
        (["*.shop.example.com"], "*.shop.example.com", True),
        (["*.shop.example.com"], "*.eu.shop.example.com", True),
        (["*.shop.example.com"], "*.example.com", False),
        (["*.eu.shop.example.com"], "*.shop.example.com", False),
        (["a.shop.example.com", "b.shop.example.com"], "*.shop.example.com", False),
        # "*" alone grants everything, wildcards included.
        (["*"], "anything.test", True),
        (["*"], "*.example.com", True),
        (["*"], "10.0.0.1", True),
        # No grant, nothing.
        ([], "orders.example.com", False),
        # Punycode compares as the ASCII it is.
        (["xn--bcher-kva.example"], "xn--bcher-kva.example", True),
        (["*.example"], "xn--bcher-kva.example", True),
        (["xn--bcher-kva.example"], "bucher.example", False),
    ],
)
def test_what_a_grant_covers(grant: list[str], host: str, expected: bool) -> None:
    assert allowed(grant, host) is expected


@pytest.mark.parametrize(
    ("pattern", "normalized"),
    [
        ("Orders.Example.COM", "orders.example.com"),
        ("orders.example.com.", "orders.example.com"),
        ("*.Shop.Example.com.", "*.shop.example.com"),
        ("  orders.example.com  ", "orders.example.com"),
        ("*", "*"),
        (" * ", "*"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ],
)
def test_grants_are_normalized_like_policy_hosts(pattern: str, normalized: str) -> None:
    assert normalize_grant(pattern) == normalized


def test_case_and_trailing_dot_do_not_widen_or_narrow_a_grant() -> None:
    hostile = grants({"shop": ["ORDERS.example.com."]})
    assert hostile.refused_hosts("shop", ["orders.example.com"]) == []
    assert hostile.refused_hosts("shop", ["admin.example.com"]) == ["admin.example.com"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "an empty host pattern grants nothing"),
        ("   ", "an empty host pattern grants nothing"),
        ("*.*", "is not a host name, a *.domain wildcard or '*'"),
        ("*.", "is not a host name, a *.domain wildcard or '*'"),
        ("**", "is not a host name, a *.domain wildcard or '*'"),
        ("*example.com", "is not a host name, a *.domain wildcard or '*'"),
        ("a.*.example.com", "is not a host name, a *.domain wildcard or '*'"),
        ("example.*", "is not a host name, a *.domain wildcard or '*'"),
        (".example.com", "is not a host name, a *.domain wildcard or '*'"),
        ("a..example.com", "is not a host name, a *.domain wildcard or '*'"),
        ("orders.example.com:8080", "is not a host name, a *.domain wildcard or '*'"),
        ("https://orders.example.com", "is not a host name, a *.domain wildcard or '*'"),
        ("bücher.example", "not an ASCII host name; write it in punycode: 'xn--bcher-kva.example'"),
        ("*.bücher.example", "not an ASCII host name"),
        ("orders.example.com\x00.evil", "is not a host name"),
        (7, "is not a host pattern (a string)"),
        (None, "is not a host pattern (a string)"),
        (["a.test"], "is not a host pattern (a string)"),
    ],
)
def test_hostile_patterns_are_refused(pattern: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        normalize_grant(pattern)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["shop"], "expected a mapping of namespace to a list of host patterns"),
        ("shop: x", "expected a mapping of namespace to a list of host patterns"),
        ({"shop": "orders.example.com"}, "shop: expected a list of host patterns"),
        ({"shop": {"a": 1}}, "shop: expected a list of host patterns"),
        ({"shop": ["ok.test", "*.*"]}, "shop[1]: '*.*' is not a host name"),
        ({"Shop": ["a.test"]}, "'Shop' is not a namespace name"),
        ({"*": ["a.test"]}, "'*' is not a namespace name"),
        ({"": ["a.test"]}, "'' is not a namespace name"),
        ({1: ["a.test"]}, "1 is not a namespace name"),
        ({"a" * 64: ["a.test"]}, "is not a namespace name"),
    ],
)
def test_malformed_grant_files_say_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        grants(data)


def test_an_empty_mapping_grants_nothing_to_anyone() -> None:
    nothing: list[object] = [None, {}, {"shop": None}, {"shop": []}]
    for data in nothing:
        assert grants(data).refused_hosts("shop", ["a.test"]) == ["a.test"]


def test_a_namespace_without_grants_cannot_claim_a_host_granted_to_another() -> None:
    both = grants({"shop": ["orders.example.com"], "team": ["*.team.example.com"]})
    assert both.refused_hosts("evil", ["orders.example.com"]) == ["orders.example.com"]
    assert both.refused_hosts("team", ["orders.example.com"]) == ["orders.example.com"]
    assert both.refused_hosts("shop", ["x.team.example.com"]) == ["x.team.example.com"]


# --- the store ----------------------------------------------------------------------------------


def doc(name: str, namespace: str | None, *hosts: str) -> SourceDocument:
    return SourceDocument(f"file:{name}", auth_policy(name, namespace=namespace, hosts=hosts))


def test_the_store_refuses_a_policy_with_any_host_outside_its_grants() -> None:
    store = PolicyStore(
        bind=offline_provider,
        grants=grants({"shop": ["orders.example.com", "*.shop.example.com"]}),
    )
    snapshot = store.update(
        "files",
        [
            doc("orders", "shop", "orders.example.com", "a.shop.example.com"),
            # One granted host and one that is not: none of its hosts is served.
            doc("greedy", "shop", "b.shop.example.com", "admin.example.com"),
            doc("takeover", "evil", "orders.example.com"),
        ],
    )
    assert snapshot.lookup("orders.example.com").key == "shop/orders"  # type: ignore[union-attr]
    assert snapshot.lookup("b.shop.example.com") is None
    assert snapshot.lookup("admin.example.com") is None
    states = {s.key: s for s in snapshot.states}
    assert states["shop/orders"].state is PolicyStateKind.READY
    greedy = states["shop/greedy"]
    assert greedy.state is PolicyStateKind.HOST_NOT_ALLOWED
    assert not greedy.serving
    assert "host 'admin.example.com' is not granted to namespace 'shop'" in greedy.message
    assert ORIGIN in greedy.message
    assert "b.shop.example.com" not in greedy.message
    takeover = states["evil/takeover"]
    assert takeover.state is PolicyStateKind.HOST_NOT_ALLOWED
    assert "host 'orders.example.com' is not granted to namespace 'evil'" in takeover.message


def test_a_refused_older_policy_does_not_block_the_granted_owner() -> None:
    store = PolicyStore(bind=offline_provider, grants=grants({"shop": ["orders.example.com"]}))
    older = auth_policy(
        "early",
        namespace="evil",
        hosts=["orders.example.com"],
        metadata={"creationTimestamp": "2020-01-01T00:00:00Z"},
    )
    snapshot = store.update(
        "k", [SourceDocument("k:early", older), doc("orders", "shop", "orders.example.com")]
    )
    assert snapshot.lookup("orders.example.com").key == "shop/orders"  # type: ignore[union-attr]


def test_files_default_namespace_needs_its_own_grant() -> None:
    store = PolicyStore(bind=offline_provider, grants=grants({"default": ["a.test"]}))
    snapshot = store.update("files", [doc("a", None, "a.test"), doc("b", None, "b.test")])
    assert snapshot.lookup("a.test") is not None
    assert snapshot.lookup("b.test") is None


def test_changing_grants_republishes_without_a_source_change() -> None:
    published: list[Snapshot] = []
    store = PolicyStore(
        bind=offline_provider, publish=published.append, grants=grants({"shop": []})
    )
    store.update("files", [doc("orders", "shop", "orders.example.com")])
    assert store.current().lookup("orders.example.com") is None
    store.set_grants(grants({"shop": ["orders.example.com"]}))
    assert store.current().lookup("orders.example.com") is not None
    assert len(published) == 2
    # Revoked: the policy stops serving although nothing about it changed.
    store.set_grants(grants({"shop": ["*.other.test"]}))
    assert store.current().lookup("orders.example.com") is None
    # No grants at all: behaviour as without --allowed-hosts.
    store.set_grants(None)
    assert store.current().lookup("orders.example.com") is not None


def test_the_last_good_version_of_a_revoked_policy_is_not_served_either() -> None:
    store = PolicyStore(bind=offline_provider, grants=grants({"shop": ["orders.example.com"]}))
    store.update("files", [doc("orders", "shop", "orders.example.com")])
    broken = auth_policy("orders", namespace="shop", hosts=["orders.example.com"], bogus=1)
    store.update("files", [SourceDocument("file:orders", broken)])
    assert store.current().lookup("orders.example.com") is not None  # last good keeps serving
    snapshot = store.set_grants(grants({"shop": []}))
    assert snapshot.lookup("orders.example.com") is None
    (state,) = snapshot.states
    assert state.state is PolicyStateKind.INVALID
    assert not state.serving
    assert "the previous valid version is not served either" in state.message
