"""The composition root of `authz serve`: build the parts, start them together, drain on SIGTERM.

Order matters. HTTP probes start first (/healthz answers, /readyz says 503); the first complete
policy load follows; then gRPC health turns SERVING and /readyz 200. On SIGTERM or SIGINT the
order reverses: readiness drops, the gRPC server stops accepting and lets in-flight checks
finish, then background work stops. The process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field

import aiohttp

from authz.jwt.providers import KeyRegistry
from authz.jwt.verify import Verifier
from authz.policy.snapshot import EMPTY, Snapshot
from authz.policy.store import PolicyStore
from authz.server.grpc_server import GrpcServer
from authz.server.listen import parse_listen
from authz.server.probes import build_app, start_http
from authz.server.servicer import AuthorizationServicer
from authz.settings import Settings
from authz.sources.files import FileSource, report

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SnapshotHolder:
    """The current snapshot. Publishing is one reference assignment, atomic for readers."""

    current: Snapshot = EMPTY
    loaded: bool = False
    _previous: Snapshot | None = field(default=None, repr=False)

    def get(self) -> Snapshot:
        return self.current

    def publish(self, snapshot: Snapshot) -> None:
        report(snapshot, previous=self._previous)
        self._previous = snapshot
        self.current = snapshot


class Service:
    """Everything `authz serve` runs, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.holder = SnapshotHolder()
        self._stopping = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def ready(self) -> bool:
        return self.holder.loaded and not self._stopping

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        settings = self.settings
        grpc_address = parse_listen(settings.server.grpc_listen, flag="--grpc-listen")
        http_address = parse_listen(settings.server.http_listen, flag="--http-listen")
        async with aiohttp.ClientSession() as session:
            registry = KeyRegistry(settings=settings.jwks, session=session)
            store = PolicyStore(
                bind=registry.provider, publish=self.holder.publish, retain=registry.retain
            )
            verifier = Verifier(
                max_token_bytes=settings.tokens.max_token_bytes,
                cache_size=settings.tokens.cache_size,
            )
            servicer = AuthorizationServicer(snapshot=self.holder.get, verifier=verifier)
            grpc_server = GrpcServer(servicer, grpc_address)
            runner = await start_http(build_app(ready=self.ready), http_address)
            log.info("HTTP probes on %s (/healthz, /readyz)", http_address)
            try:
                files = FileSource(
                    settings.policies.paths,
                    update=store.update,
                    interval=settings.policies.poll_interval,
                )
                await asyncio.to_thread(files.load)
                await registry.first_attempts(settings.jwks.fetch_timeout)
                self._watch(files.run(), "policy file watcher")
                self.holder.loaded = True
                await grpc_server.start()
                await grpc_server.set_serving(True)
                log.info(
                    "serving ext_authz on %s with %d polic%s",
                    grpc_server.address,
                    len(self.holder.current.policies),
                    "y" if len(self.holder.current.policies) == 1 else "ies",
                )
                self._install_signal_handlers()
                await self._stop.wait()
                log.info("shutting down: draining in-flight checks")
                self._stopping = True
                await grpc_server.stop(settings.server.shutdown_grace)
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                await runner.cleanup()
                await registry.close()
        log.info("stopped")
        return 0

    def _watch(self, coroutine: object, name: str) -> None:
        """Run a background task; if it dies, say so loudly and stop the service (fail closed)."""
        task: asyncio.Task[None] = asyncio.create_task(coroutine, name=name)  # type: ignore[arg-type]

        def done(finished: asyncio.Task[None]) -> None:
            if finished.cancelled():
                return
            log.critical("%s stopped unexpectedly: %r; shutting down", name, finished.exception())
            self.request_stop()

        task.add_done_callback(done)
        self._tasks.append(task)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
