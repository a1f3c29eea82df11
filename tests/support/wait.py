"""Wait until something observable holds: the suite's one polling helper.

Tests prove that something happened by waiting for what shows it - a counter, a log line, a
status, a port that answers - never by sleeping for a guess. The time limit only turns "never"
into a clear failure; it is generous and never the thing under test, so a loaded machine makes a
test slower, not red. `wait_for` is for plain test code, `until` for tests on an event loop (the
probe runs in a thread there, because probes may block: the Kubernetes client, urllib).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Long enough for a shared, loaded machine; a probe that needs longer says so itself.
TIMEOUT = 30.0
_INTERVAL = 0.02


def wait_for(
    probe: Callable[[], T | None],
    *,
    what: str | Callable[[], str],
    within: float = TIMEOUT,
    interval: float = _INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
    unless: Callable[[], str | None] | None = None,
) -> T:
    """Call `probe` until it returns something truthy, and return that.

    `what` names the awaited thing in the failure (a callable: worded when it fails, e.g. with
    what was seen instead). `ignore` lists exceptions that mean "not yet" (a port not open yet);
    `unless` is asked between attempts and returns why waiting is pointless (a process died),
    which fails at once.
    """
    deadline = time.monotonic() + within
    while True:
        value: T | None = None
        with contextlib.suppress(*ignore):
            value = probe()
        if value:
            return value
        why = unless() if unless is not None else None
        if why is None and time.monotonic() > deadline:
            why = f"not within {within:g}s"
        if why is not None:
            raise AssertionError(f"{what if isinstance(what, str) else what()}: {why}")
        time.sleep(interval)


async def until(
    probe: Callable[[], T | None],
    *,
    what: str,
    within: float = TIMEOUT,
    interval: float = _INTERVAL,
) -> T:
    """`wait_for` without blocking the running loop: the probe runs in a worker thread."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(probe)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g}s")
        await asyncio.sleep(interval)
