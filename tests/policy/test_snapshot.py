"""The host index: exact beats wildcard, wildcards never match the apex, the older policy wins."""

from __future__ import annotations

import pytest

from authz.jwt.providers import offline_provider
from authz.policy.compile import compile_policy
from authz.policy.model import CompiledPolicy
from authz.policy.snapshot import EMPTY, HostIndex, Snapshot, build_index, normalize_request_host
from tests.support.policies import auth_policy


def policy(
    name: str,
    *hosts: str,
    namespace: str = "shop",
    created: str | None = None,
) -> CompiledPolicy:
    metadata = {"creationTimestamp": created} if created is not None else None
    document = auth_policy(name, namespace=namespace, hosts=hosts, metadata=metadata)
    return compile_policy(document, bind=offline_provider)


API = policy("api", "api.shop.test")
WILD = policy("wild", "*.shop.test")
EU = policy("eu", "*.eu.shop.test")
APEX = policy("apex", "shop.test")


@pytest.fixture(scope="module")
def index() -> HostIndex:
    built, conflicts = build_index([API, WILD, EU, APEX])
    assert conflicts == {}
    return built


@pytest.mark.parametrize(
    ("host", "owner"),
    [
        ("api.shop.test", "api"),  # exact beats the wildcard
        ("www.shop.test", "wild"),
        ("a.b.c.shop.test", "wild"),  # wildcards cover deeper subdomains
        ("eu.shop.test", "wild"),  # "*.eu.shop.test" does not cover its own apex
        ("x.eu.shop.test", "eu"),  # the most specific wildcard wins
        ("x.y.eu.shop.test", "eu"),
        ("shop.test", "apex"),
        ("test", None),
        ("shop.test.evil", None),
        ("evilshop.test", None),
        ("", None),
        (".shop.test", None),  # an empty label is not a subdomain
        ("..shop.test", None),
        ("a..shop.test", None),
    ],
)
def test_lookup(index: HostIndex, host: str, owner: str | None) -> None:
    found = index.lookup(host)
    assert (found.name if found is not None else None) == owner


def test_a_wildcard_never_matches_its_apex() -> None:
    built, _ = build_index([WILD])
    assert built.lookup("shop.test") is None
    assert built.lookup("a.shop.test") is WILD


@pytest.mark.parametrize(
    ("authority", "host"),
    [
        ("orders.test", "orders.test"),
        ("Orders.TEST", "orders.test"),
        ("orders.test:8080", "orders.test"),
        ("orders.test.", "orders.test"),
        ("orders.test.:443", "orders.test"),
        ("  orders.test  ", "orders.test"),
        ("127.0.0.1:9000", "127.0.0.1"),
        ("[::1]:8080", "[::1]"),
        ("[::1]", "[::1]"),
        ("[2001:DB8::1]:443", "[2001:db8::1]"),
        ("[::1", "[::1"),
        ("orders.test:http", "orders.test:http"),
        ("orders.test:", "orders.test:"),
        ("", ""),
    ],
)
def test_normalize_request_host(authority: str, host: str) -> None:
    assert normalize_request_host(authority) == host


def test_the_older_policy_wins_a_conflict() -> None:
    old = policy("zeta", "a.test", "b.test", created="2024-01-01T00:00:00Z")
    new = policy("alpha", "b.test", "c.test", created="2024-06-01T00:00:00Z")
    built, conflicts = build_index([new, old])
    assert built.lookup("a.test") is old
    assert built.lookup("b.test") is old
    # The loser is left out entirely, also for the hosts nobody else claims.
    assert built.lookup("c.test") is None
    assert conflicts == {
        "shop/alpha": "host 'b.test' is already claimed by the older policy shop/zeta"
    }


def test_a_policy_with_a_timestamp_beats_one_without() -> None:
    dated = policy("b", "a.test", created="2030-01-01T00:00:00Z")
    undated = policy("a", "a.test")
    built, conflicts = build_index([undated, dated])
    assert built.lookup("a.test") is dated
    assert set(conflicts) == {"shop/a"}


def test_same_age_falls_back_to_namespace_then_name() -> None:
    same = "2024-01-01T00:00:00Z"
    by_namespace = [
        policy("a", "x.test", namespace="zz", created=same),
        policy("z", "x.test", namespace="aa", created=same),
    ]
    built, conflicts = build_index(by_namespace)
    assert built.lookup("x.test") is by_namespace[1]
    assert set(conflicts) == {"zz/a"}
    by_name = [policy("b", "x.test"), policy("a", "x.test")]
    built, conflicts = build_index(by_name)
    assert built.lookup("x.test") is by_name[1]
    assert set(conflicts) == {"shop/b"}


def test_every_clash_is_reported() -> None:
    winner = policy("a", "x.test", "*.y.test")
    loser = policy("b", "*.y.test", "x.test")
    _, conflicts = build_index([winner, loser])
    assert conflicts == {
        "shop/b": "host '*.y.test' is already claimed by the older policy shop/a; "
        "host 'x.test' is already claimed by the older policy shop/a"
    }


def test_an_exact_host_and_a_wildcard_over_it_do_not_conflict() -> None:
    exact, wild = policy("a", "y.test"), policy("b", "*.y.test")
    built, conflicts = build_index([exact, wild])
    assert conflicts == {}
    assert built.lookup("y.test") is exact
    assert built.lookup("a.y.test") is wild


def test_snapshot_lists_each_policy_once() -> None:
    multi = policy("multi", "a.test", "b.test", "*.c.test")
    built, _ = build_index([multi, APEX])
    snapshot = Snapshot(built, (), 7)
    assert snapshot.lookup("b.test") is multi
    assert sorted(p.name for p in snapshot.policies) == ["apex", "multi"]
    assert EMPTY.policies == ()
    assert EMPTY.lookup("a.test") is None
    assert EMPTY.serial == 0


def test_creation_times_compare_as_instants_not_text() -> None:
    """+02:00 at 10:00 is 08:00Z: older than 09:00Z although it sorts later as text."""
    early = policy("b", "same.test", created="2026-01-01T10:00:00+02:00")
    late = policy("a", "same.test", created="2026-01-01T09:00:00Z")
    index, conflicts = build_index([late, early])
    assert index.lookup("same.test") is early
    assert conflicts == {"shop/a": "host 'same.test' is already claimed by the older policy shop/b"}
