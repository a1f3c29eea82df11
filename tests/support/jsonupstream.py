"""An upstream answering with JSON that holds secrets, in every shape a response can take.

The response-redaction tests put it behind Envoy (ext_authz + ext_proc) and read what reaches
the client. Every answer echoes the query string the upstream received (`query`) and whether
the request asked for gzip (`accept_encoding`), so a test sees the query rewrites and the
removed `accept-encoding` at the upstream itself.

usage: python -m tests.support.jsonupstream --port PORT
"""

from __future__ import annotations

import argparse
import gzip
import json
from typing import Any

from aiohttp import web

#: Served byte for byte by /public: odd spacing a re-serialization would change.
PUBLIC_BODY = b'{ "ssn" :  "123-45-6789",\n  "note": "untouched" }\n'


def customer(request: web.Request) -> dict[str, Any]:
    return {
        "id": request.match_info.get("id", "c1"),
        "name": "Ada",
        "ssn": "123-45-6789",
        "cards": [
            {"number": "4111111111111111", "brand": "visa"},
            {"number": "5500000000000004", "brand": "mc"},
        ],
        "profile": {"password": "hunter2", "login": {"password": "swordfish", "user": "ada"}},
        "query": request.query_string,
        "accept_encoding": request.headers.get("accept-encoding", ""),
        "ext_proc_marker": request.headers.get("x-authz-ext-proc", ""),
    }


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


async def plain(request: web.Request) -> web.Response:
    return web.Response(body=_json(customer(request)), content_type="application/json")


async def negotiated(request: web.Request) -> web.Response:
    """Compressed whenever the request accepts gzip, as a real upstream would."""
    body = _json(customer(request))
    if "gzip" in request.headers.get("accept-encoding", ""):
        return web.Response(
            body=gzip.compress(body),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    return web.Response(body=body, content_type="application/json")


async def always_gzip(request: web.Request) -> web.Response:
    """Compressed even when not asked: the response cannot be read, so it must not pass."""
    return web.Response(
        body=gzip.compress(_json(customer(request))),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )


async def text(request: web.Request) -> web.Response:
    return web.Response(text="ssn=123-45-6789", content_type="text/plain")


async def malformed(request: web.Request) -> web.Response:
    return web.Response(body=b'{"ssn": "123-45-6789",', content_type="application/json")


async def big(request: web.Request) -> web.Response:
    size = int(request.query.get("size", "200000"))
    data = {"ssn": "123-45-6789", "padding": "x" * size}
    return web.Response(body=_json(data), content_type="application/json")


async def deep(request: web.Request) -> web.Response:
    depth = int(request.query.get("depth", "5000"))
    return web.Response(body=b"[" * depth + b"]" * depth, content_type="application/json")


async def chunked(request: web.Request) -> web.StreamResponse:
    """Sent in pieces without content-length: Envoy must buffer it whole before redaction."""
    response = web.StreamResponse(headers={"content-type": "application/problem+json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    data = customer(request)
    data["padding"] = "x" * int(request.query.get("pad", "0"))
    body = _json(data)
    step = max(16, len(body) // 64)
    for start in range(0, len(body), step):
        await response.write(body[start : start + step])
    await response.write_eof()
    return response


async def empty(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def public(request: web.Request) -> web.Response:
    return web.Response(body=PUBLIC_BODY, content_type="application/json")


def build() -> web.Application:
    app = web.Application()
    app.router.add_get("/customers/negotiated", negotiated)
    app.router.add_get("/customers/gzip", always_gzip)
    app.router.add_get("/customers/text", text)
    app.router.add_get("/customers/malformed", malformed)
    app.router.add_get("/customers/big", big)
    app.router.add_get("/customers/deep", deep)
    app.router.add_get("/customers/chunked", chunked)
    app.router.add_get("/customers/empty", empty)
    app.router.add_get("/customers/{id}", plain)
    app.router.add_get("/loose/text", text)
    app.router.add_get("/public", public)
    app.router.add_get("/plain/{id}", plain)
    app.router.add_get("/ready", lambda _: web.Response(text="ok"))  # type: ignore[arg-type,return-value]
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="JSON upstream for the redaction tests")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(build(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
