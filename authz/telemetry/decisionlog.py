"""The decision log: one JSON line per decision on stdout, redacted by construction.

Denials are always logged; allows are sampled at --log-allow-sample-rate, decided before the
line is built so an unsampled allow costs one random number. The line has a fixed set of
fields (see FIELDS) built from plain values: headers are never passed in, so the
Authorization header, cookies and tokens cannot reach it, and the path loses its query string
and fragment here whatever the caller passes.

Writing to stdout can block (a slow pipe, a stalled log collector), and nothing on the check
path may block, so lines go through a bounded in-memory queue to a writer thread. When the
queue is full, lines are dropped and counted rather than slowing down checks.
"""

from __future__ import annotations

import random as _random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import orjson

from authz.telemetry import labels

#: Every field of a decision log line, in order.
FIELDS = (
    "time",
    "decision_id",
    "decision",
    "reason",
    "status",
    "detail",
    "policy",
    "rule",
    "condition",
    "sub",
    "client_ip",
    "method",
    "host",
    "path",
    "latency_ms",
    "dry_run",
    "request_id",
    "trace_id",
)


def redact_path(path: str) -> str:
    """The path without query string and fragment: query parameters often carry secrets."""
    return path.partition("?")[0].partition("#")[0]


class _Clock:
    """RFC 3339 UTC timestamps with milliseconds: the date part is formatted once a second, and
    the whole stamp once a millisecond (a busy sidecar logs several decisions in one)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._millisecond = -1
        self._second = -1
        self._prefix = ""
        self._stamp = ""

    def stamp(self) -> str:
        millisecond = round(self._now() * 1000)
        if millisecond == self._millisecond:
            return self._stamp
        second, millis = divmod(millisecond, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._millisecond, self._stamp = millisecond, f"{self._prefix}.{millis:03d}Z"
        return self._stamp


class DecisionLog:
    """Builds decision log lines and hands them to `emit` (a LineWriter in the service)."""

    def __init__(
        self,
        emit: Callable[[bytes], None],
        *,
        allow_sample_rate: float = 1.0,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 <= allow_sample_rate <= 1.0:
            raise ValueError("allow_sample_rate must be within 0..1")
        self._emit = emit
        self._rate = allow_sample_rate
        self._random = random
        self._clock = _Clock(clock)

    def sampled(self, *, allowed: bool) -> bool:
        """Whether this decision gets a line: every denial, and allows at the sample rate."""
        if not allowed or self._rate >= 1.0:
            return True
        return self._rate > 0.0 and self._random() < self._rate

    def record(
        self,
        *,
        decision_id: str,
        allowed: bool,
        reason: str,
        status: int,
        policy: str | None,
        rule: str | None,
        sub: str | None,
        client_ip: str,
        method: str,
        host: str,
        path: str,
        latency: float,
        dry_run: bool,
        request_id: str = "",
        trace_id: str | None = None,
        condition: int | None = None,
        detail: str = "",
    ) -> bool:
        """Log one decision (`allowed`/`reason` are the would-be decision under dry-run);
        `detail` says which check failed, in the sidecar's own words (never the request's).
        Returns whether a line was written."""
        if not self.sampled(allowed=allowed):
            return False
        line = orjson.dumps(
            {
                "time": self._clock.stamp(),
                "decision_id": decision_id,
                "decision": labels.decision_label(allowed),
                "reason": reason,
                "status": status,
                "detail": detail,
                "policy": policy,
                "rule": rule,
                "condition": condition,
                "sub": sub,
                "client_ip": client_ip,
                "method": method,
                "host": host,
                "path": redact_path(path),
                "latency_ms": round(latency * 1000.0, 3),
                "dry_run": dry_run,
                "request_id": request_id,
                "trace_id": trace_id,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        self._emit(line)
        return True

    def event(self, event: str, fields: dict[str, object]) -> None:
        """One line that is not a decision (e.g. `block_started`), with its own fields."""
        line = orjson.dumps(
            {"time": self._clock.stamp(), "event": event, **fields},
            option=orjson.OPT_APPEND_NEWLINE,
        )
        self._emit(line)


class Stream(Protocol):
    """Where LineWriter writes: sys.stdout.buffer, or a worker's whole-line writer."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


class LineWriter:
    """Writes lines to a stream from a daemon thread; `submit` never blocks.

    The thread wakes every `interval` seconds, or early once `batch` lines wait, and writes
    everything pending at once: waking it for every line would cost a thread switch per check.
    At most `capacity` lines wait; beyond that `submit` drops the line and calls `on_drop`.
    """

    def __init__(
        self,
        stream: Stream | None = None,
        *,
        capacity: int = 10_000,
        batch: int = 256,
        interval: float = 0.05,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self._stream: Stream = stream if stream is not None else sys.stdout.buffer
        self._capacity = capacity
        self._batch = batch
        self._interval = interval
        self._on_drop = on_drop
        self._pending: deque[bytes] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def submit(self, line: bytes) -> None:
        pending = len(self._pending)
        if pending >= self._capacity:
            if self._on_drop is not None:
                self._on_drop(1)
            return
        self._pending.append(line)
        if pending + 1 == self._batch:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        pending = self._pending
        batch: list[bytes] = []
        while pending:
            batch.append(pending.popleft())
        if batch:
            try:
                self._stream.write(b"".join(batch))
                self._stream.flush()
            except (OSError, ValueError):  # stdout closed: nothing sensible left to do
                if self._on_drop is not None:
                    self._on_drop(len(batch))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the thread."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)
