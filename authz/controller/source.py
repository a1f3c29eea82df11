"""The Kubernetes policy source: watches in, one snapshot per burst out, status written back.

Threads do the blocking work (one per watched scope, one for leader election, a small pool for
status writes; the first two guarded by authz.lifecycle.Background, which restarts one that
dies); the event loop only coordinates:

    watch threads --apply--> ObjectCache --signal--> publish loop --to_thread--> PolicyStore.update
                                      \\--signal--> status loop (leader only) --to_thread--> writes

Bursts are coalesced: the publish loop waits until no change arrived for `coalesce_quiet`
(100 ms), but at most `coalesce_max` (1 s) after the first change; then it compiles everything
that changed into one snapshot. During a long burst (more than BUSY_CHANGES changes in the last
`coalesce_max`) swaps are also spaced at least `coalesce_max` apart, however the changes trickle
in. 1,000 resources applied at once therefore cost about one swap per second the burst lasts,
not 1,000, and a lone change is enforced about 100 ms (plus compile time) after it arrives.
Readiness follows the first complete list of every scope; after that the last snapshot keeps
serving whatever the API server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

from authz.controller.api import KubeApi
from authz.controller.blockevents import BlockEvents
from authz.controller.documents import SOURCE_NAME, ObjectCache
from authz.controller.events import EventRecorder
from authz.controller.leader import LeaderElector
from authz.controller.observer import ControllerObserver, Counters
from authz.controller.status import StatusWriter
from authz.controller.watcher import Watcher, scope_name
from authz.lifecycle import Background, Guarded
from authz.policy.snapshot import Snapshot
from authz.policy.store import SourceDocument
from authz.settings import KubernetesSettings

log = logging.getLogger(__name__)

#: How often the status loop looks for work without being asked (new snapshots from other
#: sources, keys that arrived for an IssuerUnavailable policy).
STATUS_TICK = 1.0
_STATUS_COALESCE = 0.1
#: More changes than this within coalesce_max make a burst: swaps are then spaced coalesce_max.
BUSY_CHANGES = 20


def default_lease_name(settings: KubernetesSettings) -> str:
    """One Lease per shard: replicas watching the same namespaces and selector elect together,
    a fleet with another selector elects its own leader for its own resources."""
    if not settings.namespaces and not settings.selector:
        return "authz-leader"
    shard = json.dumps([sorted(settings.namespaces), settings.selector or ""])
    return "authz-leader-" + hashlib.sha256(shard.encode()).hexdigest()[:10]


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class KubernetesSource:
    def __init__(
        self,
        api: KubeApi,
        *,
        settings: KubernetesSettings,
        update: Callable[[str, list[SourceDocument]], Snapshot],
        current: Callable[[], Snapshot],
        lease_namespace: str,
        observer: ControllerObserver | None = None,
        background: Background | None = None,
    ) -> None:
        self._background = background
        self.observer: ControllerObserver = observer if observer is not None else Counters()
        self._settings = settings
        self._update = update
        self._current = current
        namespaces: Sequence[str | None] = settings.namespaces or (None,)
        self._cache = ObjectCache(
            [scope_name(n) for n in namespaces],
            on_documents=lambda: self._signal(self._documents_signal),
            on_status=lambda: self._signal(self._status_signal),
        )
        self._watchers = [
            Watcher(api, namespace=n, settings=settings, sink=self._cache, observer=self.observer)
            for n in namespaces
        ]
        identity = settings.identity or default_identity()
        self.elector = LeaderElector(
            api,
            namespace=settings.lease_namespace or lease_namespace,
            name=settings.lease_name or default_lease_name(settings),
            identity=identity,
            duration=settings.lease_duration,
            observer=self.observer,
            on_change=lambda _leading: self._signal(self._status_signal),
        )
        self._recorder = EventRecorder(api, identity=identity)
        self._status = StatusWriter(api, observer=self.observer, events=self._recorder)
        self._threads: list[Guarded] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._documents_dirty: asyncio.Event | None = None
        self._status_dirty: asyncio.Event | None = None
        self._listed: asyncio.Event | None = None
        self._publish_lock: asyncio.Lock | None = None
        self._last_documents: list[SourceDocument] | None = None
        self._published_uids: dict[str, str | None] = {}
        self._close_api: Callable[[], None] | None = None
        self._last_publish = float("-inf")
        self._recent: deque[float] = deque()

    @classmethod
    async def connect(
        cls,
        settings: KubernetesSettings,
        *,
        update: Callable[[str, list[SourceDocument]], Snapshot],
        current: Callable[[], Snapshot],
        observer: ControllerObserver | None = None,
        background: Background | None = None,
    ) -> KubernetesSource:
        """A source for the cluster the settings name (raises ConfigError when there is none)."""
        from authz.controller.kube import connect  # the kubernetes client loads only when used

        api, namespace = await asyncio.to_thread(connect, settings.kubeconfig)
        source = cls(
            api,
            settings=settings,
            update=update,
            current=current,
            lease_namespace=namespace,
            observer=observer,
            background=background,
        )
        source._close_api = api.close
        return source

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the watches and the election (guarded threads). Returns at once."""
        self._loop = asyncio.get_running_loop()
        self._documents_dirty = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._listed = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        background = self._background if self._background is not None else Background()
        for watcher in self._watchers:
            self._threads.append(
                background.thread(f"authz-watch-{watcher.scope}", watcher.run, stop=watcher.stop)
            )
        self._threads.append(
            background.thread("authz-leader", self.elector.run, stop=self.elector.stop)
        )

    def listed(self) -> bool:
        """True once every watched scope has been listed completely."""
        return self._cache.complete

    async def first_load(self, *, until: asyncio.Event | None = None) -> bool:
        """Wait for the first complete list of every scope and publish it. False when `until`
        was set first (shutdown before the API server ever answered)."""
        assert self._listed is not None
        listed = asyncio.ensure_future(self._listed.wait())
        waits: set[asyncio.Future[Literal[True]]] = {listed}
        if until is not None:
            waits.add(asyncio.ensure_future(until.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if not self._listed.is_set():
            return False
        await self._publish()
        return True

    async def run(self) -> None:
        """Publish bursts and keep status in line until cancelled."""
        await asyncio.gather(self._publish_loop(), self._status_loop())

    async def stop(self) -> None:
        """Stop the watches (aborting open streams) and release the lease; waits for threads."""
        for thread in self._threads:
            thread.stop()
        await asyncio.gather(*(thread.wait(5.0) for thread in self._threads))
        await asyncio.to_thread(self._status.close)
        if self._close_api is not None:
            self._close_api()

    def block_events(self) -> BlockEvents:
        """An observer of the brute-force block store: a Warning Event on the AuthPolicy when a
        block starts (rate-limited; see authz.controller.blockevents)."""
        return BlockEvents(
            recorder=self._recorder, find=lambda key: self._cache.objects().get(key), submit=_submit
        )

    # -- signals from worker threads ------------------------------------------------------------

    def _signal(self, handler: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(handler)

    def _documents_signal(self) -> None:
        assert self._documents_dirty is not None
        assert self._listed is not None
        self._recent.append(time.monotonic())
        self._documents_dirty.set()
        if self._cache.complete:
            self._listed.set()

    def _status_signal(self) -> None:
        assert self._status_dirty is not None
        self._status_dirty.set()

    # -- publishing ------------------------------------------------------------------------

    async def _publish(self) -> None:
        assert self._publish_lock is not None
        async with self._publish_lock:
            documents = self._cache.documents()
            if documents == self._last_documents:
                return
            started = time.monotonic()
            snapshot = await asyncio.to_thread(self._update, SOURCE_NAME, documents)
            seconds = time.monotonic() - started
            prefix = f"{SOURCE_NAME}:"
            self._published_uids = {
                doc.location.removeprefix(prefix): doc.extra.get("uid") for doc in documents
            }
            self._last_documents = documents
            self._last_publish = time.monotonic()
            self.observer.published(len(documents), seconds)
            log.info(
                "snapshot %d published: %d AuthPolic%s from Kubernetes, compiled in %.0f ms",
                snapshot.serial,
                len(documents),
                "y" if len(documents) == 1 else "ies",
                seconds * 1000,
            )
            self._status_signal()

    async def _publish_loop(self) -> None:
        assert self._documents_dirty is not None
        dirty = self._documents_dirty
        loop = asyncio.get_running_loop()
        while True:
            await dirty.wait()
            deadline = loop.time() + self._settings.coalesce_max
            while True:
                dirty.clear()
                wait = min(self._settings.coalesce_quiet, deadline - loop.time())
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(dirty.wait(), wait)
                except TimeoutError:
                    break
            if self._busy():
                # A long burst (e.g. 1,000 resources applied): at most one swap per coalesce_max,
                # even when the API server pauses for longer than the quiet period.
                pause = self._last_publish + self._settings.coalesce_max - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
            dirty.clear()
            try:
                await self._publish()
            except Exception:
                log.exception(
                    "compiling AuthPolicies from Kubernetes failed; serving the last ones"
                )

    def _busy(self) -> bool:
        """More than BUSY_CHANGES changes arrived within the last coalesce_max seconds."""
        horizon = time.monotonic() - self._settings.coalesce_max
        while self._recent and self._recent[0] < horizon:
            self._recent.popleft()
        return len(self._recent) > BUSY_CHANGES

    # -- status --------------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        assert self._status_dirty is not None
        dirty = self._status_dirty
        last_serial, waiting_for_keys = -1, False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dirty.wait(), STATUS_TICK)
            kicked = dirty.is_set()
            if kicked:
                await asyncio.sleep(_STATUS_COALESCE)  # let a burst of watch events land
                dirty.clear()
            snapshot = self._current()
            if not self.elector.is_leader() or self._last_documents is None:
                last_serial = -1
                continue
            if not (kicked or waiting_for_keys or snapshot.serial != last_serial):
                continue
            try:
                result = await asyncio.to_thread(
                    self._status.reconcile,
                    snapshot,
                    self._cache.objects(),
                    published_uids=dict(self._published_uids),
                    still_leader=self.elector.is_leader,
                )
            except Exception:
                log.exception("writing AuthPolicy status failed; retrying")
                continue
            last_serial, waiting_for_keys = snapshot.serial, result.waiting_for_keys


def _submit(work: Callable[[], None]) -> None:
    """Run blocking API work on a worker thread; log what escapes it."""
    future = asyncio.get_running_loop().run_in_executor(None, work)
    future.add_done_callback(_logged)


def _logged(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("recording a brute-force block event failed: %r", future.exception())
