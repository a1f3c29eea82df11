"""The supervisor's side of --workers N: start the workers, feed them policies, watch them.

Every source update (a complete document set per source, as the PolicyStore gets it) is
compiled by the supervisor's own store, for the policy status and the admin API, and sent to
every worker; the latest set per source is kept, so a worker that starts (or restarts after
a crash) gets the current policies first. The host grants (--allowed-hosts) travel the same
way: the latest are part of a starting worker's init and sent to every worker on change. A worker that dies is logged loudly and restarted
after a short pause; the pod is not ready while any worker is missing, since Envoy's share of
checks sent to it would fail (and be denied).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from authz.errors import ConfigError
from authz.policy.ownership import HostGrants
from authz.policy.snapshot import Snapshot
from authz.policy.store import SourceDocument
from authz.server.listen import check_free, parse_listen
from authz.settings import ListenAddress, Settings
from authz.workers import metrics as merged
from authz.workers.channel import Channel

log = logging.getLogger(__name__)

#: Seconds before a dead worker is started again.
RESTART_DELAY = 1.0
#: A worker that does not answer a metrics request in this long is left out of that scrape.
METRICS_TIMEOUT = 2.0

Update = Callable[[str, Sequence[SourceDocument]], Snapshot]


def worker_listen(grpc_listen: str, index: int) -> str:
    """Worker `index`'s address: unix:/run/authz.sock -> unix:/run/authz-0.sock, ..."""
    path = Path(grpc_listen.removeprefix("unix:"))
    return f"unix:{path.with_name(f'{path.stem}-{index}{path.suffix}')}"


@dataclass
class _Worker:
    index: int
    listen: ListenAddress
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    ready: bool = False
    #: Ready at least once: a worker that dies before its first start stops the service.
    started: bool = False
    #: Answers to metrics requests, in order (one request at a time per worker).
    replies: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WorkerPool:
    def __init__(self, settings: Settings) -> None:
        if settings.tokens.dpop_nonce_secret is None:
            # The workers answer the same clients: a nonce one hands out must pass at another.
            tokens = replace(settings.tokens, dpop_nonce_secret=secrets.token_urlsafe(32))
            settings = replace(settings, tokens=tokens)
        self._settings = settings
        self._workers = [
            _Worker(
                i,
                parse_listen(
                    worker_listen(str(settings.server.grpc_listen), i), flag="--grpc-listen"
                ),
            )
            for i in range(settings.server.workers)
        ]
        self._sources: dict[str, list[SourceDocument]] = {}
        self._grants: HostGrants | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def addresses(self) -> list[str]:
        return [str(w.listen) for w in self._workers]

    def ready(self) -> bool:
        return all(w.ready for w in self._workers)

    def check_free(self) -> None:
        """Refuse (ConfigError) worker sockets that cannot be bound, before any worker starts."""
        for worker in self._workers:
            check_free(worker.listen, flag="--grpc-listen")

    def forwarding(self, update: Update) -> Update:
        """`update` (the supervisor's store), then the same documents to every worker.

        Called from the sources' threads; the sending happens on the event loop."""

        def forward(source: str, documents: Sequence[SourceDocument]) -> Snapshot:
            snapshot = update(source, documents)
            copied = list(documents)
            if self._loop is None:
                self._sources[source] = copied  # before start: part of every worker's init
            else:
                self._loop.call_soon_threadsafe(self._publish, source, copied)
            return snapshot

        return forward

    def set_grants(self, grants: HostGrants | None) -> None:
        """The grants every worker starts with (before `start`)."""
        self._grants = grants

    def forwarding_grants(
        self, set_grants: Callable[[HostGrants | None], Snapshot]
    ) -> Callable[[HostGrants], Snapshot]:
        """`set_grants` (the supervisor's store), then the same grants to every worker."""

        def forward(grants: HostGrants) -> Snapshot:
            snapshot = set_grants(grants)
            if self._loop is None:
                self._grants = grants
            else:
                self._loop.call_soon_threadsafe(self._publish_grants, grants)
            return snapshot

        return forward

    def _publish_grants(self, grants: HostGrants) -> None:
        self._grants = grants
        for worker in self._workers:
            if worker.channel is not None:
                worker.channel.send(("grants", grants))

    def _publish(self, source: str, documents: list[SourceDocument]) -> None:
        self._sources[source] = documents
        for worker in self._workers:
            if worker.channel is not None:
                worker.channel.send(("update", source, documents))

    async def start(self) -> None:
        """Start every worker and wait until each is ready (or has died trying)."""
        self._loop = asyncio.get_running_loop()
        for worker in self._workers:
            self._tasks.append(
                asyncio.create_task(self._keep(worker), name=f"authz worker {worker.index}")
            )
        while not self.ready() and not self._stopping:
            failed = [
                w
                for w in self._workers
                if w.process is not None and not w.started and w.process.returncode is not None
            ]
            if failed:
                raise ConfigError(
                    f"worker {failed[0].index} ({failed[0].listen}) exited with code "
                    f"{failed[0].process.returncode} before serving (its log is above)"  # type: ignore[union-attr]
                )
            await asyncio.sleep(0.05)

    async def _keep(self, worker: _Worker) -> None:
        """Run a worker; restart it whenever it dies, until the pool stops."""
        while not self._stopping:
            code = await self._run(worker)
            if self._stopping or not worker.started:
                return  # stopping, or a first start failed: start() reports it
            log.error(
                "worker %d (%s) exited with code %s; restarting it in %.0f s",
                worker.index,
                worker.listen,
                code,
                RESTART_DELAY,
            )
            await asyncio.sleep(RESTART_DELAY)

    async def _run(self, worker: _Worker) -> int | None:
        ours, theirs = socket.socketpair()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "authz.workers.worker",
                str(theirs.fileno()),
                self._settings.telemetry.log_level,
                self._settings.server.event_loop,
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        worker.channel = channel = await Channel.open(ours)
        channel.send(
            (
                "init",
                self._settings,
                worker.index,
                worker.listen,
                dict(self._sources),
                self._grants,
            )
        )
        try:
            while (message := await channel.receive()) is not None:
                if message[0] == "ready":
                    worker.ready = worker.started = True
                    log.info("worker %d serving ext_authz on %s", worker.index, worker.listen)
                elif message[0] == "metrics":
                    worker.replies.put_nowait(message[1])
        finally:
            worker.ready = False
            worker.channel = None
            channel.close()
        return await worker.process.wait()

    async def metrics(self, own: bytes) -> bytes:
        """The supervisor's exposition `own` merged with every ready worker's."""
        texts = await asyncio.gather(*(self._worker_metrics(w) for w in self._workers))
        return merged.render([own.decode(), *(t.decode() for t in texts if t is not None)])

    async def _worker_metrics(self, worker: _Worker) -> bytes | None:
        async with worker.lock:
            channel = worker.channel
            if channel is None:
                return None
            while not worker.replies.empty():
                worker.replies.get_nowait()  # a late answer to an abandoned request
            channel.send(("metrics",))
            try:
                return await asyncio.wait_for(worker.replies.get(), METRICS_TIMEOUT)
            except TimeoutError:
                log.warning("worker %d did not report its metrics in time", worker.index)
                return None

    async def stop(self, grace: float) -> None:
        """Ask every worker to drain (each gives its checks `grace` s), then wait for them."""
        self._stopping = True
        for worker in self._workers:
            if worker.channel is not None:
                worker.channel.send(("stop",))
        processes = [w.process for w in self._workers if w.process is not None]
        waiting = asyncio.gather(*(p.wait() for p in processes))
        try:
            await asyncio.wait_for(waiting, grace + 5)
        except TimeoutError:
            for process in processes:
                if process.returncode is None:
                    log.error("worker %d did not stop in time; killing it", process.pid)
                    process.kill()
            await asyncio.gather(*(p.wait() for p in processes))
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
