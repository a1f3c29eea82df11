"""Run a real ``kubernetes.watch.Watch`` stream in a thread and read its events with timeouts.

The synchronous client blocks in the socket read, so a test that wants to change something while
watching (or to assert that nothing arrives) needs the stream elsewhere. Whatever the stream ends
with, an event, a clean end or an exception (ApiException 410, urllib3's ProtocolError for a dropped
connection, ReadTimeoutError for a stalled one), comes out of ``next()`` in order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch

Event = dict[str, Any]


class StreamEnded(Exception):
    """The watch stream finished cleanly (timeoutSeconds, or the server ended it)."""


class WatchThread:
    """``Watch().stream(func, *args, **kwargs)`` in a daemon thread; events through a queue."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._items: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread = threading.Thread(
            target=self._run, args=(func, args, kwargs), daemon=True, name="watch"
        )

    def start(self) -> WatchThread:
        self._thread.start()
        return self

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            for event in self.watch.stream(func, *args, **kwargs):  # type: ignore[no-untyped-call]
                self._items.put(("event", event))
        except BaseException as exc:  # handed to the test thread, which re-raises it
            self._items.put(("error", exc))
        else:
            self._items.put(("end", None))

    def next(self, timeout: float = 5.0) -> Event:
        """The next event; raises what the stream raised, StreamEnded, or TimeoutError."""
        try:
            kind, item = self._items.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no watch event within {timeout} s") from None
        if kind == "error":
            raise item
        if kind == "end":
            raise StreamEnded
        event: Event = item
        return event

    def next_of(self, *types: str, timeout: float = 5.0) -> Event:
        """The next event whose type is one of ``types``, skipping others (e.g. bookmarks)."""
        while True:
            event = self.next(timeout)
            if event["type"] in types:
                return event

    def quiet_for(self, seconds: float, *, ignore: tuple[str, ...] = ("BOOKMARK",)) -> bool:
        """True if no event other than ``ignore`` arrives within ``seconds``."""
        try:
            while True:
                if self.next(seconds)["type"] not in ignore:
                    return False
        except TimeoutError:
            return True

    def stop(self, timeout: float = 5.0) -> None:
        self.watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(timeout)
