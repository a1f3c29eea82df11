"""What the servicer reports about each decision: metrics, the decision log, span attributes.

The servicer calls one observer per check, after the decision and before answering Envoy. The
observer gets the decision id the deny body carries, so the span attribute, the log line and
the body always agree (passed beside the decision: copying the frozen Decision to set it
cost more than the metrics do). Telemetry is the lowest layer and knows nothing of Decision, so this
module translates: plain values in, nothing but the allowlisted fields out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from opentelemetry.trace import Span, Status, StatusCode

from authz import errors
from authz.pipeline.decision import Decision
from authz.pipeline.request import CheckInput
from authz.ratelimit.blocks import Protection, Started
from authz.telemetry import labels, tracing
from authz.telemetry.decisionlog import DecisionLog, redact_path
from authz.telemetry.metrics import Metrics

_NO_REQUEST = CheckInput(method="", host="", raw_path="")
#: block_started lines written per second at most (a flood of fresh blocks is summarized).
BLOCK_LINES_PER_SECOND = 10


class CheckObserver(Protocol):
    """The servicer's seam for reporting a decision (tests pass their own)."""

    def observe(
        self,
        request: CheckInput | None,
        decision: Decision,
        *,
        decision_id: str,
        seconds: float,
        span: Span | None,
    ) -> None: ...


class CheckTelemetry:
    """Metrics + decision log + span attributes for each check; any part may be absent."""

    def __init__(self, *, metrics: Metrics | None = None, log: DecisionLog | None = None) -> None:
        self._metrics = metrics
        self._log = log

    def observe(
        self,
        request: CheckInput | None,
        decision: Decision,
        *,
        decision_id: str,
        seconds: float,
        span: Span | None,
    ) -> None:
        req = request or _NO_REQUEST
        if self._metrics is not None:
            self._metrics.check(
                seconds,
                allowed=decision.allowed,
                policy=decision.policy or "",
                reason=decision.reason,
                dry_run=decision.dry_run,
            )
        if span is not None:
            span.set_attributes(
                {
                    "authz.decision_id": decision_id,
                    "authz.decision": labels.decision_label(decision.allowed),
                    "authz.reason": decision.reason,
                    "authz.policy": decision.policy or "",
                    "authz.rule": decision.rule or "",
                    "authz.dry_run": decision.dry_run,
                    "http.request.method": req.method,
                    "url.path": redact_path(req.raw_path),
                    "server.address": req.host,
                    "http.response.status_code": 200 if decision.dry_run else decision.status,
                }
            )
            if decision.reason == errors.INTERNAL_ERROR:
                span.set_status(Status(StatusCode.ERROR, decision.description))
        if self._log is not None:
            self._log.record(
                decision_id=decision_id,
                allowed=decision.allowed,
                reason=decision.reason,
                status=decision.status,
                detail=decision.description,
                policy=decision.policy,
                rule=decision.rule,
                condition=decision.condition,
                sub=decision.subject,
                client_ip=req.source_ip,
                method=req.method,
                host=req.host,
                path=req.raw_path,
                latency=seconds,
                dry_run=decision.dry_run,
                request_id=req.request_id,
                trace_id=tracing.trace_id(span),
            )


class BlockTelemetry:
    """The block store's observer: brute-force metrics and one `block_started` line on the
    decision log per block (at most BLOCK_LINES_PER_SECOND; the next line says how many were
    not written). The line names the block key - the client address or a hashed value - and
    never a token."""

    def __init__(
        self,
        *,
        metrics: Metrics | None,
        log: DecisionLog | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._log = log
        self._clock = clock
        self._second = -1
        self._written = 0
        self._suppressed = 0

    def on_failure(self, protection: Protection) -> None:
        if self._metrics is not None:
            self._metrics.bruteforce_failure(protection.policy, protection.name)

    def on_block(self, started: Started, *, dry_run: bool) -> None:
        protection = started.strike.protection
        if self._metrics is not None:
            self._metrics.bruteforce_block(protection.policy, protection.name, dry_run=dry_run)
        if self._log is None:
            return
        second = int(self._clock())
        if second != self._second:
            self._second, self._written = second, 0
        if self._written >= BLOCK_LINES_PER_SECOND:
            self._suppressed += 1
            return
        self._written += 1
        suppressed, self._suppressed = self._suppressed, 0
        self._log.event(
            "block_started",
            {
                "policy": protection.policy,
                "protection": protection.name,
                "key": started.strike.key,
                "failures": started.failures,
                "window": protection.window_text,
                "block_seconds": protection.block_ms // 1000,
                "until_unix_ms": started.until_ms,
                "dry_run": dry_run,
                "suppressed_before": suppressed,
            },
        )

    def on_backend_error(self, error: BaseException) -> None:
        if self._metrics is not None:
            self._metrics.ratelimit_backend_error()
