"""The fake's etcd: objects, one global resourceVersion counter, and a bounded change history.

Like etcd, every successful write takes the next revision of a single counter shared by all types,
and a write that changes nothing takes none (the real server skips the storage write). The history
is kept per resource type, like the API server's watch cache, so that lease renewals cannot push
AuthPolicy events out of a watcher's reach; what has left the history ("compacted") is what makes
a watch or a paged list from an old resourceVersion answer 410 Expired.

Every change is appended to the state file as one JSON line before it is answered, so a killed
process loses nothing (like etcd's write-ahead log: a write costs the size of the object, not of
the whole store, and 1,000 creates stay linear); a start replays the file. The history is not
kept, so a restarted server starts with an empty one (as the watch cache does), and every
resourceVersion before the restart is too old to watch from.
"""

from __future__ import annotations

import copy
import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import JSON, already_exists, expired
from .resources import ResourceType, storage_key

Key = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped objects


@dataclass(frozen=True)
class Change:
    """One committed write, as a watcher sees it: ``prev`` is the object before it (if any)."""

    storage: str
    rv: int
    type: str  # ADDED, MODIFIED or DELETED
    obj: JSON
    prev: JSON | None


def key_of(obj: JSON) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


class Store:
    def __init__(self, *, state_file: Path | None, history_limit: int = 1000) -> None:
        self._state_file = state_file
        self._history_limit = history_limit
        self._objects: dict[str, dict[Key, JSON]] = {}
        self._history: dict[str, deque[Change]] = {}
        self._floor: dict[str, int] = {}
        self._listeners: list[Callable[[Change], None]] = []
        self.rv = 0
        if state_file is not None and state_file.exists():
            with state_file.open() as log:
                for line in log:
                    self._replay(json.loads(line))
        # A type with no history yet can be watched from the revision the server started at.
        self._start_rv = self.rv

    # -- reading -----------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> JSON | None:
        obj = self._objects.get(storage_key(rt), {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def items(self, rt: ResourceType, *, at: int | None = None) -> list[JSON]:
        """Every object of ``rt`` now, or as of revision ``at``, sorted by (namespace, name)."""
        objects = self._objects.get(storage_key(rt), {}) if at is None else self._snapshot(rt, at)
        return [copy.deepcopy(objects[k]) for k in sorted(objects)]

    def floor(self, rt: ResourceType) -> int:
        """Every change of ``rt`` after this revision is still in the history."""
        return self._floor.get(storage_key(rt), self._start_rv)

    def changes_since(self, rt: ResourceType, rv: int) -> list[Change]:
        """The changes of ``rt`` after ``rv``; 410 if some of them have been compacted away."""
        floor = self.floor(rt)
        if rv < floor:
            raise expired(f"too old resource version: {rv} ({floor})")
        return [c for c in self._history.get(storage_key(rt), ()) if c.rv > rv]

    def _snapshot(self, rt: ResourceType, rv: int) -> dict[Key, JSON]:
        """Rebuild the objects of ``rt`` at ``rv`` by undoing later changes, newest first."""
        objects = dict(self._objects.get(storage_key(rt), {}))
        for change in reversed(self.changes_since(rt, rv)):
            key = key_of(change.obj)
            if change.prev is None:
                objects.pop(key, None)
            else:
                objects[key] = change.prev
        return objects

    # -- writing -----------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def create(self, rt: ResourceType, obj: JSON, *, dry_run: bool = False) -> JSON:
        key = key_of(obj)
        if key in self._objects.get(storage_key(rt), {}):
            raise already_exists(rt, key[1])
        return self._commit(rt, "ADDED", key, copy.deepcopy(obj), None, dry_run=dry_run)

    def update(self, rt: ResourceType, old: JSON, new: JSON, *, dry_run: bool = False) -> JSON:
        """Store ``new`` over ``old``; a no-op write keeps ``old`` and its revision."""
        if new == old:
            return copy.deepcopy(old)
        return self._commit(rt, "MODIFIED", key_of(old), copy.deepcopy(new), old, dry_run=dry_run)

    def delete(self, rt: ResourceType, old: JSON, *, dry_run: bool = False) -> JSON:
        """Remove ``old``; the DELETED event carries the last state at the deletion's revision."""
        return self._commit(rt, "DELETED", key_of(old), copy.deepcopy(old), old, dry_run=dry_run)

    def _commit(
        self, rt: ResourceType, kind: str, key: Key, obj: JSON, prev: JSON | None, *, dry_run: bool
    ) -> JSON:
        if dry_run:
            return obj
        storage = storage_key(rt)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        objects = self._objects.setdefault(storage, {})
        if kind == "DELETED":
            del objects[key]
        else:
            objects[key] = obj
        history = self._history.setdefault(storage, deque())
        history.append(Change(storage, self.rv, kind, obj, copy.deepcopy(prev) if prev else None))
        while len(history) > self._history_limit:
            self._floor[storage] = history.popleft().rv
        self._save(storage, kind, obj)
        change = history[-1]
        for listener in list(self._listeners):
            listener(change)
        return copy.deepcopy(obj)

    def compact(self, rt: ResourceType | None = None) -> int:
        """Forget the history (of one type, or all): older revisions become too old to watch."""
        storages = [storage_key(rt)] if rt is not None else list({*self._history, *self._objects})
        for storage in storages:
            self._history.pop(storage, None)
            self._floor[storage] = self.rv
        if rt is None:
            self._start_rv = self.rv
        return self.rv

    def _save(self, storage: str, kind: str, obj: JSON) -> None:
        if self._state_file is None:
            return
        line = json.dumps({"storage": storage, "type": kind, "object": obj}) + "\n"
        # Appended with one unbuffered write: once it returns the kernel has the line, so a
        # SIGKILL right after loses nothing.
        fd = os.open(self._state_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def _replay(self, entry: JSON) -> None:
        obj = entry["object"]
        objects = self._objects.setdefault(entry["storage"], {})
        if entry["type"] == "DELETED":
            objects.pop(key_of(obj), None)
        else:
            objects[key_of(obj)] = obj
        self.rv = max(self.rv, int(obj["metadata"]["resourceVersion"]))
