"""One worker process of `authz serve --workers N` (`python -m authz.workers.worker FD LEVEL LOOP`).

It answers checks exactly as a single-process sidecar does, with a check stack built by the
same function (authz.stack) - its own snapshot, token cache, JWKS fetching (each worker
refreshes its keys itself, so a revoked key is gone from every worker within the refresh
interval), rate-limit counters, metrics and decision log - but reads no policy source: the
supervisor sends the documents over the channel on file descriptor FD, and they are compiled
here with the same PolicyStore. It turns ready (and
says so) after the first documents are compiled and the first key fetches were tried; it
drains and exits 0 on "stop", SIGTERM, SIGINT, or when the supervisor is gone (channel EOF).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from typing import Any

from authz.errors import ConfigError
from authz.policy.ownership import HostGrants
from authz.policy.store import PolicyStore, SourceDocument
from authz.server import eventloop
from authz.settings import ListenAddress, Settings
from authz.stack import build_check_stack
from authz.telemetry.metrics import Metrics
from authz.telemetry.redact import configure_logging
from authz.workers.channel import Channel
from authz.workers.stdout import AtomicLines

log = logging.getLogger(__name__)


async def serve(channel: Channel) -> int:
    """Run one worker until told to stop; the exit code."""
    init = await channel.receive()
    if init is None or init[0] != "init":
        log.error("worker: no init message from the supervisor")
        return 1
    _, settings, index, listen, sources, grants = init
    assert isinstance(settings, Settings)
    assert isinstance(listen, ListenAddress)
    assert grants is None or isinstance(grants, HostGrants)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lines = AtomicLines(sys.stdout.fileno())
    stack = await build_check_stack(
        settings, listen=listen, stdout=lines, report_policies=False, grants=grants
    )
    try:
        for source, documents in sorted(sources.items()):
            await asyncio.to_thread(stack.store.update, source, documents)
        await stack.start()
        await stack.serve()
        channel.send(("ready", index))
        log.debug("worker %d serving on %s", index, listen)
        await _follow(channel, stack.store, stack.metrics, stop)
        await stack.drain(settings.server.shutdown_grace)
    finally:
        await stack.close()
    return 0


async def _follow(
    channel: Channel, store: PolicyStore, metrics: Metrics, stop: asyncio.Event
) -> None:
    """Apply the supervisor's messages until a stop (message, signal or a gone supervisor)."""
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            receiving = asyncio.ensure_future(channel.receive())
            await asyncio.wait((receiving, stopped), return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                receiving.cancel()
                return
            message: tuple[Any, ...] | None = receiving.result()
            if message is None or message[0] == "stop":
                return
            if message[0] == "update":
                source, documents = message[1], message[2]
                await asyncio.to_thread(store.update, source, _documents(documents))
            elif message[0] == "grants":
                grants = message[1]
                assert isinstance(grants, HostGrants)
                await asyncio.to_thread(store.set_grants, grants)
            elif message[0] == "metrics":
                channel.send(("metrics", metrics.render()[0]))
    finally:
        stopped.cancel()


def _documents(documents: object) -> list[SourceDocument]:
    assert isinstance(documents, list)
    return documents


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    level = args[1] if len(args) > 1 else "info"
    event_loop = args[2] if len(args) > 2 else "asyncio"
    configure_logging(level)
    sock = socket.socket(fileno=int(args[0]))

    async def run() -> int:
        return await serve(await Channel.open(sock))

    try:
        return eventloop.run(run(), event_loop=event_loop)
    except ConfigError as exc:  # e.g. its socket cannot be bound: the supervisor reports the exit
        log.error("worker: %s", exc)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
