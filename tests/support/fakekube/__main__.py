"""Run the fake API server: ``python -m tests.support.fakekube --port 0 --state-file PATH``.

It runs in its own process so that tests can kill and restart it like a real API server, and so
that a controller under test talks to it over real sockets with the real client. The bound port is
the first line on stdout (and, with ``--port-file``, the content of that file), written only once
the server accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from .server import DEFAULT_CRD, Options, serve


def _parse(argv: list[str] | None) -> tuple[Options, Path | None, bool]:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fakekube")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-file", type=Path, help="objects and resourceVersion persist here")
    parser.add_argument("--port-file", type=Path, help="also write the bound port here")
    parser.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--history-limit", type=int, default=1000, help="changes kept per type")
    parser.add_argument("--token", help="require this bearer token on API requests")
    parser.add_argument("--crd", type=Path, action="append", help=f"default: {DEFAULT_CRD}")
    parser.add_argument(
        "--no-validate", action="store_true", help="skip CRD schema pruning and validation"
    )
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="stop when stdin closes (the parent died), so no server outlives its test run",
    )
    args = parser.parse_args(argv)
    options = Options(
        host=args.host,
        port=args.port,
        state_file=args.state_file,
        bookmark_interval=args.bookmark_interval,
        validate=not args.no_validate,
        history_limit=args.history_limit,
        token=args.token,
        crds=tuple(args.crd) if args.crd else (DEFAULT_CRD,),
    )
    return options, args.port_file, args.exit_with_stdin


async def _run(options: Options, *, announce: Callable[[int], None], watch_stdin: bool) -> None:
    stop = asyncio.Event()
    eof_task = None
    if watch_stdin:
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def stop_at_eof() -> None:
            while await reader.read(4096):
                pass
            stop.set()

        eof_task = asyncio.create_task(stop_at_eof())
    await serve(options, announce=announce, stop=stop)
    if eof_task is not None:
        eof_task.cancel()


def main(argv: list[str] | None = None) -> None:
    options, port_file, watch_stdin = _parse(argv)

    def announce(port: int) -> None:
        if port_file is not None:
            tmp = port_file.with_suffix(".tmp")
            tmp.write_text(f"{port}\n")
            tmp.replace(port_file)
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()

    asyncio.run(_run(options, announce=announce, watch_stdin=watch_stdin))


if __name__ == "__main__":
    main()
