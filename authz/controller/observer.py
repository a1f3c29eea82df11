"""What the Kubernetes controller reports about itself: a Protocol, and counters that implement it.

The controller reports through an injected observer rather than calling a metrics library, so it
stays testable and knows nothing of exporters: `Counters` (the default) keeps plain totals that
tests and logs read, and authz.telemetry.adapters.ControllerMetrics wraps it to feed
authz_watch_events_total{type}, authz_watch_restarts_total{reason} and the list/reconcile spans.
Every method is called from worker threads and must not block.

Label values are the stable constants of authz.controller.errors (WATCH_* restart reasons,
STATUS_* reasons).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol


class ControllerObserver(Protocol):
    def watch_event(self, event_type: str) -> None:
        """A watch delivered ADDED, MODIFIED, DELETED or BOOKMARK."""

    def watch_restart(self, reason: str) -> None:
        """A watch ended and is being restarted (reason: authz.controller.errors.WATCH_*)."""

    def outage(self, active: bool) -> None:
        """The API server became unreachable (True) or reachable again (False)."""

    def listed(self, objects: int, seconds: float) -> None:
        """A complete list finished (first start, or after a 410)."""

    def published(self, documents: int, seconds: float) -> None:
        """The Kubernetes documents were compiled into one new snapshot (one swap)."""

    def status_write(self, reason: str, outcome: str) -> None:
        """A status write for a Ready condition with `reason` ended with outcome ok/conflict/error."""

    def leading(self, leader: bool) -> None:
        """This replica became (True) or stopped being (False) the leader."""


@dataclass
class Counters:
    """Totals of everything reported; thread-safe. `snapshot()` returns a copy."""

    events: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    status_writes: Counter[tuple[str, str]] = field(default_factory=Counter)
    outages: int = 0
    in_outage: bool = False
    lists: int = 0
    swaps: int = 0
    swap_seconds: float = 0.0
    is_leader: bool = False
    leader_changes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def watch_event(self, event_type: str) -> None:
        with self._lock:
            self.events[event_type] += 1

    def watch_restart(self, reason: str) -> None:
        with self._lock:
            self.restarts[reason] += 1

    def outage(self, active: bool) -> None:
        with self._lock:
            if active and not self.in_outage:
                self.outages += 1
            self.in_outage = active

    def listed(self, objects: int, seconds: float) -> None:
        with self._lock:
            self.lists += 1

    def published(self, documents: int, seconds: float) -> None:
        with self._lock:
            self.swaps += 1
            self.swap_seconds += seconds

    def status_write(self, reason: str, outcome: str) -> None:
        with self._lock:
            self.status_writes[(reason, outcome)] += 1

    def leading(self, leader: bool) -> None:
        with self._lock:
            if leader != self.is_leader:
                self.leader_changes += 1
            self.is_leader = leader

    def snapshot(self) -> Counters:
        with self._lock:
            return Counters(
                Counter(self.events),
                Counter(self.restarts),
                Counter(self.status_writes),
                self.outages,
                self.in_outage,
                self.lists,
                self.swaps,
                self.swap_seconds,
                self.is_leader,
                self.leader_changes,
            )
