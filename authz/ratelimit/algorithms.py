"""The three algorithms, as pure functions over one bucket's state, in integer milliseconds.

check.lua is the same arithmetic in Redis; tests run both over the same timelines and require the
same answers, so change them together.

slidingWindow - the window of W ms is counted in K = 10 slots of W/K ms. A request is admitted
when the requests counted in the current slot and the K slots before it, plus this one, are at
most N. Guarantee: in *every* interval of length W (not only aligned ones) at most N requests are
admitted - no 2x burst across a boundary. Proof: take the last admission in the interval, at slot
j; every earlier admission in the interval lies in slots j-K..j, which held at most N including
it. The price: a request stops counting between W and W + W/K after it was made, so a client
that saturates the limit gets at least N per W + W/K (about 91% of N/W).

fixedWindow - windows are consecutive multiples of W since the Unix epoch, so they align with
UTC clock boundaries: "1d" resets at 00:00 UTC, "1h" at the top of the hour. At most N per
aligned window (a client can use N at 23:59 and N at 00:00; that is what a quota means).

tokenBucket - GCRA with emission interval T = W/N and burst tolerance W: a full bucket admits a
burst of N, then one request every T. In any interval of length L at most N + L/T are admitted.
"""

from __future__ import annotations

import math

from authz.ratelimit.limiter import Verdict
from authz.ratelimit.spec import SLIDING_SLOTS, Algorithm, LimitSpec

#: Sliding window state: slot index -> requests counted in that slot.
SlidingState = dict[int, int]
#: Fixed window state: (window index, requests counted in it).
FixedState = tuple[int, int]
#: Token bucket state: the theoretical arrival time (ms) of the next request.
TokenState = float
State = SlidingState | FixedState | TokenState

_K = SLIDING_SLOTS
_EPSILON = 1e-9


def evaluate(limit: LimitSpec, state: State | None, now: int) -> Verdict:
    """This limit's verdict for one more request at `now` (ms), as if it were counted."""
    algorithm = limit.algorithm
    if algorithm is Algorithm.SLIDING_WINDOW:
        return _sliding(limit, state if isinstance(state, dict) else None, now)
    if algorithm is Algorithm.FIXED_WINDOW:
        return _fixed(limit, state if isinstance(state, tuple) else None, now)
    return _token(limit, state if isinstance(state, float) else None, now)


def commit(limit: LimitSpec, state: State | None, now: int) -> tuple[State, int]:
    """Count one request at `now`: the new state and when (ms) it stops mattering."""
    algorithm = limit.algorithm
    if algorithm is Algorithm.SLIDING_WINDOW:
        slot = limit.window_ms // _K
        current = now // slot
        oldest = current - _K
        slots = state if isinstance(state, dict) else {}
        for index in [i for i in slots if i < oldest]:
            del slots[index]
        slots[current] = slots.get(current, 0) + 1
        return slots, (current + _K + 1) * slot
    if algorithm is Algorithm.FIXED_WINDOW:
        window = limit.window_ms
        index = now // window
        count = state[1] if isinstance(state, tuple) and state[0] == index else 0
        return (index, count + 1), (index + 1) * window
    interval = limit.window_ms / limit.requests
    tat = max(state, float(now)) if isinstance(state, float) else float(now)
    new_tat = tat + interval
    return new_tat, math.ceil(new_tat)


def _sliding(limit: LimitSpec, slots: SlidingState | None, now: int) -> Verdict:
    slot = limit.window_ms // _K
    current = now // slot
    oldest = current - _K
    used = 0
    if slots:
        for index, count in slots.items():
            if index >= oldest:
                used += count
    if used < limit.requests:
        return Verdict(True, limit.requests - used - 1, (current + _K + 1) * slot - now, 0)
    live = sorted(i for i in (slots or {}) if i >= oldest)
    need = used + 1 - limit.requests
    freed = 0
    retry = 0
    for index in live:
        freed += (slots or {})[index]
        if freed >= need:
            retry = (index + _K + 1) * slot - now
            break
    return Verdict(False, 0, (live[-1] + _K + 1) * slot - now, retry)


def _fixed(limit: LimitSpec, state: FixedState | None, now: int) -> Verdict:
    window = limit.window_ms
    index = now // window
    count = state[1] if state is not None and state[0] == index else 0
    reset = (index + 1) * window - now
    if count < limit.requests:
        return Verdict(True, limit.requests - count - 1, reset, 0)
    return Verdict(False, 0, reset, reset)


def _token(limit: LimitSpec, stored: TokenState | None, now: int) -> Verdict:
    window = limit.window_ms
    interval = window / limit.requests
    tat = max(stored, float(now)) if stored is not None else float(now)
    new_tat = tat + interval
    if new_tat - now <= window:
        remaining = math.floor((window - (new_tat - now)) / interval + _EPSILON)
        return Verdict(True, remaining, math.ceil(new_tat - now), 0)
    return Verdict(False, 0, math.ceil(tat - now), math.ceil(new_tat - window - now))
