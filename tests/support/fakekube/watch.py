"""WATCH: a chunked HTTP stream of newline-delimited ``{"type", "object"}`` events.

Faithful to the real server where a controller's correctness depends on it:

- resourceVersion absent or "0" (or sendInitialEvents=true): synthetic ADDED events for the objects
  that exist now, then live changes; rv N: every change after N, replayed from the history.
- an rv older than the history answers 200 with one ERROR event (a 410 Expired Status, message
  "too old resource version: N (M)") and ends the stream, as the watch cache does.
- selectors are applied to the old and the new state of each change, so an object that stops
  matching arrives as DELETED and one that starts matching as ADDED.
- BOOKMARKs (when allowWatchBookmarks=true) carry only kind, apiVersion and
  metadata.resourceVersion, every ``bookmark_interval`` seconds; timeoutSeconds ends the stream with
  a proper last chunk.

Controls for tests act on the streams open at the time: expire (ERROR 410, then a clean end), drop
(close the socket mid-stream, no last chunk), stall (send nothing at all, bookmarks included, until
released; what queued up meanwhile is delivered on release).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from .errors import JSON, ApiError, bad_request, expired
from .lists import Filter, parse_rv
from .resources import ResourceType, storage_key
from .store import Change, Store

_ids = itertools.count(1)


def _event(kind: str, obj: JSON) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def visible_change(change: Change, flt: Filter) -> tuple[str, JSON] | None:
    """How ``change`` looks to a watcher with filter ``flt``, or None if it does not see it.

    An object that stops matching is DELETED with its previous content at the change's revision,
    which is what the watch cache sends.
    """
    now = change.type != "DELETED" and flt.matches(change.obj)
    before = change.prev is not None and flt.matches(change.prev)
    if now:
        return ("MODIFIED" if before else "ADDED", change.obj)
    if not before or change.prev is None:
        return None
    if change.type == "DELETED":
        return ("DELETED", change.obj)
    gone = {**change.prev, "metadata": {**change.prev["metadata"]}}
    gone["metadata"]["resourceVersion"] = str(change.rv)
    return ("DELETED", gone)


@dataclass
class OpenWatch:
    """One open watch stream, and the switches the control API flips on it."""

    rt: ResourceType
    flt: Filter
    path: str
    query: dict[str, str]
    id: int = field(default_factory=lambda: next(_ids))
    started: float = field(default_factory=time.time)
    pending: deque[bytes] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: bool = False
    drop: bool = False
    expire: bool = False
    closing: bool = False

    def offer(self, change: Change) -> None:
        if change.storage != storage_key(self.rt):
            return
        seen = visible_change(change, self.flt)
        if seen is not None:
            self.pending.append(_event(*seen))
            self.wakeup.set()

    def describe(self) -> JSON:
        return {
            "id": self.id,
            "path": self.path,
            "query": self.query,
            "started": self.started,
            "stalled": self.stalled,
            "pending": len(self.pending),
        }


class Watches:
    """Every open watch stream of the server."""

    def __init__(self, store: Store, *, bookmark_interval: float) -> None:
        self._store = store
        self.bookmark_interval = bookmark_interval
        self._open: dict[int, OpenWatch] = {}
        store.subscribe(self._dispatch)

    def _dispatch(self, change: Change) -> None:
        for watch in list(self._open.values()):
            watch.offer(change)

    def describe(self) -> list[JSON]:
        return [w.describe() for w in self._open.values()]

    def _flip(self, attr: str, value: bool = True) -> int:
        for watch in self._open.values():
            setattr(watch, attr, value)
            watch.wakeup.set()
        return len(self._open)

    def expire_all(self) -> int:
        return self._flip("expire")

    def drop_all(self) -> int:
        return self._flip("drop")

    def stall_all(self) -> int:
        return self._flip("stalled")

    def release_all(self) -> int:
        return self._flip("stalled", False)

    def close_all(self) -> int:
        """Shutdown: end every stream cleanly, as an API server that is stopping does."""
        return self._flip("closing")

    def _bookmark(self, rt: ResourceType, *, initial_end: bool = False) -> bytes:
        meta: JSON = {"resourceVersion": str(self._store.rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return _event("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta})

    def _start(self, watch: OpenWatch, query: Mapping[str, str]) -> list[bytes]:
        """The events before the live ones, taken in the same step as registering the watch."""
        rv_text = query.get("resourceVersion") or ""
        initial = query.get("sendInitialEvents") == "true"
        if initial or rv_text in ("", "0"):
            objs = [o for o in self._store.items(watch.rt) if watch.flt.matches(o)]
            events = [_event("ADDED", o) for o in objs]
            if initial and _truthy(query.get("allowWatchBookmarks")):
                events.append(self._bookmark(watch.rt, initial_end=True))
        else:
            changes = self._store.changes_since(watch.rt, parse_rv(rv_text))
            seen = (visible_change(c, watch.flt) for c in changes)
            events = [_event(*s) for s in seen if s is not None]
        self._open[watch.id] = watch
        return events

    async def serve(self, request: web.Request, watch: OpenWatch) -> web.StreamResponse:
        query = request.query
        timeout = _seconds(query.get("timeoutSeconds"))
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        try:
            watch.pending.extend(self._start(watch, query))
        except ApiError as err:
            if err.code != 410:
                raise
            return await _error_stream(request, err)
        try:
            resp = await _open_stream(request)
            await self._pump(request, resp, watch, seconds=timeout, bookmarks=bookmarks)
            return resp
        finally:
            self._open.pop(watch.id, None)

    async def _pump(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        watch: OpenWatch,
        *,
        seconds: float | None,
        bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds if seconds is not None else None
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            watch.wakeup.clear()
            now = loop.time()
            if watch.drop:
                # Close the socket without the terminating chunk: the client sees a broken stream.
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError
            if watch.stalled:
                await watch.wakeup.wait()
                continue
            if watch.expire:
                message = "The resourceVersion for the provided watch is too old."
                await resp.write(_event("ERROR", expired(message).status()))
                break
            if watch.closing or (deadline is not None and now >= deadline):
                break
            if watch.pending:
                await resp.write(watch.pending.popleft())
                continue
            if bookmarks and now >= next_bookmark:
                await resp.write(self._bookmark(watch.rt))
                next_bookmark = now + self.bookmark_interval
                continue
            wake_at = [next_bookmark] if bookmarks else []
            if deadline is not None:
                wake_at.append(deadline)
            try:
                delay = max(0.0, min(wake_at) - now) if wake_at else None
                await asyncio.wait_for(watch.wakeup.wait(), timeout=delay)
            except TimeoutError:
                pass
        await resp.write_eof()


def _seconds(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise bad_request(f"timeoutSeconds: invalid value {text!r}") from None


def _truthy(value: str | None) -> bool:
    return value in ("true", "1", "True")


async def _open_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    entry = request.get("log_entry")
    if isinstance(entry, dict):
        entry["status"] = 200
    return resp


async def _error_stream(request: web.Request, err: ApiError) -> web.StreamResponse:
    resp = await _open_stream(request)
    await resp.write(_event("ERROR", err.status()))
    await resp.write_eof()
    return resp
