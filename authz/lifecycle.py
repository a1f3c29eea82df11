"""Named parts started in order and stopped in reverse; background work watched by one guard.

`Parts` is how a process starts what it runs: each part by name, its stop registered before it
starts (a part that fails half-way is stopped too), everything stopped in reverse order on the
way out, a failing stop logged without keeping the others from stopping.

`Background` runs the work that lives as long as the process: asyncio tasks (the policy file
poller, the Kubernetes controller's loops, each issuer's key refresher) and threads (the
Kubernetes watches and the leader election). Such work loops forever and handles its own
errors, so one that ends is a bug: it is logged as critical with its exception and started
again after a pause, by the same code for all of them (kopf guards its root tasks the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: Starting a part: awaited.
Step = Callable[[], Awaitable[object]]
#: Stopping a part: awaited when it returns an awaitable (a close() may be either).
Stop = Callable[[], object]
#: Seconds before background work that ended unexpectedly is started again.
RESTART_DELAY = 1.0


class Parts:
    """Start parts by name; `close` stops the started ones in reverse order."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Stop]] = []

    def started(self, name: str, stop: Stop) -> None:
        """A part that is running already (built running): `stop` it on close."""
        self._stops.append((name, stop))

    async def start(self, name: str, start: Step, *, stop: Stop | None = None) -> None:
        """Start a part; its `stop` runs on close even when `start` fails half-way."""
        if stop is not None:
            self._stops.append((name, stop))
        log.debug("starting %s", name)
        await start()

    async def close(self) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            log.debug("stopping %s", name)
            try:
                result = stop()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("stopping %s failed", name)

    async def __aenter__(self) -> Parts:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


class Guarded:
    """One piece of background work, started again whenever it ends before `stop`."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: How often it was started again after ending unexpectedly.
        self.restarts = 0
        self.stopped = False
        self.task: asyncio.Task[None] | None = None
        self.thread: threading.Thread | None = None
        self.pending: asyncio.TimerHandle | None = None
        self.stop_thread: Callable[[], None] | None = None

    def stop(self) -> None:
        """Stop it for good: cancel the task, or ask the thread to return (no restart)."""
        self.stopped = True
        if self.pending is not None:
            self.pending.cancel()
        if self.task is not None:
            self.task.cancel()
        if self.stop_thread is not None:
            self.stop_thread()

    async def wait(self, within: float) -> None:
        """Wait (at most `within` s) until the task or thread has ended."""
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=within)
        thread = self.thread
        if thread is not None:
            await asyncio.to_thread(thread.join, within)
            if thread.is_alive():
                log.warning("thread %s did not stop within %.0f s", self.name, within)


class Background:
    """The guard of one event loop's background work (create it on that loop)."""

    def __init__(self, *, restart_delay: float = RESTART_DELAY) -> None:
        #: The loop the work runs on (threads report their end to it).
        self.loop = asyncio.get_running_loop()
        self._restart_delay = restart_delay
        self._work: set[Guarded] = set()

    def task(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> Guarded:
        """Run `work()` as a task on the loop; call from the loop."""
        guarded = Guarded(name)
        self._work.add(guarded)

        def run() -> None:
            guarded.pending = None
            guarded.task = self.loop.create_task(work(), name=name)
            guarded.task.add_done_callback(lambda task: self._task_ended(guarded, run, task))

        run()
        return guarded

    def thread(self, name: str, target: Callable[[], None], *, stop: Callable[[], None]) -> Guarded:
        """Run `target()` in a daemon thread; `stop()` must make it return. Call from the loop."""
        guarded = Guarded(name)
        guarded.stop_thread = stop
        self._work.add(guarded)

        def body() -> None:
            error: BaseException | None = None
            try:
                target()
            except BaseException as exc:  # reported on the loop, like a task's exception
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to restart
                self.loop.call_soon_threadsafe(self._ended, guarded, run, error)

        def run() -> None:
            guarded.pending = None
            guarded.thread = threading.Thread(target=body, name=name, daemon=True)
            guarded.thread.start()

        run()
        return guarded

    def _task_ended(
        self, guarded: Guarded, restart: Callable[[], None], task: asyncio.Task[None]
    ) -> None:
        if task.cancelled():  # cancelled from outside (the loop is shutting down): stopped
            guarded.stopped = True
        self._ended(guarded, restart, None if task.cancelled() else task.exception())

    def _ended(
        self, guarded: Guarded, restart: Callable[[], None], error: BaseException | None
    ) -> None:
        if guarded.stopped:
            self._work.discard(guarded)
            return
        log.critical(
            "%s stopped unexpectedly (%r); starting it again in %.0f s",
            guarded.name,
            error if error is not None else "it returned",
            self._restart_delay,
            exc_info=error,
        )
        guarded.restarts += 1
        guarded.pending = self.loop.call_later(self._restart_delay, restart)

    async def close(self, within: float = 5.0) -> None:
        """Stop everything still running and wait for it (at most `within` s)."""
        work = list(self._work)
        for guarded in work:
            guarded.stop()
        await asyncio.gather(*(guarded.wait(within) for guarded in work))
        self._work.clear()
