"""The fake API server's HTTP surface: URL routing, authentication, faults, logging, Status errors.

URLs are parsed by hand rather than with aiohttp route templates because Kubernetes paths are
positional (``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/{subresource}``) and an
unknown group, type or subresource must be a 404 Status, not an aiohttp HTML page. Every API request
passes through one middleware that logs it, checks the bearer token, applies an injected fault and
turns errors into ``kind: Status`` bodies.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from . import discovery
from .control import PREFIX, Control
from .crud import Reply, WriteOptions, Writer
from .errors import JSON, ApiError, bad_request, internal, not_found, path_not_found
from .lists import list_objects, request_filter
from .resources import BUILTIN_TYPES, Registry, ResourceType, crd_resource_types
from .schema import StructuralSchema
from .store import Store
from .watch import OpenWatch, Watches

DEFAULT_CRD = (
    Path(__file__).resolve().parents[3] / "deploy" / "crds" / "authz.dev_authpolicies.yaml"
)
_HEALTH = ("/healthz", "/livez", "/readyz")
_METHOD_NOT_ALLOWED = ApiError(
    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Options:
    host: str = "127.0.0.1"
    port: int = 0
    state_file: Path | None = None
    bookmark_interval: float = 1.0
    validate: bool = True
    history_limit: int = 1000
    token: str | None = None
    crds: tuple[Path, ...] = (DEFAULT_CRD,)


def status_response(err: ApiError) -> web.Response:
    return web.json_response(err.status(), status=err.code, headers=err.headers)


def _reply(reply: Reply) -> web.Response:
    resp = web.json_response(reply.body, status=reply.code)
    for warning in reply.warnings:
        resp.headers.add("Warning", "299 - " + json.dumps(warning))
    return resp


def _write_options(request: web.Request) -> WriteOptions:
    validation = request.query.get("fieldValidation") or "Warn"
    if validation not in ("Strict", "Warn", "Ignore"):
        raise bad_request(
            f'fieldValidation must be one of "Ignore", "Warn" or "Strict": {validation}'
        )
    return WriteOptions(dry_run="dryRun" in request.query, field_validation=validation)


async def _body(request: web.Request) -> object:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"error decoding request body: {exc}") from None


class FakeApiServer:
    def __init__(self, options: Options) -> None:
        self.options = options
        crd_types = [t for path in options.crds for t in crd_resource_types(path)]
        self.registry = Registry([*crd_types, *BUILTIN_TYPES])
        self.store = Store(state_file=options.state_file, history_limit=options.history_limit)
        self.watches = Watches(self.store, bookmark_interval=options.bookmark_interval)
        schemas = {
            t: StructuralSchema(t.schema) for t in crd_types if options.validate and t.schema
        }
        self.writer = Writer(self.store, schemas)
        self.control = Control(self.store, self.watches, self.registry)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self.control.routes())
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PREFIX + "/") or request.path in _HEALTH:
            try:
                return await handler(request)
            except ApiError as err:
                return status_response(err)
        entry = self.control.record(request)
        request["log_entry"] = entry
        try:
            self._authenticate(request)
            fault = (
                self.control.fault.take(request.method, request.path)
                if self.control.fault
                else None
            )
            if fault is not None:
                raise fault
            resp = await handler(request)
        except ApiError as err:
            resp = status_response(err)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            resp = status_response(internal(f"{type(exc).__name__}: {exc}"))
        if entry["status"] is None:
            entry["status"] = resp.status
        return resp

    def _authenticate(self, request: web.Request) -> None:
        token = self.options.token
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.path in _HEALTH:
            return web.Response(text="ok")
        if request.method == "GET" and (doc := self._discovery(request, parts)) is not None:
            return doc
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, rest = "", parts[1:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[2:]
        else:
            raise path_not_found()
        if len(rest) == 1:
            raise _METHOD_NOT_ALLOWED
        version, rest = rest[0], rest[1:]
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        rt = self.registry.find(group, version, rest[0])
        if rt is None or len(rest) > 3 or (namespace is None and len(rest) > 1):
            raise path_not_found()
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource is not None and (subresource != "status" or not rt.status_subresource):
            raise path_not_found()
        if name is None:
            return await self._collection(request, rt, namespace)
        assert namespace is not None
        return await self._object(request, rt, namespace, name, subresource)

    def _discovery(self, request: web.Request, parts: list[str]) -> web.Response | None:
        doc: JSON | None
        if parts == ["version"]:
            doc = discovery.version()
        elif parts == ["api"]:
            doc = discovery.core_versions(request.host)
        elif parts == ["apis"]:
            doc = discovery.group_list(self.registry)
        elif len(parts) == 2 and parts[0] == "apis":
            doc = discovery.group(self.registry, parts[1]) or {}
        elif len(parts) == 2 and parts[0] == "api":
            doc = discovery.resource_list(self.registry, "", parts[1]) or {}
        elif len(parts) == 3 and parts[0] == "apis":
            doc = discovery.resource_list(self.registry, parts[1], parts[2]) or {}
        else:
            return None
        if not doc:
            raise path_not_found()
        return web.json_response(doc)

    async def _collection(
        self, request: web.Request, rt: ResourceType, namespace: str | None
    ) -> web.StreamResponse:
        query = request.query
        flt = request_filter(rt, namespace, query)
        if request.method == "GET":
            if query.get("watch") in ("true", "1"):
                watch = OpenWatch(rt=rt, flt=flt, path=request.path, query=dict(query))
                return await self.watches.serve(request, watch)
            return web.json_response(list_objects(self.store, rt, flt, query))
        if namespace is None:
            raise _METHOD_NOT_ALLOWED
        if request.method == "POST":
            body = await _body(request)
            return _reply(self.writer.create(rt, namespace, body, _write_options(request)))
        if request.method == "DELETE":
            victims = [o for o in self.store.items(rt) if flt.matches(o)]
            return _reply(self.writer.delete_all(rt, victims, _write_options(request)))
        raise _METHOD_NOT_ALLOWED

    async def _object(
        self,
        request: web.Request,
        rt: ResourceType,
        namespace: str,
        name: str,
        subresource: str | None,
    ) -> web.StreamResponse:
        method = request.method
        if method == "GET":
            obj = self.store.get(rt, namespace, name)
            if obj is None:
                raise not_found(rt, name)
            return web.json_response(obj)
        body = await _body(request)
        opts = _write_options(request)
        if method == "PUT":
            reply = self.writer.replace(rt, namespace, name, body, opts, subresource=subresource)
        elif method == "PATCH":
            content_type = request.content_type
            reply = self.writer.patch(
                rt, namespace, name, body, content_type, opts, subresource=subresource
            )
        elif method == "DELETE" and subresource is None:
            reply = self.writer.delete(rt, namespace, name, body, opts)
        else:
            raise _METHOD_NOT_ALLOWED
        return _reply(reply)


async def serve(
    options: Options, *, announce: Callable[[int], None], stop: asyncio.Event | None = None
) -> None:
    """Run until SIGTERM/SIGINT or ``stop``; ``announce`` gets the port once the server listens."""
    server = FakeApiServer(options)
    runner = web.AppRunner(
        server.app(),
        handle_signals=False,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, reuse_address=True)
    await site.start()
    announce(int(runner.addresses[0][1]))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.watches.close_all()
    await asyncio.sleep(0.1)  # let open watch streams write their last chunk
    await runner.cleanup()
