"""HTTP endpoints for kubelets and humans: /healthz (alive), /readyz (policies loaded), /metrics.

Readiness follows the first complete policy load and turns false again while shutting down, so
a Service stops sending traffic before the sidecar stops answering.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web


def build_app(
    *, ready: Callable[[], bool], routes: list[web.RouteDef] | None = None
) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(
            status=503, text="not ready: policies not loaded yet, or shutting down\n"
        )

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), *(routes or [])])
    return app


def metrics_route(render: Callable[[], tuple[bytes, str]]) -> web.RouteDef:
    """GET /metrics: Prometheus text exposition from `render` (body, content type)."""

    async def metrics(_request: web.Request) -> web.Response:
        body, content_type = render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    return web.get("/metrics", metrics)


async def start_http(app: web.Application, sock: socket.socket) -> web.AppRunner:
    """Serve `app` on a listening socket (bound early: see authz.server.listen.bind)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner
