"""The test-only control API under ``/_fake/``: faults, the request log, watch/history switches,
and the server's clock.

A controller test needs to cause what a cluster does to a controller now and then (compaction,
410s on open watches, dropped or silent connections, an API server answering 500/503) and to
count what the controller sent (e.g. one status write per change). These endpoints do that from
outside the process; ``/_fake/`` cannot collide with a Kubernetes path, is never logged, and is
never subject to injected faults or authentication.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import JSON, ApiError, bad_request, from_code
from .objects import CLOCK
from .resources import Registry
from .store import Store
from .watch import Watches

PREFIX = "/_fake"
_LOG_LIMIT = 100_000  # a runaway retry loop must not eat the test machine's memory


@dataclass
class Fault:
    """Answer matching API requests with ``status``: the next ``count`` of them, or all."""

    status: int
    message: str | None = None
    count: int | None = None
    methods: frozenset[str] | None = None
    path_pattern: re.Pattern[str] | None = None
    retry_after: int | None = None

    def take(self, method: str, path: str) -> ApiError | None:
        """The error for this request, if the fault applies to it (using up one of ``count``)."""
        if self.methods is not None and method not in self.methods:
            return None
        if self.path_pattern is not None and not self.path_pattern.search(path):
            return None
        if self.count is not None:
            if self.count <= 0:
                return None
            self.count -= 1
        return from_code(self.status, self.message, retry_after=self.retry_after)


class Control:
    """State the control API changes, and the aiohttp routes that change it."""

    def __init__(self, store: Store, watches: Watches, registry: Registry) -> None:
        self.store = store
        self.watches = watches
        self.registry = registry
        self.fault: Fault | None = None
        self.log: list[JSON] = []

    def record(self, request: web.Request) -> JSON:
        entry: JSON = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "content_type": request.headers.get("Content-Type"),
            "time": time.time(),
            "status": None,
        }
        self.log.append(entry)
        if len(self.log) > _LOG_LIMIT:
            del self.log[: len(self.log) - _LOG_LIMIT]
        return entry

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/state", self._state),
            web.post(f"{PREFIX}/compact", self._compact),
            web.get(f"{PREFIX}/watches", self._watches),
            web.post(f"{PREFIX}/watches/{{action}}", self._watch_action),
            web.put(f"{PREFIX}/fault", self._set_fault),
            web.delete(f"{PREFIX}/fault", self._clear_fault),
            web.get(f"{PREFIX}/requests", self._requests),
            web.delete(f"{PREFIX}/requests", self._reset_requests),
            web.put(f"{PREFIX}/bookmark-interval", self._bookmark_interval),
            web.post(f"{PREFIX}/clock", self._advance_clock),
        ]

    async def _state(self, request: web.Request) -> web.Response:
        floors = {t.plural: self.store.floor(t) for t in self.registry.types}
        body = {"resourceVersion": self.store.rv, "watches": len(self.watches.describe())}
        return web.json_response({**body, "historyFloor": floors})

    async def _compact(self, request: web.Request) -> web.Response:
        body = await _json(request)
        plural = body.get("resource")
        types = [t for t in self.registry.types if plural is None or t.plural == plural]
        if not types:
            raise bad_request(f"unknown resource {plural!r}")
        for rt in types:
            self.store.compact(rt)
        return web.json_response({"resourceVersion": self.store.rv})

    async def _watches(self, request: web.Request) -> web.Response:
        return web.json_response(self.watches.describe())

    async def _watch_action(self, request: web.Request) -> web.Response:
        actions = {
            "expire": self.watches.expire_all,
            "drop": self.watches.drop_all,
            "stall": self.watches.stall_all,
            "release": self.watches.release_all,
        }
        action = actions.get(request.match_info["action"])
        if action is None:
            raise bad_request(f"unknown watch action {request.match_info['action']!r}")
        return web.json_response({"affected": action()})

    async def _set_fault(self, request: web.Request) -> web.Response:
        body = await _json(request)
        status = body.get("status")
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise bad_request("fault status must be an HTTP error code")
        methods = body.get("methods")
        pattern = body.get("path_pattern")
        self.fault = Fault(
            status=status,
            message=body.get("message"),
            count=body.get("count"),
            methods=frozenset(m.upper() for m in methods) if methods else None,
            path_pattern=re.compile(pattern) if pattern else None,
            retry_after=body.get("retry_after"),
        )
        return web.json_response({"ok": True})

    async def _clear_fault(self, request: web.Request) -> web.Response:
        self.fault = None
        return web.json_response({"ok": True})

    async def _requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.log)

    async def _reset_requests(self, request: web.Request) -> web.Response:
        self.log.clear()
        return web.json_response({"ok": True})

    async def _bookmark_interval(self, request: web.Request) -> web.Response:
        seconds = (await _json(request)).get("seconds")
        if not isinstance(seconds, int | float) or seconds <= 0:
            raise bad_request("seconds must be a positive number")
        self.watches.bookmark_interval = float(seconds)
        return web.json_response({"ok": True})

    async def _advance_clock(self, request: web.Request) -> web.Response:
        seconds = (await _json(request)).get("advance")
        if not isinstance(seconds, int | float) or seconds <= 0:
            raise bad_request("advance must be a positive number of seconds")
        CLOCK.offset += float(seconds)
        return web.json_response({"offset": CLOCK.offset})


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise bad_request("control requests take a JSON object")
    return body
