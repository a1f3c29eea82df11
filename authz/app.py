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

from authz import compiled
from authz.controller.observer import Counters
from authz.controller.source import KubernetesSource
from authz.lifecycle import Parts
from authz.server.admin import AdminServer, AdminServicer
from authz.server.grpc_server import ExtProcServer
from authz.server.listen import bind, bound, check_free
from authz.server.probes import build_app, metrics_route, start_http
from authz.server.tls import admin_uses_tls
from authz.settings import ListenAddress, Settings
from authz.sources.files import FileSource
from authz.sources.hostgrants import GrantsFile
from authz.stack import CheckStack, build_check_stack
from authz.telemetry.adapters import ControllerMetrics
from authz.workers.pool import WorkerPool

log = logging.getLogger(__name__)

#: The admin API runs in the supervisor, the checks in the workers: without Redis to share it
#: through, a revocation would stay in the supervisor's memory.
WORKERS_CANNOT_REVOKE = (
    "with --workers N, revocations reach the workers through --redis-url only: set it, or run "
    "with --workers 1"
)


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
        allowed = settings.policies.allowed_hosts
        self._grants = (
            GrantsFile(allowed, interval=settings.policies.poll_interval) if allowed else None
        )

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
            grants = self._grants.first() if self._grants is not None else None
            if pool is not None:
                pool.set_grants(grants)
            stack = await build_check_stack(
                self.settings, listen=server.grpc_listen if pool is None else None, grants=grants
            )
            parts.started("check stack", stack.close)
            if pool is not None:
                pool.check_free()
            check_free(server.admin_listen, flag="--admin-listen")
            admin_tls = stack.tls if admin_uses_tls(server.admin_listen) else None
            admin = AdminServer(
                AdminServicer(
                    snapshot=stack.store.current,
                    verifier=stack.verifier,
                    limiter=stack.limiter,
                    trusted_proxy_hops=self.settings.client.trusted_proxy_hops,
                    revoke_refusal=(
                        None
                        if pool is None or self.settings.ratelimit.redis_url is not None
                        else WORKERS_CANNOT_REVOKE
                    ),
                    block_store=stack.blocks,
                ),
                server.admin_listen,
                tls=admin_tls,
            )
            ext_proc = self._ext_proc_server(stack)
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
                "admin API (Explain, ListPolicies, Revoke, ListBlocks, ...) on %s%s",
                admin.address,
                " over TLS" if admin_tls is not None else "",
            )
            if ext_proc is not None:
                await parts.start("ext_proc server", ext_proc.start, stop=lambda: ext_proc.stop(0))
                log.info("serving ext_proc (response redaction) on %s", ext_proc.address)
            await stack.serve()
            if ext_proc is not None:
                await ext_proc.set_serving(True)
            self._log_serving(stack)
            self.serving.set()
            await self._stop.wait()
            log.info("shutting down: draining in-flight checks")
            self._stopping = True
            if pool is not None:
                await pool.stop(server.shutdown_grace)
            if ext_proc is not None:
                await ext_proc.stop(server.shutdown_grace)
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
        if self._grants is not None:
            grants_file = self._grants
            apply = (
                stack.store.set_grants
                if pool is None
                else pool.forwarding_grants(stack.store.set_grants)
            )
            grants_watcher = stack.background.task(
                "allowed-hosts watcher", lambda: grants_file.run(apply)
            )
            parts.started("allowed-hosts watcher", grants_watcher.stop)
        return True

    def _ext_proc_server(self, stack: CheckStack) -> ExtProcServer | None:
        """--ext-proc-listen: Process on a grpcio listener of its own (bound now: a taken port
        is exit 2 before anything starts)."""
        listen = self.settings.response.ext_proc_listen
        if listen is None or stack.ext_proc is None:
            return None
        return ExtProcServer(
            stack.ext_proc, listen, max_message_bytes=self.settings.response.body_max_bytes
        )

    def _log_serving(self, stack: CheckStack) -> None:
        if stack.server is not None:
            where = str(stack.server.address)
            if stack.tls is not None:
                where += f" over {stack.tls.describe()}"
        else:
            assert self._pool is not None
            where = ", ".join(self._pool.addresses)
        count = len(stack.store.current().policies)
        log.info(
            "serving ext_authz on %s with %d polic%s; check path %s",
            where,
            count,
            "y" if count == 1 else "ies",
            compiled.MODE,
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
