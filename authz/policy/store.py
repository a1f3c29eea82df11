"""PolicyStore: merge the documents of every source, compile, and publish one snapshot.

Each source (files, Kubernetes) hands over its complete current set of documents; the store
recompiles only documents whose content changed, keeps the last good version of a policy whose
new version is invalid, leaves out policies claiming hosts their namespace was not granted
(when grants are set: authz.policy.ownership), resolves host conflicts among the rest, and
publishes a new immutable Snapshot through a callback. Policy names are one namespace across sources: the same namespace/name from two
places is reported, and the first (by source, then location) is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from authz.errors import PolicyError, Problem
from authz.jwt.sources import KeySource
from authz.policy.compile import DEFAULT_NAMESPACE, KeyBinder, compile_policy
from authz.policy.gcpause import collector_paused
from authz.policy.model import CompiledPolicy
from authz.policy.ownership import HostGrants, apply_grants
from authz.policy.snapshot import EMPTY, PolicyState, PolicyStateKind, Snapshot, build_index

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One document as a source found it; `body` is None when it could not even be parsed."""

    location: str
    body: Mapping[str, Any] | None
    problems: tuple[Problem, ...] = ()
    #: Kubernetes metadata.generation, when the document came from the API server.
    generation: int | None = None
    #: Source-specific handle (e.g. the Kubernetes uid), passed through untouched.
    extra: Mapping[str, Any] = field(default_factory=dict)


def document_key(body: Mapping[str, Any] | None) -> str | None:
    """namespace/name of a document, when its metadata says so."""
    meta = body.get("metadata") if body is not None else None
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
        return None
    namespace = meta.get("namespace")
    return f"{namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE}/{meta['name']}"


def _digest(body: Mapping[str, Any]) -> str:
    """The compile cache's key: equal only for documents that compile to the same result.

    A pickle keeps types apart where JSON text does not ({1: x} is not {"1": x}, nor b"x" the
    string "b'x'"; each gets its own problem messages) and costs half as much as sorted JSON.
    Key order is part of the key: a reordered document is compiled again, correct if slower.
    """
    try:
        data = pickle.dumps(body, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):  # not plain data: not from a source
        data = json.dumps(body, sort_keys=True, default=repr).encode()
    return hashlib.sha256(data).hexdigest()


def _state(
    key: str,
    doc: SourceDocument,
    kind: PolicyStateKind,
    problems: tuple[Problem, ...],
    *,
    serving: bool,
) -> PolicyState:
    if kind is PolicyStateKind.READY:
        message = "accepted"
    else:
        message = "; ".join(map(str, problems))
        if serving:
            message += " (the previous valid version keeps serving)"
    return PolicyState(key, doc.location, kind, message, serving, doc.generation, problems)


def compile_documents(
    documents: Sequence[SourceDocument],
    *,
    bind: KeyBinder,
    last_good: Mapping[str, CompiledPolicy],
    cache: Mapping[str, CompiledPolicy | PolicyError] | None = None,
) -> tuple[
    list[CompiledPolicy],
    list[PolicyState],
    dict[str, CompiledPolicy],
    dict[str, CompiledPolicy | PolicyError],
]:
    """Compile documents; returns (serving policies, states, new last_good, new cache)."""
    cache = cache or {}
    new_cache: dict[str, CompiledPolicy | PolicyError] = {}
    new_good: dict[str, CompiledPolicy] = {}
    serving: list[CompiledPolicy] = []
    states: list[PolicyState] = []
    owners: dict[str, str] = {}
    for doc in documents:
        key = document_key(doc.body)
        if doc.body is None or key is None:
            problems = doc.problems or (Problem("metadata.name", "required field is missing"),)
            states.append(_state(key or "", doc, PolicyStateKind.INVALID, problems, serving=False))
            continue
        if key in owners:
            problem = Problem(
                "metadata.name", f"a policy named {key} is already defined at {owners[key]}"
            )
            states.append(_state(key, doc, PolicyStateKind.INVALID, (problem,), serving=False))
            continue
        owners[key] = doc.location
        digest = _digest(doc.body)
        result = cache.get(digest)
        if result is None:
            try:
                result = compile_policy(doc.body, bind=bind)
            except PolicyError as exc:
                result = exc
        new_cache[digest] = result
        if isinstance(result, CompiledPolicy):
            new_good[key] = result
            serving.append(result)
            states.append(_state(key, doc, PolicyStateKind.READY, (), serving=True))
            continue
        previous = last_good.get(key)
        if previous is not None:
            new_good[key] = previous
            serving.append(previous)
        states.append(
            _state(
                key,
                doc,
                PolicyStateKind.INVALID,
                tuple(result.problems),
                serving=previous is not None,
            )
        )
    return serving, states, new_good, new_cache


def _refused(state: PolicyState, problems: tuple[Problem, ...]) -> PolicyState:
    """`state` of a policy left out because a host is not granted to its namespace."""
    refusal = "; ".join(p.message for p in problems)
    if state.state is PolicyStateKind.READY:
        return PolicyState(
            state.key,
            state.location,
            PolicyStateKind.HOST_NOT_ALLOWED,
            f"{refusal}; the policy is not served",
            False,
            state.generation,
            problems,
        )
    # An invalid new version whose last good version is refused: nothing of it serves.
    message = state.message.replace(" (the previous valid version keeps serving)", "")
    return PolicyState(
        state.key,
        state.location,
        state.state,
        f"{message}; the previous valid version is not served either: {refusal}",
        False,
        state.generation,
        state.problems,
    )


class PolicyStore:
    """Holds every source's documents and the current snapshot, the one the checks read.

    `current` is what the check path calls once per check: a new snapshot is published by one
    reference assignment, which readers on the event loop see whole. `publish` is told about
    each new snapshot (logs, metrics); `retain` gets the key sources still in use.
    """

    def __init__(
        self,
        *,
        bind: KeyBinder,
        publish: Callable[[Snapshot], None] | None = None,
        retain: Callable[[list[KeySource]], None] | None = None,
        grants: HostGrants | None = None,
    ) -> None:
        self._bind = bind
        self._grants = grants
        self._publish = publish
        self._retain = retain
        self._sources: dict[str, Sequence[SourceDocument]] = {}
        self._last_good: dict[str, CompiledPolicy] = {}
        self._cache: dict[str, CompiledPolicy | PolicyError] = {}
        self._serial = 0
        self._lock = threading.Lock()
        #: The current snapshot: EMPTY until the first update.
        self.snapshot: Snapshot = EMPTY

    def current(self) -> Snapshot:
        return self.snapshot

    def update(self, source: str, documents: Sequence[SourceDocument]) -> Snapshot:
        """Replace one source's documents and publish the resulting snapshot.

        Thread-safe and meant to run in a worker thread: compiling is CPU work the check
        path must not wait for. Updates are serialized; each publishes a complete snapshot.
        """
        with self._lock, collector_paused():
            return self._update(source, documents)

    def set_grants(self, grants: HostGrants | None) -> Snapshot:
        """Replace the host grants (None: any namespace may claim any host) and publish the
        resulting snapshot. Thread-safe, like `update`."""
        with self._lock, collector_paused():
            self._grants = grants
            return self._rebuild()

    def _update(self, source: str, documents: Sequence[SourceDocument]) -> Snapshot:
        self._sources[source] = documents
        return self._rebuild()

    def _rebuild(self) -> Snapshot:
        merged = [doc for name in sorted(self._sources) for doc in self._sources[name]]
        serving, states, self._last_good, self._cache = compile_documents(
            merged, bind=self._bind, last_good=self._last_good, cache=self._cache
        )
        # Refused before the index: a policy that may not claim a host cannot win it either.
        serving, refused = apply_grants(serving, self._grants)
        index, conflicts = build_index(serving)
        final: list[PolicyState] = []
        for state in states:
            if state.serving and state.key in refused:
                state = _refused(state, refused[state.key])
            elif state.state is PolicyStateKind.READY and state.key in conflicts:
                state = PolicyState(
                    state.key,
                    state.location,
                    PolicyStateKind.CONFLICTED,
                    conflicts[state.key],
                    False,
                    state.generation,
                )
            elif state.serving and state.key in conflicts:
                state = PolicyState(
                    state.key,
                    state.location,
                    state.state,
                    f"{state.message}; {conflicts[state.key]}",
                    False,
                    state.generation,
                    state.problems,
                )
            final.append(state)
        self._serial += 1
        snapshot = Snapshot(index, tuple(final), self._serial)
        if self._retain is not None:
            self._retain(
                [spec.provider.source for p in snapshot.policies for spec in p.issuers.values()]
            )
        self.snapshot = snapshot
        if self._publish is not None:
            self._publish(snapshot)
        return snapshot
