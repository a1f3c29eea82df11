"""The limiter seam: what the pipeline asks, what a backend answers, and who watches the backend.

A check hands over every limit of the matched rule at once (`Hit`s). The answer admits the
request only when every limit admits it, and only then - and only when `consume` is true - is
anything counted. `consume=False` is a peek (the admin Explain API): the same verdicts, no
writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from authz.ratelimit.spec import FailureMode, LimitSpec

# Backend modes (also the values of the authz_ratelimit_backend_mode metric).
MODE_MEMORY: Final = "memory"
MODE_REDIS: Final = "redis"
MODE_FALLBACK: Final = "fallback"

# Where an Outcome came from.
SOURCE_MEMORY: Final = "memory"
SOURCE_REDIS: Final = "redis"
#: The shared backend is unavailable and the policy says fallback: this process counted.
SOURCE_FALLBACK: Final = "fallback"
#: The shared backend is unavailable and the policy says open: nothing was counted.
SOURCE_OPEN: Final = "open"
#: The shared backend is unavailable and the policy says closed: the request must be denied.
SOURCE_CLOSED: Final = "closed"


@dataclass(frozen=True, slots=True)
class Hit:
    """One limit to apply, and the bucket (full key) this request counts against."""

    limit: LimitSpec
    bucket: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """One limit's answer. Times are milliseconds from `now`, rounded up."""

    allowed: bool
    #: Requests still admitted after this one (when allowed), or 0.
    remaining: int
    #: Until the limit's quota is fully restored.
    reset_ms: int
    #: Until a request would be admitted again (0 when allowed).
    retry_ms: int


@dataclass(frozen=True, slots=True)
class Outcome:
    allowed: bool
    #: One per hit, in the same order (empty when nothing was evaluated: open or closed).
    verdicts: tuple[Verdict, ...]
    #: One of the SOURCE_* constants.
    source: str


class Limiter(Protocol):
    """Checks (and, when every limit admits the request, counts) one request's limits.

    The backends subclass it: `check` holds the seam's defaults and turns `now` into the
    milliseconds the algorithms count in, once for every backend; each implements `check_ms`.
    """

    @property
    def mode(self) -> str:
        """MODE_MEMORY, MODE_REDIS, or MODE_FALLBACK while the shared backend is away."""
        ...

    def check(
        self,
        hits: Sequence[Hit],
        *,
        now: float,
        consume: bool = True,
        failure_mode: FailureMode = FailureMode.FALLBACK,
    ) -> Awaitable[Outcome]:
        """`now` is Unix time in seconds. Never raises for backend trouble: see FailureMode."""
        return self.check_ms(
            hits, now_ms=int(now * 1000), consume=consume, failure_mode=failure_mode
        )

    def check_ms(
        self, hits: Sequence[Hit], *, now_ms: int, consume: bool, failure_mode: FailureMode
    ) -> Awaitable[Outcome]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class BackendObserver(Protocol):
    """Told about the shared backend's health (metrics hook here; the limiter logs itself)."""

    def on_backend_error(self, error: BaseException) -> None: ...

    def on_mode_change(self, mode: str) -> None: ...
