"""Decision ids: 16 hex digits from the operating system's CSPRNG, read in bulk.

A decision id names one decision in the deny body, the decision log and the span, so an
operator can find it again; it grants nothing. It must not repeat and should not reveal how
many decisions the sidecar made (a counter would tell every denied client the traffic volume
between two of its requests). Random 64-bit values do both. `secrets.token_hex(8)` per check
costs a getrandom system call each time; reading 4 KiB at once and slicing costs one call per
512 checks and gives the same values, just fetched earlier. A forked child starts a fresh
buffer, so parent and child never hand out the same ids.
"""

from __future__ import annotations

import os

#: Hex digits per id (64 random bits: a repeat is expected after about 2^32 ids).
ID_DIGITS = 16


class DecisionIds:
    """Call to get the next id."""

    def __init__(self, *, batch: int = 512) -> None:
        self._bytes = batch * ID_DIGITS // 2
        self._hex = ""
        self._next = 0

    def discard(self) -> None:
        """Forget the buffered ids (a forked child must not repeat its parent's)."""
        self._hex, self._next = "", 0

    def __call__(self) -> str:
        start = self._next
        if start >= len(self._hex):
            self._hex, start = os.urandom(self._bytes).hex(), 0
        self._next = start + ID_DIGITS
        return self._hex[start : start + ID_DIGITS]


#: The process's ids (one buffer; reset in a forked child).
DECISION_IDS = DecisionIds()
os.register_at_fork(after_in_child=DECISION_IDS.discard)
