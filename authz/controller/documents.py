"""The AuthPolicy objects the watches have seen, and the documents the PolicyStore compiles.

Watch threads write here; the publisher and the status writer read consistent copies. Two kinds
of change are told apart, because confusing them makes a hot loop: a change of what is enforced
(spec, name, generation) means a new snapshot, while a change of only status, labels or
resourceVersion - every status write we make comes back as such a MODIFIED event - must never
recompile anything. The document handed to the store therefore holds only apiVersion, kind,
spec and the metadata the compiler reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from authz.controller.api import RawObject
from authz.controller.watcher import object_key
from authz.policy.store import SourceDocument

SOURCE_NAME = "kubernetes"
_COMPILED_METADATA = ("name", "namespace", "generation", "creationTimestamp")


def location(key: str) -> str:
    """How a Kubernetes document is named in states, logs and conflict messages."""
    return f"{SOURCE_NAME}:{key}"


def policy_body(obj: RawObject) -> dict[str, Any]:
    """The part of an object that decides what is enforced."""
    meta = obj.get("metadata") or {}
    body: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in _COMPILED_METADATA if k in meta},
    }
    if "spec" in obj:
        body["spec"] = obj["spec"]
    return body


def to_document(key: str, obj: RawObject) -> SourceDocument:
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    return SourceDocument(
        location(key),
        policy_body(obj),
        generation=generation if isinstance(generation, int) else None,
        extra={"uid": meta.get("uid")},
    )


def uid_of(obj: RawObject) -> str | None:
    uid = (obj.get("metadata") or {}).get("uid")
    return uid if isinstance(uid, str) else None


class ObjectCache:
    """namespace/name -> the latest object, per watched scope. Thread-safe.

    `on_documents` runs when what is enforced may have changed, `on_status` when only an
    object's status (or other unenforced metadata) changed; both run on the watch thread and
    must only signal, never block.
    """

    def __init__(
        self,
        scopes: Iterable[str],
        *,
        on_documents: Callable[[], None],
        on_status: Callable[[], None],
    ) -> None:
        self._objects: dict[str, dict[str, RawObject]] = {scope: {} for scope in scopes}
        self._listed: set[str] = set()
        self._lock = threading.Lock()
        self._on_documents = on_documents
        self._on_status = on_status

    @property
    def complete(self) -> bool:
        """True once every scope has been listed at least once."""
        with self._lock:
            return self._listed == set(self._objects)

    def replace(self, scope: str, objects: Iterable[RawObject]) -> None:
        fresh = {key: obj for obj in objects if (key := object_key(obj)) is not None}
        with self._lock:
            old = self._objects[scope]
            self._objects[scope] = fresh
            self._listed.add(scope)
        # Always signal: the first list must publish even when empty, and the publisher skips
        # the swap when the documents did not change.
        self._on_documents()
        if any(old.get(key) != obj for key, obj in fresh.items()):
            self._on_status()

    def apply(self, scope: str, event_type: str, obj: RawObject) -> None:
        key = object_key(obj)
        if key is None:
            return
        with self._lock:
            objects = self._objects[scope]
            old = objects.get(key)
            if event_type == "DELETED":
                if old is not None and uid_of(old) not in (None, uid_of(obj)):
                    return  # a newer object of the same name already replaced it
                objects.pop(key, None)
            else:
                objects[key] = obj
        if event_type == "DELETED" or old is None or policy_body(old) != policy_body(obj):
            self._on_documents()
        else:
            self._on_status()

    def objects(self) -> dict[str, RawObject]:
        """A copy of namespace/name -> object over every scope (the objects are never mutated)."""
        with self._lock:
            return {key: obj for objects in self._objects.values() for key, obj in objects.items()}

    def documents(self) -> list[SourceDocument]:
        """Every object as a document for the PolicyStore, sorted by namespace/name."""
        objects = self.objects()
        return [to_document(key, objects[key]) for key in sorted(objects)]
