"""Remember the DPoP proofs already used, so a copied proof cannot be sent again.

A proof is acceptable only while its `iat` lies within the window around now, so it needs
remembering only until `iat + window`; after that the time check refuses it anyway. Entries are
keyed by a digest of the key's thumbprint and the `jti` (two clients may pick the same `jti`;
the raw values are not kept) and expire in roughly insertion order, so expired ones are dropped
from the front, a few per use.

The cache is bounded. When it is full of proofs that have not expired yet, a new proof is
refused (503 internal_error, retry later) rather than forgetting a live one: evicting would let
whoever fills the cache replay a captured proof. The cache lives in one process: with
`--workers N` or several replicas, a proof replayed to another process is not caught, so run one
process per host name where replay matters, or keep the window short.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from enum import Enum


class Use(Enum):
    FIRST = "first"
    REPLAY = "replay"
    FULL = "full"


class ReplayCache:
    """Seen (thumbprint, jti) pairs until they expire; at most `size` of them."""

    def __init__(self, *, size: int) -> None:
        if size < 1:
            raise ValueError("the replay cache needs room for at least one proof")
        self.size = size
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self, now: float, budget: int) -> None:
        seen = self._seen
        while seen and budget:
            key, expires = next(iter(seen.items()))
            if expires > now:
                return
            del seen[key]
            budget -= 1

    def use(self, thumbprint: str, jti: str, *, expires: float, now: float) -> Use:
        """Record a proof's first use; REPLAY when it was seen before and has not expired."""
        key = hashlib.sha256(f"{thumbprint}\0{jti}".encode("utf-8", "surrogatepass")).digest()
        self._prune(now, 2 if len(self._seen) < self.size else len(self._seen))
        known = self._seen.get(key)
        if known is not None and known > now:
            return Use.REPLAY
        if len(self._seen) >= self.size:
            return Use.FULL
        self._seen[key] = expires
        self._seen.move_to_end(key)
        return Use.FIRST

    def seen(self, thumbprint: str, jti: str, *, now: float) -> bool:
        """Whether the proof is remembered (Explain asks without recording)."""
        key = hashlib.sha256(f"{thumbprint}\0{jti}".encode("utf-8", "surrogatepass")).digest()
        known = self._seen.get(key)
        return known is not None and known > now
