"""One worker process of `authz serve --workers N` (`python -m authz.workers.worker FD LEVEL LOOP`).

It answers checks exactly as a single-process sidecar does - its own snapshot, token cache,
JWKS fetching (each worker refreshes its keys itself, so a revoked key is gone from every
worker within the refresh interval), rate-limit counters, metrics and decision log - but
reads no policy source: the supervisor sends the documents over the channel on file
descriptor FD, and they are compiled here with the same PolicyStore. It turns ready (and
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

import aiohttp

from authz.jwt.providers import KeyRegistry
from authz.jwt.verify import Verifier
from authz.policy.snapshot import EMPTY, Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.factory import build_limiter
from authz.server import eventloop
from authz.server.h2server import build_check_server
from authz.server.listen import parse_listen
from authz.server.observe import CheckTelemetry
from authz.server.servicer import AuthorizationServicer
from authz.settings import Settings
from authz.telemetry import tracing
from authz.telemetry.adapters import RateLimitMetrics
from authz.telemetry.decisionlog import DecisionLog, LineWriter
from authz.telemetry.metrics import Metrics
from authz.workers.channel import Channel
from authz.workers.stdout import AtomicLines

log = logging.getLogger(__name__)


class _Current:
    snapshot: Snapshot = EMPTY

    def get(self) -> Snapshot:
        return self.snapshot

    def publish(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot


async def serve(channel: Channel) -> int:
    """Run one worker until told to stop; the exit code."""
    init = await channel.receive()
    if init is None or init[0] != "init":
        log.error("worker: no init message from the supervisor")
        return 1
    _, settings, index, listen, sources = init
    assert isinstance(settings, Settings)
    tracing.configure()
    metrics = Metrics()
    log_writer = LineWriter(AtomicLines(sys.stdout.fileno()), on_drop=metrics.log_dropped)  # type: ignore[arg-type]
    decision_log = DecisionLog(
        log_writer.submit, allow_sample_rate=settings.telemetry.log_allow_sample_rate
    )
    current = _Current()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession() as session:
        registry = KeyRegistry(settings=settings.jwks, session=session, on_fetch=metrics.jwks_fetch)
        store = PolicyStore(bind=registry.provider, publish=current.publish, retain=registry.retain)
        limiter = build_limiter(settings.ratelimit, observers=(RateLimitMetrics(metrics),))
        servicer = AuthorizationServicer(
            snapshot=current.get,
            verifier=Verifier(
                max_token_bytes=settings.tokens.max_token_bytes,
                cache_size=settings.tokens.cache_size,
            ),
            observer=CheckTelemetry(metrics=metrics, log=decision_log),
            limiter=limiter,
            trusted_proxy_hops=settings.client.trusted_proxy_hops,
        )
        server = build_check_server(
            settings.server.grpc_server, servicer, parse_listen(listen, flag="--grpc-listen")
        )
        try:
            for source, documents in sorted(sources.items()):
                await asyncio.to_thread(store.update, source, documents)
            await registry.first_attempts(settings.jwks.fetch_timeout)
            await limiter.start()
            await server.start()
            await server.set_serving(True)
            channel.send(("ready", index))
            log.debug("worker %d serving on %s", index, server.address)
            await _follow(channel, store, metrics, stop)
            await server.stop(settings.server.shutdown_grace)
        finally:
            await registry.close()
            await limiter.close()
            log_writer.close()
            tracing.shutdown()
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
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from authz.telemetry.redact import install

    for handler in logging.getLogger().handlers:
        install(handler)
    sock = socket.socket(fileno=int(args[0]))

    async def run() -> int:
        return await serve(await Channel.open(sock))

    return eventloop.run(run(), event_loop=event_loop)


if __name__ == "__main__":
    raise SystemExit(main())
