"""Limits shared by every replica through a remote backend, with a circuit breaker and fallback.

Closed circuit: each check makes one backend call (bounded by the backend's timeout). After
`failure_threshold` consecutive failures the circuit opens: checks stop calling the backend at
all - a dead Redis costs no latency per request - and get the policy's failure mode instead
(fallback: this process's in-memory limiter with the same limits; open: not limited; closed:
denied). While open, one background task pings the backend every `probe_interval` seconds and
closes the circuit when it answers; counting then resumes in the shared backend (what the
fallback counted meanwhile stays local). Every switch is logged and reported to the observers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from authz.ratelimit.limiter import (
    MODE_FALLBACK,
    MODE_REDIS,
    SOURCE_CLOSED,
    SOURCE_FALLBACK,
    SOURCE_OPEN,
    SOURCE_REDIS,
    BackendObserver,
    Hit,
    Limiter,
    Outcome,
    Verdict,
)
from authz.ratelimit.memory import MemoryLimiter
from authz.ratelimit.redisbackend import BackendBusy
from authz.ratelimit.spec import FailureMode

log = logging.getLogger(__name__)

_NOTHING = Outcome(True, (), SOURCE_REDIS)
_BYPASSED = Outcome(True, (), SOURCE_OPEN)
_REFUSED = Outcome(False, (), SOURCE_CLOSED)


class RemoteBackend(Protocol):
    description: str

    async def run(
        self, hits: Sequence[Hit], *, now_ms: int, consume: bool
    ) -> tuple[Verdict, ...]: ...

    async def ready(self) -> None: ...

    async def close(self) -> None: ...


def _describe(error: BaseException) -> str:
    text = str(error) or "no detail"
    return f"{type(error).__name__}: {text[:200]}"


class SharedLimiter(Limiter):
    def __init__(
        self,
        backend: RemoteBackend,
        *,
        fallback: MemoryLimiter,
        failure_threshold: int = 3,
        probe_interval: float = 0.5,
        observers: Sequence[BackendObserver] = (),
    ) -> None:
        self._backend = backend
        self._fallback = fallback
        self._threshold = max(1, failure_threshold)
        self._probe_interval = probe_interval
        self._observers: list[BackendObserver] = list(observers)
        self._failures = 0
        self._open = False
        self._probe: asyncio.Task[None] | None = None
        #: Failed backend calls on the check path since start.
        self.errors_total = 0
        #: Circuit switches (redis -> fallback and back) since start.
        self.switches_total = 0
        #: Checks answered by the failure mode because every connection stayed busy (overload).
        self.busy_total = 0

    @property
    def mode(self) -> str:
        return MODE_FALLBACK if self._open else MODE_REDIS

    def add_observer(self, observer: BackendObserver) -> None:
        self._observers.append(observer)
        observer.on_mode_change(self.mode)

    async def check_ms(
        self, hits: Sequence[Hit], *, now_ms: int, consume: bool, failure_mode: FailureMode
    ) -> Outcome:
        if not hits:
            return _NOTHING
        if not self._open:
            try:
                verdicts = await self._backend.run(hits, now_ms=now_ms, consume=consume)
            except BackendBusy:
                self.busy_total += 1
            except Exception as exc:  # any backend trouble degrades; none escapes
                self._failed(exc)
            else:
                self._failures = 0
                return Outcome(all(v.allowed for v in verdicts), verdicts, SOURCE_REDIS)
        if failure_mode is FailureMode.FALLBACK:
            return self._fallback.evaluate(
                hits, now_ms=now_ms, consume=consume, source=SOURCE_FALLBACK
            )
        return _BYPASSED if failure_mode is FailureMode.OPEN else _REFUSED

    def _failed(self, error: BaseException) -> None:
        self.errors_total += 1
        self._failures += 1
        for observer in self._observers:
            observer.on_backend_error(error)
        log.debug("rate-limit backend call failed: %s", _describe(error))
        if self._failures >= self._threshold and not self._open:
            self._switch(
                opened=True,
                why=f"{self._failures} failed calls, last {_describe(error)}",
            )

    def _switch(self, *, opened: bool, why: str) -> None:
        self._open = opened
        self._failures = 0
        self.switches_total += 1
        if opened:
            log.warning(
                "rate limits: %s unavailable (%s); using each policy's "
                "rateLimitFailureMode until it answers",
                self._backend.description,
                why,
            )
            self._start_probe()
        else:
            log.info(
                "rate limits: %s answers again (%s); shared counting resumed",
                self._backend.description,
                why,
            )
        for observer in self._observers:
            observer.on_mode_change(self.mode)

    def _start_probe(self) -> None:
        if self._probe is not None and not self._probe.done():
            return
        self._probe = asyncio.get_running_loop().create_task(
            self._probe_until_healthy(), name="rate-limit backend probe"
        )
        self._probe.add_done_callback(self._probe_done)

    @staticmethod
    def _probe_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical("rate-limit backend probe died: %r", task.exception())

    async def _probe_until_healthy(self) -> None:
        attempts = 0
        while self._open:
            await asyncio.sleep(self._probe_interval)
            attempts += 1
            try:
                await self._backend.ready()
            except Exception as exc:  # still down: try again later
                log.debug("rate-limit backend probe %d failed: %s", attempts, _describe(exc))
                continue
            self._switch(opened=False, why=f"probe {attempts} succeeded")

    async def start(self) -> None:
        """Try the backend once; if it does not answer, start in the failure mode and probe."""
        try:
            await self._backend.ready()
        except Exception as exc:  # starting without Redis is allowed: limits degrade
            self.errors_total += 1
            for observer in self._observers:
                observer.on_backend_error(exc)
            self._switch(opened=True, why=f"at startup: {_describe(exc)}")
        else:
            log.info("rate limits: shared through %s", self._backend.description)
            for observer in self._observers:
                observer.on_mode_change(self.mode)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._backend.close()
        await self._fallback.close()
