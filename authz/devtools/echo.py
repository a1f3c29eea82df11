"""DEV ONLY: a tiny upstream that answers every request with what it received, as JSON.

`make run` and the end-to-end tests put it behind Envoy to show which headers the sidecar set,
overwrote or removed.   usage: python -m authz.devtools.echo --port 8081
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
    )


def build() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="DEV ONLY echo upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(build(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
