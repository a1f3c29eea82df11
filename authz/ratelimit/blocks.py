"""Brute-force blocks: what a policy's `protection.bruteForce[]` entry means, and the block store seam.

A protection counts the failed authentications (401 decisions) of one key - a client address, a
claim or a header value - and, after `max_failures` of them within `window`, blocks that key for
`block_for`: its requests are refused before the token is even looked at. The store answers two
questions on very different paths:

- `blocked_ms` on every request of a protected policy: a local dictionary probe, never a round
  trip, so an allowed request pays nothing measurable (a Redis store keeps a local copy of the
  shared blocks, refreshed in the background and by every failure it counts);
- `failed` on 401s only: one call (one Redis round trip at most) counts the failure under every
  protection of the policy and starts the blocks it completes.

Block keys read `<namespace>/<policy>:<protection>=<value>` (or `#<sha256>` for a long, unusual
or header value: a header may carry a credential, so its value is never stored as is). A request
without the value - no such claim or header, an unknown address - is neither counted nor
blocked: one shared bucket would let a single client block everybody else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from authz.ratelimit.keys import MAX_VERBATIM
from authz.ratelimit.spec import FailureMode, KeyKind, KeySpec

#: Where a failure was counted (also in traces): the shared store, this process, or nowhere.
COUNTED_SHARED: Final = "redis"
COUNTED_LOCAL: Final = "memory"
COUNTED_NOWHERE: Final = "open"


@dataclass(frozen=True, slots=True)
class Protection:
    """One compiled `spec.protection.bruteForce[]` entry."""

    name: str
    key: KeySpec
    max_failures: int
    window_ms: int
    block_ms: int
    #: `<namespace>/<policy>:<name>`: every block key of this protection starts with it.
    prefix: str
    #: The policy's `namespace/name` (a metric label).
    policy: str
    window_text: str
    block_text: str


@dataclass(frozen=True, slots=True)
class Strike:
    """One failure to count: the protection, and the key of the client that failed."""

    protection: Protection
    key: str


@dataclass(frozen=True, slots=True)
class Block:
    """A block in force: its key and when it ends (Unix time, ms)."""

    key: str
    until_ms: int


@dataclass(frozen=True, slots=True)
class Started:
    """A block that a counted failure started."""

    strike: Strike
    until_ms: int
    failures: int


def block_key(prefix: str, kind: KeyKind, value: str | None) -> str | None:
    """The block key of a value under a protection, or None when the value is missing."""
    if value is None:
        return None
    verbatim = len(value) <= MAX_VERBATIM and value.isascii() and value.isprintable()
    if verbatim and kind is not KeyKind.HEADER:
        return prefix + "=" + value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return prefix + "#" + digest


def split_key(key: str) -> tuple[str, str, str]:
    """(policy, protection, value) of a block key; a hashed value keeps its "#"."""
    policy, _, rest = key.partition(":")  # namespaces, names and protections never hold ":"
    cut = min((i for i in (rest.find("="), rest.find("#")) if i >= 0), default=len(rest))
    value = rest[cut + 1 :] if rest[cut : cut + 1] == "=" else rest[cut:]
    return policy, rest[:cut], value


def key_matches(key: str, wanted: str) -> bool:
    """`authz blocks clear` takes a whole key or just its value (an address, a subject)."""
    return key == wanted or split_key(key)[2] == wanted


class BlockObserver(Protocol):
    """Told about counting (metrics and the block log hook here)."""

    def on_failure(self, protection: Protection) -> None: ...

    def on_block(self, started: Started, *, dry_run: bool) -> None: ...

    def on_backend_error(self, error: BaseException) -> None: ...


class BlockStore(Protocol):
    """The blocks of this process (memory) or of every replica (Redis)."""

    @property
    def available(self) -> bool:
        """False while a shared store is away (a policy's failure mode then applies)."""
        ...

    def any_blocked(self) -> bool:
        """Whether any block is known at all (expired ones may count until swept): the check
        path asks first, so while nobody is blocked it works out no key. Never waits; for a
        shared store the first question also starts keeping the local copy fresh."""
        ...

    def blocked_ms(self, key: str, now_ms: int) -> int:
        """Milliseconds the key stays blocked, 0 when it is not. Never waits."""
        ...

    async def failed(
        self, strikes: Sequence[Strike], *, now_ms: int, failure_mode: FailureMode, dry_run: bool
    ) -> str:
        """Count one failure under every strike; start the blocks it completes and report them
        to the observers. Returns where it counted (COUNTED_*). Never raises for backend trouble."""
        ...

    async def blocks(self, now_ms: int) -> list[Block]:
        """Every block in force (the shared store's when it answers), soonest end first."""
        ...

    async def clear(self, wanted: str) -> int:
        """Lift the blocks whose key or value is `wanted` (and forget their failures)."""
        ...

    def add_observer(self, observer: BlockObserver) -> None: ...

    def __len__(self) -> int:
        """Blocks this process knows of (expired ones may still be counted until swept)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
