"""PolicyStore: merge sources, keep the last good version, resolve conflicts, publish snapshots."""

from __future__ import annotations

from typing import Any

import pytest

from authz.errors import Problem
from authz.jwt.providers import KeyProvider, offline_provider
from authz.jwt.sources import KeySource, KeySourceKind
from authz.policy.snapshot import PolicyState, PolicyStateKind, Snapshot
from authz.policy.store import PolicyStore, SourceDocument, document_key
from tests.support.keys import jwks, rsa_key
from tests.support.policies import auth_policy, issuer

KEY = rsa_key("k1")
KEEPS_SERVING = " (the previous valid version keeps serving)"


def doc(
    name: str,
    *hosts: str,
    namespace: str | None = "shop",
    jwks_uri: str | None = None,
    inline: bool = False,
    created: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    issuers: list[dict[str, Any]] = []
    if jwks_uri is not None:
        issuers.append(issuer(jwks_uri=jwks_uri, name=jwks_uri, audiences=["api"]))
    if inline:
        issuers.append(issuer(keys=[KEY], name="https://inline.test", audiences=["api"]))
    if issuers:
        spec["issuers"] = issuers
    return auth_policy(
        name,
        namespace=namespace,
        hosts=hosts or None,
        metadata={"creationTimestamp": created} if created is not None else None,
        **spec,
    )


def src(location: str, body: dict[str, Any] | None, *problems: Problem) -> SourceDocument:
    return SourceDocument(location, body, tuple(problems))


class Harness:
    """A store whose binder, publish and retain callbacks record what they were given."""

    def __init__(self) -> None:
        self.bound: list[KeySource] = []
        self.published: list[Snapshot] = []
        self.retained: list[list[KeySource]] = []
        self.store = PolicyStore(bind=self.bind, publish=self.published.append, retain=self.retain)

    def bind(self, source: KeySource) -> KeyProvider:
        self.bound.append(source)
        return offline_provider(source)

    def retain(self, sources: list[KeySource]) -> None:
        self.retained.append(sources)

    def update(self, *documents: SourceDocument, source: str = "files") -> Snapshot:
        return self.store.update(source, list(documents))


def states(snapshot: Snapshot) -> dict[str, PolicyState]:
    return {s.location: s for s in snapshot.states}


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_a_valid_document_is_published(h: Harness) -> None:
    snapshot = h.update(src("a.yaml:0", doc("a", "a.test")))
    assert h.published == [snapshot]
    assert h.store.snapshot is snapshot
    assert snapshot.serial == 1
    policy = snapshot.lookup("a.test")
    assert policy is not None
    assert policy.key == "shop/a"
    assert snapshot.states == (
        PolicyState("shop/a", "a.yaml:0", PolicyStateKind.READY, "accepted", True),
    )


def test_serial_increments_with_every_update(h: Harness) -> None:
    serials = [h.update(src("a.yaml:0", doc("a"))).serial for _ in range(3)]
    assert serials == [1, 2, 3]
    assert [s.serial for s in h.published] == [1, 2, 3]


def test_an_invalid_new_version_leaves_the_last_good_one_serving(h: Harness) -> None:
    good = h.update(src("a.yaml:0", doc("a", "a.test"))).lookup("a.test")
    broken = doc("a", "a.test", typo=True)
    snapshot = h.update(src("a.yaml:0", broken))
    assert snapshot.lookup("a.test") is good
    (state,) = snapshot.states
    assert state.state is PolicyStateKind.INVALID
    assert state.serving is True
    assert [p.path for p in state.problems] == ["spec.typo"]
    assert state.problems[0].message.startswith("unknown field (known fields: hosts, issuers, ")
    assert state.message == str(state.problems[0]) + KEEPS_SERVING
    # Still broken on the next update: the last good version keeps serving.
    assert h.update(src("a.yaml:0", broken)).lookup("a.test") is good
    # Fixed: the new version replaces it.
    fixed = h.update(src("a.yaml:0", doc("a", "a.test", "b.test")))
    assert fixed.lookup("b.test") is not None
    assert states(fixed)["a.yaml:0"].state is PolicyStateKind.READY


def test_an_invalid_first_version_serves_nothing(h: Harness) -> None:
    snapshot = h.update(src("a.yaml:0", doc("a", "a.test", typo=True)))
    assert snapshot.lookup("a.test") is None
    (state,) = snapshot.states
    assert state.state is PolicyStateKind.INVALID
    assert state.serving is False
    assert not state.message.endswith(KEEPS_SERVING)


def test_deletion_drops_the_policy_and_its_last_good_version(h: Harness) -> None:
    h.update(src("a.yaml:0", doc("a", "a.test")))
    emptied = h.update()
    assert emptied.lookup("a.test") is None
    assert emptied.states == ()
    # Coming back broken: nothing old is resurrected.
    again = h.update(src("a.yaml:0", doc("a", "a.test", typo=True)))
    assert again.lookup("a.test") is None
    assert states(again)["a.yaml:0"].serving is False


def test_unparseable_documents_are_reported(h: Harness) -> None:
    snapshot = h.update(
        src("a.yaml:0", None, Problem("", "not valid YAML (line 3): mapping values")),
        src("a.yaml:1", {"apiVersion": "authz.dev/v1alpha1", "kind": "AuthPolicy"}),
        src("a.yaml:2", doc("b")),
    )
    by_location = states(snapshot)
    assert by_location["a.yaml:0"] == PolicyState(
        "",
        "a.yaml:0",
        PolicyStateKind.INVALID,
        "not valid YAML (line 3): mapping values",
        False,
        problems=(Problem("", "not valid YAML (line 3): mapping values"),),
    )
    assert by_location["a.yaml:1"].message == "metadata.name: required field is missing"
    assert by_location["a.yaml:2"].state is PolicyStateKind.READY


def test_duplicate_names_keep_the_first_document(h: Harness) -> None:
    snapshot = h.update(
        src("a.yaml:0", doc("same", "first.test")),
        src("b.yaml:0", doc("same", "second.test")),
        src("b.yaml:1", doc("same", "third.test", namespace="other")),
    )
    assert snapshot.lookup("first.test") is not None
    assert snapshot.lookup("second.test") is None
    assert snapshot.lookup("third.test") is not None  # another namespace, another policy
    duplicate = states(snapshot)["b.yaml:0"]
    assert duplicate.state is PolicyStateKind.INVALID
    assert duplicate.serving is False
    assert (
        duplicate.message
        == "metadata.name: a policy named shop/same is already defined at a.yaml:0"
    )


def test_the_default_namespace_is_part_of_the_name(h: Harness) -> None:
    snapshot = h.update(
        src("a.yaml:0", doc("p", "a.test", namespace=None)),
        src("b.yaml:0", doc("p", "b.test", namespace="default")),
    )
    assert states(snapshot)["b.yaml:0"].message.endswith("default/p is already defined at a.yaml:0")


def test_names_are_one_namespace_across_sources(h: Harness) -> None:
    h.update(src("kubernetes:shop/p", doc("p", "k.test")), source="kubernetes")
    snapshot = h.update(src("p.yaml:0", doc("p", "f.test")), source="files")
    # Sources merge in name order: "files" before "kubernetes".
    assert snapshot.lookup("f.test") is not None
    assert snapshot.lookup("k.test") is None
    assert states(snapshot)["kubernetes:shop/p"].message.endswith("already defined at p.yaml:0")
    # Each source replaces only its own documents.
    snapshot = h.update(source="files")
    assert snapshot.lookup("k.test") is not None


def test_unchanged_documents_are_not_recompiled(h: Harness) -> None:
    first = h.update(
        src("a.yaml:0", doc("a", "a.test", jwks_uri="https://a.example/jwks")),
        src("b.yaml:0", doc("b", "b.test", jwks_uri="https://b.example/jwks")),
    )
    assert len(h.bound) == 2
    second = h.update(
        src("a.yaml:0", doc("a", "a.test", jwks_uri="https://a.example/jwks")),
        src("b.yaml:0", doc("b", "b.test", jwks_uri="https://b.example/jwks2")),
    )
    assert len(h.bound) == 3  # only b was compiled again
    assert second.lookup("a.test") is first.lookup("a.test")
    assert second.lookup("b.test") is not first.lookup("b.test")


def test_invalid_documents_are_not_recompiled_either(h: Harness) -> None:
    broken = doc("a", "a.test", jwks_uri="http://insecure.example/jwks")
    h.update(src("a.yaml:0", broken))
    first = h.bound[:]
    h.update(src("a.yaml:0", broken))
    assert h.bound == first == []  # refused before binding, and the refusal was cached


def test_documents_that_only_print_alike_are_compiled_apart(h: Harness) -> None:
    # b"x" (a YAML !!binary) prints as the string "b'x'": a cache keyed by printed text would
    # hand the bytes the string's verdict.
    def header(value: object) -> dict[str, Any]:
        return doc("a", "a.test", response={"setHeaders": [{"name": "x-a", "value": value}]})

    named = states(h.update(src("a.yaml:0", header("b'x'"))))["a.yaml:0"]
    assert named.state is PolicyStateKind.READY
    binary = states(h.update(src("a.yaml:0", header(b"x"))))["a.yaml:0"]
    assert binary.state is PolicyStateKind.INVALID
    assert [str(p) for p in binary.problems] == [
        "spec.response.setHeaders[0].value: must be of type string, not bytes"
    ]


def test_retain_gets_the_sources_in_use(h: Harness) -> None:
    h.update(
        src("a.yaml:0", doc("a", "a.test", jwks_uri="https://a.example/jwks", inline=True)),
        src("b.yaml:0", doc("b", "b.test")),
    )
    assert sorted(h.retained[-1], key=str) == sorted(
        [KeySource(KeySourceKind.JWKS_URI, "https://a.example/jwks"), KeySource.inline(jwks(KEY))],
        key=str,
    )
    # A broken new version keeps its last good version's sources alive.
    h.update(src("a.yaml:0", doc("a", "a.test", jwks_uri="https://new.example/jwks", typo=1)))
    assert KeySource(KeySourceKind.JWKS_URI, "https://a.example/jwks") in h.retained[-1]
    h.update()
    assert h.retained[-1] == []


def test_a_conflict_leaves_the_newer_policy_out(h: Harness) -> None:
    snapshot = h.update(
        src("new.yaml:0", doc("new", "x.test", created="2024-06-01T00:00:00Z")),
        src("old.yaml:0", doc("old", "x.test", created="2024-01-01T00:00:00Z")),
    )
    owner = snapshot.lookup("x.test")
    assert owner is not None
    assert owner.name == "old"
    by_location = states(snapshot)
    assert by_location["old.yaml:0"].state is PolicyStateKind.READY
    assert by_location["new.yaml:0"] == PolicyState(
        "shop/new",
        "new.yaml:0",
        PolicyStateKind.CONFLICTED,
        "host 'x.test' is already claimed by the older policy shop/old",
        False,
    )
    assert [p.name for p in snapshot.policies] == ["old"]


def test_a_last_good_version_that_now_conflicts_stops_serving(h: Harness) -> None:
    h.update(src("a.yaml:0", doc("a", "a.test", created="2024-06-01T00:00:00Z")))
    snapshot = h.update(
        src("a.yaml:0", doc("a", "a.test", typo=1, created="2024-06-01T00:00:00Z")),
        src("b.yaml:0", doc("b", "a.test", created="2024-01-01T00:00:00Z")),
    )
    owner = snapshot.lookup("a.test")
    assert owner is not None
    assert owner.name == "b"
    state = states(snapshot)["a.yaml:0"]
    assert state.state is PolicyStateKind.INVALID
    assert state.serving is False
    assert state.message.endswith(
        KEEPS_SERVING + "; host 'a.test' is already claimed by the older policy shop/b"
    )
    # The problems behind the message survive the conflict note.
    assert [p.path for p in state.problems] == ["spec.typo"]


def test_generation_is_passed_through(h: Harness) -> None:
    snapshot = h.update(SourceDocument("kubernetes:shop/a", doc("a"), generation=7))
    assert snapshot.states[0].generation == 7


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"metadata": {"name": "a", "namespace": "ns"}}, "ns/a"),
        ({"metadata": {"name": "a"}}, "default/a"),
        ({"metadata": {"name": "a", "namespace": ""}}, "default/a"),
        ({"metadata": {"name": "a", "namespace": 5}}, "default/a"),
        ({"metadata": {"name": ""}}, None),
        ({"metadata": {"name": 5}}, None),
        ({"metadata": "a"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_document_key(body: dict[str, Any] | None, key: str | None) -> None:
    assert document_key(body) == key
