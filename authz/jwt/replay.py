"""Remember the DPoP proofs already used, so a copied proof cannot be sent again.

A proof is acceptable only while its `iat` lies within the window around now, so it needs
remembering only until `iat + window`; after that the time check refuses it anyway. Entries are
keyed by a digest of the key's thumbprint and the `jti` (two clients may pick the same `jti`;
the raw values are not kept) and expire in roughly insertion order, so expired ones are dropped
from the front, a few per use.

The cache is bounded. When it is full of proofs that have not expired yet, a new proof is
refused (503 internal_error, retry later) rather than forgetting a live one: evicting would let
whoever fills the cache replay a captured proof. The cache lives in one process; with
--redis-url, a proof that is new here is also claimed in Redis (sharedreplay.py), so a replay to
another worker or replica is caught too.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from enum import Enum
from typing import Protocol


class Use(Enum):
    FIRST = "first"
    REPLAY = "replay"
    FULL = "full"


class SharedReplay(Protocol):
    """Replays across processes (sharedreplay.RedisReplay): True for a first use, False for a
    replay, None when the shared store cannot tell (the memory cache alone decides then)."""

    async def first_use(self, key: bytes, *, ttl: float) -> bool | None: ...


def proof_key(thumbprint: str, jti: str) -> bytes:
    """The digest a proof is remembered by (here and in the shared store)."""
    return hashlib.sha256(f"{thumbprint}\0{jti}".encode("utf-8", "surrogatepass")).digest()


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
        key = proof_key(thumbprint, jti)
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
        known = self._seen.get(proof_key(thumbprint, jti))
        return known is not None and known > now
