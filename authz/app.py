"""`authz serve`: the check stack plus what runs once per pod, started and stopped together.

Around the check stack (authz.stack) this process runs the HTTP probes, the admin API, the
policy sources (files; Kubernetes) and, with --workers N, the worker pool. Every listener is
bound before anything starts, so a taken port is exit 2 naming its flag. Then, in order: HTTP
probes (/healthz answers, /readyz says 503), the first complete policy load, the check stack
(key fetches tried, check server up), workers, the admin API; then gRPC health turns SERVING
and /readyz 200. On SIGTERM or SIGINT readiness drops, the check server stops accepting and
lets in-flight checks finish, and the parts stop in reverse order (authz.lifecycle.Parts).
The process exits 0.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal

from aiohttp import web

from authz.controller.observer import Counters
from authz.controller.source import KubernetesSource
from authz.lifecycle import Parts
from authz.server.admin import AdminServer, AdminServicer
from authz.server.listen import bind, bound, check_free
from authz.server.probes import build_app, metrics_route, start_http
from authz.settings import ListenAddress, Settings
from authz.sources.files import FileSource
from authz.stack import CheckStack, build_check_stack
from authz.telemetry.adapters import ControllerMetrics
from authz.workers.pool import WorkerPool

log = logging.getLogger(__name__)


class Service:
    """Everything `authz serve` runs, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Set once checks are answered (tests and tools wait for it).
        self.serving = asyncio.Event()
        #: Where the HTTP probes listen, once bound (the port picked for port 0).
        self.http_address: ListenAddress | None = None
        self._loaded = False
        self._stopping = False
        self._stop = asyncio.Event()
        #: --workers N > 1: the processes answering checks (this one supervises them).
        self._pool = WorkerPool(settings) if settings.server.workers > 1 else None

    def ready(self) -> bool:
        workers_ready = self._pool is None or self._pool.ready()
        return self._loaded and not self._stopping and workers_ready

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        server, pool = self.settings.server, self._pool
        async with Parts() as parts:
            self._handle_signals(parts)
            http_socket = bind(server.http_listen, flag="--http-listen")
            parts.started("HTTP listener", http_socket.close)
            self.http_address = bound(server.http_listen, http_socket)
            stack = await build_check_stack(
                self.settings, listen=server.grpc_listen if pool is None else None
            )
            parts.started("check stack", stack.close)
            if pool is not None:
                pool.check_free()
            check_free(server.admin_listen, flag="--admin-listen")
            admin = AdminServer(
                AdminServicer(
                    snapshot=stack.store.current,
                    verifier=stack.verifier,
                    limiter=stack.limiter,
                    trusted_proxy_hops=self.settings.client.trusted_proxy_hops,
                    block_store=stack.blocks,
                ),
                server.admin_listen,
            )
            metrics = metrics_route(stack.metrics.render) if pool is None else self._merged(stack)
            app = build_app(ready=self.ready, routes=[metrics])
            runner = await start_http(app, http_socket)
            parts.started("HTTP probes", runner.cleanup)
            log.info("HTTP probes on %s (/healthz, /readyz, /metrics)", self.http_address)
            if not await self._load_policies(parts, stack):
                return 0  # stopped before the first complete list: nothing was served
            self._loaded = True
            await parts.start("answering checks", stack.start)
            if pool is not None:
                self._warn_local_limits()
                await parts.start("workers", pool.start, stop=lambda: pool.stop(0))
            await parts.start("admin API", admin.start, stop=lambda: admin.stop(0))
            log.info(
                "admin API (Explain, ListPolicies, ListBlocks, ClearBlocks) on %s", admin.address
            )
            await stack.serve()
            self._log_serving(stack)
            self.serving.set()
            await self._stop.wait()
            log.info("shutting down: draining in-flight checks")
            self._stopping = True
            if pool is not None:
                await pool.stop(server.shutdown_grace)
            await stack.drain(server.shutdown_grace)
        log.info("stopped")
        return 0

    async def _load_policies(self, parts: Parts, stack: CheckStack) -> bool:
        """The first complete load of every source, then their watchers; False when stopped
        before the Kubernetes API server ever answered."""
        settings, pool = self.settings, self._pool
        update = stack.store.update if pool is None else pool.forwarding(stack.store.update)
        files = FileSource(
            settings.policies.paths, update=update, interval=settings.policies.poll_interval
        )
        await asyncio.to_thread(files.load)
        if settings.kubernetes.enabled:
            kube = await KubernetesSource.connect(
                settings.kubernetes,
                update=update,
                current=stack.store.current,
                observer=ControllerMetrics(stack.metrics, Counters()),
                background=stack.background,
            )
            stack.blocks.add_observer(kube.block_events())
            await parts.start("Kubernetes watches", kube.start, stop=kube.stop)
            if not await kube.first_load(until=self._stop):
                return False
            controller = stack.background.task("Kubernetes controller", kube.run)
            parts.started("Kubernetes controller", controller.stop)
        watcher = stack.background.task("policy file watcher", files.run)
        parts.started("policy file watcher", watcher.stop)
        return True

    def _log_serving(self, stack: CheckStack) -> None:
        if stack.server is not None:
            where = str(stack.server.address)
        else:
            assert self._pool is not None
            where = ", ".join(self._pool.addresses)
        count = len(stack.store.current().policies)
        log.info(
            "serving ext_authz on %s with %d polic%s", where, count, "y" if count == 1 else "ies"
        )
        if count == 0:
            log.warning(
                "ready with no policy to serve: every check is denied (403 no_policy) until a "
                "valid AuthPolicy loads; see the policy problems logged above, --policies%s",
                " and the cluster's AuthPolicies" if self.settings.kubernetes.enabled else "",
            )

    def _handle_signals(self, parts: Parts) -> None:
        """SIGTERM and SIGINT stop the service, also while it starts (the first policy load
        may wait for the Kubernetes API server)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
            parts.started(f"{sig.name} handler", functools.partial(loop.remove_signal_handler, sig))

    def _merged(self, stack: CheckStack) -> web.RouteDef:
        """GET /metrics with workers: this process's metrics merged with every worker's."""
        pool = self._pool
        assert pool is not None

        async def handler(_request: web.Request) -> web.Response:
            own, content_type = stack.metrics.render()
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
