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
from aiohttp import web

from authz.controller.observer import Counters
from authz.controller.source import KubernetesSource
from authz.jwt.providers import KeyRegistry
from authz.jwt.verify import Verifier
from authz.policy.snapshot import EMPTY, Snapshot
from authz.policy.store import PolicyStore
from authz.ratelimit.factory import build_limiter
from authz.server.admin import AdminServer, AdminServicer
from authz.server.h2server import build_check_server
from authz.server.listen import parse_listen
from authz.server.observe import CheckTelemetry
from authz.server.probes import build_app, metrics_route, start_http
from authz.server.servicer import AuthorizationServicer
from authz.settings import Settings
from authz.sources.files import FileSource, report
from authz.telemetry import tracing
from authz.telemetry.adapters import ControllerMetrics, RateLimitMetrics
from authz.telemetry.decisionlog import DecisionLog, LineWriter
from authz.telemetry.metrics import Metrics
from authz.workers.pool import WorkerPool

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SnapshotHolder:
    """The current snapshot. Publishing is one reference assignment, atomic for readers."""

    current: Snapshot = EMPTY
    loaded: bool = False
    metrics: Metrics | None = None
    _previous: Snapshot | None = field(default=None, repr=False)

    def get(self) -> Snapshot:
        return self.current

    def publish(self, snapshot: Snapshot) -> None:
        report(snapshot, previous=self._previous)
        self._previous = snapshot
        self.current = snapshot
        if self.metrics is not None:
            self.metrics.policy_states([str(state.state) for state in snapshot.states])


class Service:
    """Everything `authz serve` runs, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.holder = SnapshotHolder(metrics=self.metrics)
        self._stopping = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: --workers N > 1: the processes answering checks (this one supervises them).
        self._pool = WorkerPool(settings) if settings.server.workers > 1 else None

    def ready(self) -> bool:
        workers_ready = self._pool is None or self._pool.ready()
        return self.holder.loaded and not self._stopping and workers_ready

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        settings = self.settings
        grpc_address = parse_listen(settings.server.grpc_listen, flag="--grpc-listen")
        http_address = parse_listen(settings.server.http_listen, flag="--http-listen")
        admin_address = parse_listen(settings.server.admin_listen, flag="--admin-listen")
        tracing.configure()
        metrics = self.metrics
        log_writer = LineWriter(on_drop=metrics.log_dropped)
        decision_log = DecisionLog(
            log_writer.submit, allow_sample_rate=settings.telemetry.log_allow_sample_rate
        )
        async with aiohttp.ClientSession() as session:
            registry = KeyRegistry(
                settings=settings.jwks, session=session, on_fetch=metrics.jwks_fetch
            )
            store = PolicyStore(
                bind=registry.provider, publish=self.holder.publish, retain=registry.retain
            )
            verifier = Verifier(
                max_token_bytes=settings.tokens.max_token_bytes,
                cache_size=settings.tokens.cache_size,
            )
            limiter = build_limiter(settings.ratelimit, observers=(RateLimitMetrics(metrics),))
            hops = settings.client.trusted_proxy_hops
            servicer = AuthorizationServicer(
                snapshot=self.holder.get,
                verifier=verifier,
                observer=CheckTelemetry(metrics=metrics, log=decision_log),
                limiter=limiter,
                trusted_proxy_hops=hops,
            )
            pool = self._pool
            update = store.update if pool is None else pool.forwarding(store.update)
            grpc_server = (
                build_check_server(settings.server.grpc_server, servicer, grpc_address)
                if pool is None
                else None
            )
            admin_server = AdminServer(
                AdminServicer(
                    snapshot=self.holder.get,
                    verifier=verifier,
                    limiter=limiter,
                    trusted_proxy_hops=hops,
                ),
                admin_address,
            )
            render = metrics_route(metrics.render) if pool is None else self._merged_metrics()
            runner = await start_http(build_app(ready=self.ready, routes=[render]), http_address)
            log.info("HTTP probes on %s (/healthz, /readyz, /metrics)", http_address)
            kube: KubernetesSource | None = None
            try:
                files = FileSource(
                    settings.policies.paths,
                    update=update,
                    interval=settings.policies.poll_interval,
                )
                await asyncio.to_thread(files.load)
                if settings.kubernetes.enabled:
                    self._install_signal_handlers()  # the API server may keep us waiting
                    kube = await KubernetesSource.connect(
                        settings.kubernetes,
                        update=update,
                        current=self.holder.get,
                        observer=ControllerMetrics(metrics, Counters()),
                    )
                    await kube.start()
                    if not await kube.first_load(until=self._stop):
                        return 0  # stopped before the first complete list: nothing was served
                    self._watch(kube.run(), "Kubernetes controller")
                await registry.first_attempts(settings.jwks.fetch_timeout)
                self._watch(files.run(), "policy file watcher")
                self.holder.loaded = True
                await limiter.start()
                if grpc_server is not None:
                    await grpc_server.start()
                else:
                    assert pool is not None
                    self._warn_local_limits()
                    await pool.start()
                await admin_server.start()
                log.info("admin API (Explain, ListPolicies) on %s", admin_server.address)
                if grpc_server is not None:
                    await grpc_server.set_serving(True)
                log.info(
                    "serving ext_authz on %s with %d polic%s",
                    grpc_server.address if grpc_server is not None else ", ".join(pool.addresses),  # type: ignore[union-attr]
                    len(self.holder.current.policies),
                    "y" if len(self.holder.current.policies) == 1 else "ies",
                )
                self._install_signal_handlers()
                await self._stop.wait()
                log.info("shutting down: draining in-flight checks")
                self._stopping = True
                if grpc_server is not None:
                    await grpc_server.stop(settings.server.shutdown_grace)
                else:
                    assert pool is not None
                    await pool.stop(settings.server.shutdown_grace)
                await admin_server.stop(0)
            finally:
                if pool is not None:
                    await pool.stop(0)  # a failed start leaves no worker behind
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                if kube is not None:
                    await kube.stop()  # ends the watches and releases the leader Lease
                await runner.cleanup()
                await registry.close()
                await limiter.close()
                log_writer.close()
                tracing.shutdown()
        log.info("stopped")
        return 0

    def _merged_metrics(self) -> web.RouteDef:
        """GET /metrics with workers: this process's metrics merged with every worker's."""
        pool = self._pool
        assert pool is not None

        async def handler(_request: web.Request) -> web.Response:
            own, content_type = self.metrics.render()
            body = await pool.metrics(own)
            return web.Response(body=body, headers={"Content-Type": content_type})

        return web.get("/metrics", handler)

    def _warn_local_limits(self) -> None:
        if self.settings.ratelimit.redis_url is None:
            log.warning(
                "--workers %d without --redis-url: each worker keeps its own rate-limit counters, "
                "so a client spread over the workers may get up to %d times its limit; "
                "use --redis-url for exact limits",
                self.settings.server.workers,
                self.settings.server.workers,
            )

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
