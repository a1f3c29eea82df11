"""A scriptable HTTP server for key-provider tests, run as its own process.

Tests tell it, per path, what to answer (status, body, a delay before answering, a body sent in
slow chunks, a redirect) and ask it how many requests each path received, so a test can prove
"N concurrent callers -> one fetch" or "no request at all" from the server's side of the wire.

    python -m tests.support.jwks_server --port PORT

Control endpoints (everything else is a scripted path):
    PUT /_routes/<path>   body: a Route as JSON; resets that path's hit count
    GET /_hits/<path>     {"hits": N}
    GET /_ready           200 once listening
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.support.procs import PYTHON, Proc, free_port


@dataclass(frozen=True)
class Route:
    """What the server answers on one path."""

    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    #: Seconds to wait before sending the response headers.
    delay: float = 0.0
    #: Send the body in this many pieces, `chunk_delay` seconds apart (chunked encoding).
    chunks: int = 1
    chunk_delay: float = 0.0
    #: A Location header (for 3xx answers).
    location: str | None = None


def build_app() -> web.Application:
    routes: dict[str, Route] = {}
    hits: Counter[str] = Counter()

    async def put_route(request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        routes[path] = Route(**await request.json())
        hits[path] = 0
        return web.json_response({"ok": True})

    async def get_hits(request: web.Request) -> web.Response:
        return web.json_response({"hits": hits["/" + request.match_info["path"]]})

    async def ready(_request: web.Request) -> web.Response:
        return web.Response(text="ready")

    async def scripted(request: web.Request) -> web.StreamResponse:
        hits[request.path] += 1
        route = routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="no route")
        if route.delay:
            await asyncio.sleep(route.delay)
        headers = {"Location": route.location} if route.location else {}
        if route.chunks <= 1:
            return web.Response(
                status=route.status,
                body=route.body.encode(),
                content_type=route.content_type,
                headers=headers,
            )
        response = web.StreamResponse(status=route.status, headers=headers)
        response.content_type = route.content_type
        response.enable_chunked_encoding()
        await response.prepare(request)
        data = route.body.encode()
        size = -(-len(data) // route.chunks)
        for start in range(0, len(data), size):
            await response.write(data[start : start + size])
            await asyncio.sleep(route.chunk_delay)
        await response.write_eof()
        return response

    app = web.Application()
    app.add_routes(
        [
            web.put("/_routes/{path:.*}", put_route),
            web.get("/_hits/{path:.*}", get_hits),
            web.get("/_ready", ready),
            web.get("/{path:.*}", scripted),
        ]
    )
    return app


class JwksServer:
    """The test side: start the process, script routes, read hit counts."""

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    @classmethod
    def start(cls, log: Path) -> JwksServer:
        port = free_port()
        proc = Proc(
            "jwks-server",
            [PYTHON, "-m", "tests.support.jwks_server", "--port", str(port)],
            log=log,
        )
        proc.wait_http(f"http://127.0.0.1:{port}/_ready")
        return cls(proc, port)

    def url(self, path: str) -> str:
        return self.base + path

    async def route(self, path: str, route: Route) -> str:
        """Script `path` (resetting its hit count); returns its URL."""
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{self.base}/_routes{path}", data=json.dumps(asdict(route))) as response,
        ):
            response.raise_for_status()
        return self.url(path)

    def hits(self, path: str) -> int:
        """Requests `path` received since it was scripted (blocking: a probe for `until`)."""
        with urllib.request.urlopen(f"{self.base}/_hits{path}", timeout=10) as response:
            count: int = json.loads(response.read())["hits"]
            return count

    def stop(self) -> None:
        self.proc.terminate()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(build_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main(sys.argv[1:])
