"""Observers that feed metrics and spans from the parts that report through a Protocol seam.

The rate limiter (authz.ratelimit.limiter.BackendObserver) and the Kubernetes controller
(authz.controller.observer.ControllerObserver) sit above telemetry and call injected observers;
these classes satisfy those Protocols structurally, so telemetry imports neither.
"""

from __future__ import annotations

from typing import Protocol

from authz.telemetry import tracing
from authz.telemetry.metrics import Metrics


class RateLimitMetrics:
    """authz_ratelimit_backend_errors_total and authz_ratelimit_backend_mode{mode}."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def on_backend_error(self, error: BaseException) -> None:
        self._metrics.ratelimit_backend_error()

    def on_mode_change(self, mode: str) -> None:
        self._metrics.ratelimit_backend_mode(mode)


class _ControllerObserver(Protocol):
    def watch_event(self, event_type: str) -> None: ...
    def watch_restart(self, reason: str) -> None: ...
    def outage(self, active: bool) -> None: ...
    def listed(self, objects: int, seconds: float) -> None: ...
    def published(self, documents: int, seconds: float) -> None: ...
    def status_write(self, reason: str, outcome: str) -> None: ...
    def leading(self, leader: bool) -> None: ...


class ControllerMetrics:
    """Forwards everything to `inner` (the controller's own counters), feeds the watch metrics
    (authz_watch_events_total{type}, authz_watch_restarts_total{reason}) and records a span per
    list and per reconcile (compile + publish of the Kubernetes documents)."""

    def __init__(self, metrics: Metrics, inner: _ControllerObserver) -> None:
        self._metrics = metrics
        self._inner = inner

    def watch_event(self, event_type: str) -> None:
        self._metrics.watch_event(event_type)
        self._inner.watch_event(event_type)

    def watch_restart(self, reason: str) -> None:
        self._metrics.watch_restart(reason)
        self._inner.watch_restart(reason)

    def outage(self, active: bool) -> None:
        self._inner.outage(active)

    def listed(self, objects: int, seconds: float) -> None:
        tracing.record_span(
            "controller.list", seconds=seconds, attributes={"authz.k8s.objects": objects}
        )
        self._inner.listed(objects, seconds)

    def published(self, documents: int, seconds: float) -> None:
        tracing.record_span(
            "controller.reconcile", seconds=seconds, attributes={"authz.k8s.documents": documents}
        )
        self._inner.published(documents, seconds)

    def status_write(self, reason: str, outcome: str) -> None:
        self._inner.status_write(reason, outcome)

    def leading(self, leader: bool) -> None:
        self._inner.leading(leader)
