"""Parts start in order and stop in reverse; background work that ends is loud and restarted."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from authz.lifecycle import Background, Parts

WITHIN = 10.0  # a deadline for background work, not a timing assertion


async def test_parts_stop_in_reverse_order_also_after_a_failed_start() -> None:
    events: list[str] = []

    async def record(what: str) -> None:
        events.append(what)

    async def fail() -> None:
        events.append("start c")
        raise RuntimeError("c is broken")

    async def run() -> None:
        async with Parts() as parts:
            parts.started("a", lambda: events.append("stop a"))
            await parts.start("b", lambda: record("start b"), stop=lambda: record("stop b"))
            await parts.start("c", fail, stop=lambda: record("stop c"))  # half-started: stopped
            events.append("never")

    with pytest.raises(RuntimeError, match="c is broken"):
        await run()
    assert events == ["start b", "start c", "stop c", "stop b", "stop a"]


async def test_a_failing_stop_is_logged_and_the_others_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped: list[str] = []

    def broken() -> None:
        raise OSError("socket already gone")

    parts = Parts()
    parts.started("first", lambda: stopped.append("first"))
    parts.started("broken", broken)
    parts.started("last", lambda: stopped.append("last"))
    await parts.close()
    assert stopped == ["last", "first"]
    assert "stopping broken failed" in caplog.text
    await parts.close()  # nothing left to stop
    assert stopped == ["last", "first"]


async def test_a_task_that_dies_is_logged_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    second_run = asyncio.Event()

    async def watcher() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ValueError("bug in the watcher")
        second_run.set()
        await asyncio.Event().wait()

    background = Background(restart_delay=0)
    guarded = background.task("policy file watcher", watcher)
    await asyncio.wait_for(second_run.wait(), WITHIN)
    assert guarded.restarts == 1
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.getMessage().startswith(
        "policy file watcher stopped unexpectedly (ValueError('bug in the watcher'))"
    )
    assert record.exc_info is not None  # the traceback is in the log
    await background.close()
    assert guarded.task is not None
    assert guarded.task.cancelled()
    assert runs == 2


async def test_a_task_that_returns_is_started_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    third = asyncio.Event()

    async def loop_that_returns() -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            third.set()
            await asyncio.Event().wait()

    background = Background(restart_delay=0)
    guarded = background.task("refresher", loop_that_returns)
    await asyncio.wait_for(third.wait(), WITHIN)
    assert guarded.restarts == 2
    assert "refresher stopped unexpectedly ('it returned')" in caplog.text
    await background.close()


async def test_stopped_or_cancelled_work_is_not_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    runs = 0

    async def forever() -> None:
        nonlocal runs
        runs += 1
        started.set()
        await asyncio.Event().wait()

    background = Background(restart_delay=0)
    stopped = background.task("stopped", forever)
    await asyncio.wait_for(started.wait(), WITHIN)
    stopped.stop()
    await stopped.wait(WITHIN)
    started.clear()
    cancelled = background.task("cancelled from outside", forever)
    await asyncio.wait_for(started.wait(), WITHIN)
    assert cancelled.task is not None
    cancelled.task.cancel()  # e.g. the event loop shutting down
    await cancelled.wait(WITHIN)
    await asyncio.sleep(0)  # the done callbacks have run: a restart would be scheduled now
    assert (runs, stopped.restarts, cancelled.restarts) == (2, 0, 0)
    assert stopped.pending is None
    assert cancelled.pending is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_thread_that_dies_is_logged_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[str] = []
    stop = threading.Event()
    second_run = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch() -> None:
        runs.append(threading.current_thread().name)
        if len(runs) == 1:
            raise ConnectionError("watch stream broke in a way nobody handled")
        loop.call_soon_threadsafe(second_run.set)
        stop.wait()

    background = Background(restart_delay=0)
    guarded = background.thread("authz-watch-default", watch, stop=stop.set)
    await asyncio.wait_for(second_run.wait(), WITHIN)
    assert runs == ["authz-watch-default", "authz-watch-default"]
    assert guarded.restarts == 1
    assert "authz-watch-default stopped unexpectedly (ConnectionError(" in caplog.text
    await background.close(within=WITHIN)  # calls stop: the thread returns, and stays stopped
    assert guarded.thread is not None
    assert not guarded.thread.is_alive()
    assert guarded.restarts == 1
