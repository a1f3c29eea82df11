"""The event loop `authz serve` runs on: uvloop (the default) or asyncio's own.

uvloop's transports and loop are written in Cython on libuv; with the h2 engine, where the
per-check Python work is small, its cheaper reads, writes and callbacks are measurable: on the
benchmark machine it answered more checks per second with less CPU in every interleaved pair
of runs (docs/performance.md). asyncio's loop stays selectable (--event-loop asyncio), e.g. to
rule uvloop out while debugging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from authz.errors import ConfigError
from authz.settings.sections import EVENT_LOOPS

T = TypeVar("T")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for asyncio.Runner; None is asyncio's default loop."""
    if name == "asyncio":
        return None
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    raise ConfigError(f"--event-loop: expected one of {', '.join(EVENT_LOOPS)}, got {name!r}")


def run(main: Coroutine[Any, Any, T], *, event_loop: str) -> T:
    """asyncio.run(main) on the chosen loop."""
    factory = loop_factory(event_loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
