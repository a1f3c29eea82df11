"""Pause Python's cyclic garbage collector while a bulk policy load builds long-lived objects.

Loading 10 k policies allocates a few million objects (parsed documents, then compiled
policies) that all outlive the load and form no garbage cycles. With the collector running,
every young-generation pass examines those survivors again and every full pass the whole,
growing heap: a quarter of the load's time at 10 k policies, spent finding nothing. Reference
counting still frees whatever becomes garbage during the pause; only garbage cycles wait for
the collector to resume, about a second later.

Thread-safe and nestable: the collector resumes when the last of overlapping loads ends (the
file source and the Kubernetes source may load at once), and only if it was running when the
first began, so a process that switched it off itself keeps it off.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator


class _Pause:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._resume = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._resume:
                    gc.enable()


#: `with collector_paused(): ...` around a bulk load.
collector_paused = _Pause()
