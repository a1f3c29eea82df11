"""The Ready condition each AuthPolicy should show, and writing it only when it differs.

Desired status is a pure function of the published snapshot (the PolicyState of the document,
and for an accepted policy whether its issuers' keys were ever fetched):

    ready                                   True   Accepted
    ready, an issuer's keys never fetched   False  IssuerUnavailable (enforced; 503 until keys;
                                                                written once the first fetch
                                                                failed, not while it runs)
    invalid (schema, CEL, compile)          False  Invalid     (message: field path: problem,
                                                                and whether the last good
                                                                version keeps serving)
    loses a host to an older policy         False  Conflicted
    claims a host its namespace was not     False  HostNotAllowed (message names the host;
    granted (--allowed-hosts)                                  the policy is not served)

The writer compares that with the status the watch last delivered and writes (a JSON merge patch
of the status subresource, guarded by the object's resourceVersion) only when something differs;
lastTransitionTime moves only when `status` flips. A write it made but has not yet seen come
back through the watch is remembered, so a reconcile in between does not write it again. Objects
whose generation is newer than the snapshot's are skipped: a new snapshot is on its way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from authz.controller.api import KubeApi, RawObject
from authz.controller.documents import SOURCE_NAME, uid_of
from authz.controller.errors import (
    STATUS_ACCEPTED,
    STATUS_CONFLICTED,
    STATUS_HOST_NOT_ALLOWED,
    STATUS_INVALID,
    STATUS_ISSUER_UNAVAILABLE,
    KubeError,
    KubeUnavailable,
)
from authz.controller.events import EventRecorder
from authz.controller.observer import ControllerObserver
from authz.policy.model import CompiledPolicy
from authz.policy.snapshot import PolicyState, PolicyStateKind, Snapshot

log = logging.getLogger(__name__)

CONDITION_READY = "Ready"
MAX_MESSAGE = 4096
_WRITERS = 8


@dataclass(frozen=True, slots=True)
class Desired:
    """The Ready condition one object should carry (without lastTransitionTime)."""

    status: str
    reason: str
    message: str
    generation: int | None


def _issuer_problems(policy: CompiledPolicy, spec: Mapping[str, Any]) -> list[str] | None:
    """What keeps the policy's issuers from verifying tokens; None while a first fetch is still
    running (its outcome, seconds away, decides the status - no False-then-True flicker)."""
    raw = spec.get("issuers") or []
    problems = []
    for spec_issuer in policy.issuers.values():
        provider = spec_issuer.provider
        if provider.keys is not None:
            continue
        if provider.last_error is None:
            return None
        index = next(
            (i for i, item in enumerate(raw) if item.get("issuer") == spec_issuer.issuer), 0
        )
        problems.append(
            f"spec.issuers[{index}]: keys of {spec_issuer.issuer} not fetched yet from "
            f"{provider.source.describe()}: {provider.last_error}"
        )
    return problems


def desired_condition(
    state: PolicyState, policy: CompiledPolicy | None, obj: RawObject
) -> Desired | None:
    """The Ready condition `obj` should show; None when it cannot be known yet."""
    if state.state is PolicyStateKind.CONFLICTED:
        return Desired("False", STATUS_CONFLICTED, state.message, state.generation)
    if state.state is PolicyStateKind.HOST_NOT_ALLOWED:
        return Desired("False", STATUS_HOST_NOT_ALLOWED, state.message, state.generation)
    if state.state is PolicyStateKind.INVALID:
        return Desired("False", STATUS_INVALID, state.message, state.generation)
    if policy is not None:
        problems = _issuer_problems(policy, obj.get("spec") or {})
        if problems is None:
            return None
        if problems:
            message = "; ".join(problems) + (
                " (the policy is enforced; requests needing these keys are answered 503 "
                "until they arrive)"
            )
            return Desired("False", STATUS_ISSUER_UNAVAILABLE, message, state.generation)
    return Desired("True", STATUS_ACCEPTED, "the policy is enforced", state.generation)


def _truncate(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def current_ready(obj: RawObject) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == CONDITION_READY:
            return condition
    return None


def status_patch(obj: RawObject, desired: Desired, *, now: datetime) -> dict[str, Any] | None:
    """The merge patch that makes `obj` show `desired`, or None when it already does."""
    status = obj.get("status") or {}
    existing = current_ready(obj)
    message = _truncate(desired.message)
    if (
        existing is not None
        and status.get("observedGeneration") == desired.generation
        and existing.get("observedGeneration") == desired.generation
        and (existing.get("status"), existing.get("reason"), existing.get("message"))
        == (desired.status, desired.reason, message)
    ):
        return None
    flipped = existing is None or existing.get("status") != desired.status
    condition: dict[str, Any] = {
        "type": CONDITION_READY,
        "status": desired.status,
        "reason": desired.reason,
        "message": message,
        "lastTransitionTime": (
            now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if flipped or existing is None
            else existing.get("lastTransitionTime")
        ),
    }
    if desired.generation is not None:
        condition["observedGeneration"] = desired.generation
    others = [
        c
        for c in status.get("conditions") or []
        if isinstance(c, Mapping) and c.get("type") != CONDITION_READY
    ]
    new_status: dict[str, Any] = {"conditions": [*others, condition]}
    if desired.generation is not None:
        new_status["observedGeneration"] = desired.generation
    meta = obj.get("metadata") or {}
    return {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": new_status}


def _rv(obj: RawObject) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:  # opaque versions: never assume a write is still in flight
        return 1 << 62


@dataclass(frozen=True, slots=True)
class _Written:
    uid: str | None
    desired: Desired
    resource_version: int


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    writes: int
    #: Some accepted policy waits for its issuer's keys: reconcile again soon.
    waiting_for_keys: bool


class StatusWriter:
    """Brings every Kubernetes AuthPolicy's status in line with the current snapshot."""

    def __init__(
        self,
        api: KubeApi,
        *,
        observer: ControllerObserver,
        events: EventRecorder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._observer = observer
        self._events = events
        self._clock = clock
        self._written: dict[str, _Written] = {}
        self._pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="authz-status")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def reconcile(
        self,
        snapshot: Snapshot,
        objects: Mapping[str, RawObject],
        *,
        published_uids: Mapping[str, str | None],
        still_leader: Callable[[], bool],
    ) -> ReconcileResult:
        """Write every status that differs. Blocking: run it in a worker thread."""
        policies = {policy.key: policy for policy in snapshot.policies}
        prefix = f"{SOURCE_NAME}:"
        jobs = []
        waiting = False
        for state in snapshot.states:
            if not state.location.startswith(prefix):
                continue
            key = state.location.removeprefix(prefix)
            obj = objects.get(key)
            if obj is None or uid_of(obj) != published_uids.get(key):
                continue  # deleted or re-created since the snapshot was built
            if (obj.get("metadata") or {}).get("generation") != state.generation:
                continue  # a newer generation is being compiled; its snapshot will follow
            desired = desired_condition(state, policies.get(state.key), obj)
            if desired is None:
                waiting = True
                continue
            waiting = waiting or desired.reason == STATUS_ISSUER_UNAVAILABLE
            patch = status_patch(obj, desired, now=self._clock())
            if patch is None or self._in_flight(key, obj, desired):
                continue
            jobs.append((key, obj, desired, patch))
        for gone in set(self._written) - set(objects):
            del self._written[gone]
        results = list(
            self._pool.map(lambda job: self._write(*job, still_leader=still_leader), jobs)
        )
        return ReconcileResult(sum(results), waiting)

    def _in_flight(self, key: str, obj: RawObject, desired: Desired) -> bool:
        written = self._written.get(key)
        return (
            written is not None
            and written.uid == uid_of(obj)
            and written.desired == desired
            and _rv(obj) < written.resource_version
        )

    def _write(
        self,
        key: str,
        obj: RawObject,
        desired: Desired,
        patch: Mapping[str, Any],
        *,
        still_leader: Callable[[], bool],
    ) -> int:
        if not still_leader():
            return 0
        namespace, name = key.split("/", 1)
        previous = current_ready(obj)
        try:
            result = self._api.patch_policy_status(namespace, name, patch)
        except KubeError as exc:
            outcome = "conflict" if exc.status in (404, 409) else "error"
            # 409: the object changed meanwhile; its watch event triggers another reconcile.
            # Unreachable: the watcher already logs the outage once.
            quiet = outcome == "conflict" or isinstance(exc, KubeUnavailable)
            log_at = log.debug if quiet else log.warning
            log_at("status of AuthPolicy %s not written: %s", key, exc)
            self._observer.status_write(desired.reason, outcome)
            return 0
        self._written[key] = _Written(uid_of(obj), desired, _rv(result))
        self._observer.status_write(desired.reason, "ok")
        log.info(
            "AuthPolicy %s status: Ready=%s %s (generation %s)",
            key,
            desired.status,
            desired.reason,
            desired.generation,
        )
        if desired.reason in (STATUS_INVALID, STATUS_CONFLICTED, STATUS_HOST_NOT_ALLOWED) and (
            previous is None
            or previous.get("reason") != desired.reason
            or previous.get("observedGeneration") != desired.generation
        ):
            self._events.warn(obj, reason=desired.reason, message=desired.message)
        return 1
