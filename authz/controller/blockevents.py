"""A Warning Event on the AuthPolicy when a brute-force block starts: `kubectl describe ap`
shows that (and whom) the policy is blocking.

Any replica records the blocks it starts (with Redis, a block is started by exactly one replica:
the one whose failure completed it), at most one Event per policy every `interval` seconds - an
attack that blocks thousands of addresses must not flood the API server - and the next Event
says how many blocks started in between. Creating the Event is a blocking API call, so it runs
on a worker thread; failing to record one is logged and otherwise ignored (Events are best
effort; the metrics and the decision log are the record). Policies from files have no object to
attach an Event to and are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from authz.controller.api import RawObject
from authz.controller.events import EventRecorder
from authz.ratelimit.blocks import Protection, Started, split_key

log = logging.getLogger(__name__)

REASON = "ClientBlocked"
REASON_DRY_RUN = "ClientWouldBeBlocked"
DEFAULT_INTERVAL = 60.0


class BlockEvents:
    """A BlockObserver (authz.ratelimit.blocks) recording Warning Events."""

    def __init__(
        self,
        *,
        recorder: EventRecorder,
        find: Callable[[str], RawObject | None],
        submit: Callable[[Callable[[], None]], None],
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._recorder = recorder
        self._find = find
        self._submit = submit
        self._interval = interval
        self._clock = clock
        #: namespace/name -> when its last Event was recorded (only policies from Kubernetes).
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def on_failure(self, protection: Protection) -> None:
        return None

    def on_backend_error(self, error: BaseException) -> None:
        return None

    def on_block(self, started: Started, *, dry_run: bool) -> None:
        protection = started.strike.protection
        policy = protection.policy
        now = self._clock()
        last = self._last.get(policy)
        if last is not None and now - last < self._interval:
            self._skipped[policy] = self._skipped.get(policy, 0) + 1
            return
        obj = self._find(policy)
        if obj is None:
            return
        self._last[policy] = now
        skipped = self._skipped.pop(policy, 0)
        value = split_key(started.strike.key)[2]
        message = (
            f"{protection.name}: {protection.key.text} {value} "
            f"{'would be' if dry_run else 'is'} blocked for {protection.block_text} after "
            f"{started.failures} failed authentications within {protection.window_text}"
        )
        if skipped:
            message += f" ({skipped} more blocks started since the last event)"
        reason = REASON_DRY_RUN if dry_run else REASON
        self._submit(lambda: self._recorder.warn(obj, reason=reason, message=message))
