"""Compiled rate-limit specifications: what a policy's `rateLimits[]` entry means, parsed once.

Windows and keys are parsed at policy load, never per request. Window arithmetic is in integer
milliseconds so the in-memory backend and the Redis Lua script compute exactly the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Algorithm(StrEnum):
    SLIDING_WINDOW = "slidingWindow"
    FIXED_WINDOW = "fixedWindow"
    TOKEN_BUCKET = "tokenBucket"  # noqa: S105 - an algorithm name, not a secret


#: Short codes used inside bucket keys and the Lua script's arguments.
ALGORITHM_CODE: Final[dict[Algorithm, str]] = {
    Algorithm.SLIDING_WINDOW: "sw",
    Algorithm.FIXED_WINDOW: "fw",
    Algorithm.TOKEN_BUCKET: "tb",
}


class FailureMode(StrEnum):
    """What a policy's limits do while the shared (Redis) backend is unavailable."""

    #: Count in this process's memory with the same limits (per replica, not shared).
    FALLBACK = "fallback"
    #: Do not limit at all.
    OPEN = "open"
    #: Deny every request that has a rate limit (503 ratelimit_unavailable).
    CLOSED = "closed"


class KeyKind(StrEnum):
    CLAIM = "claim"
    HEADER = "header"
    SOURCE_IP = "sourceIP"
    GLOBAL = "global"


#: A sliding window is counted in this many slots (plus the current one); see algorithms.py.
SLIDING_SLOTS: Final = 10
MAX_WINDOW_SECONDS: Final = 31 * 86400
WINDOW_TOO_LONG: Final = "window must be at most 31d"
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Which bucket a request counts against: one per claim value, header value, IP, or one for all."""

    kind: KeyKind
    #: CLAIM: the dotted claim path, split.
    claim: tuple[str, ...] = ()
    #: HEADER: the lower-case header name.
    header: str = ""

    @property
    def text(self) -> str:
        if self.kind is KeyKind.CLAIM:
            return "claim:" + ".".join(self.claim)
        if self.kind is KeyKind.HEADER:
            return "header:" + self.header
        return self.kind.value


@dataclass(frozen=True, slots=True)
class LimitSpec:
    name: str
    requests: int
    #: Window length in milliseconds (a whole number of seconds).
    window_ms: int
    algorithm: Algorithm
    key: KeySpec
    #: Every bucket key of this limit starts with this; it carries the rule's Redis hash tag.
    prefix: str
    #: The window as written in the policy ("1m"), for messages.
    window_text: str


def parse_window(text: str) -> int:
    """Seconds in a window like "30s", "1m", "1h", "1d". Raises ValueError beyond 31 days."""
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError("must be a whole number followed by s, m, h or d (e.g. 30s, 1m, 1d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_WINDOW_SECONDS:
        raise ValueError(WINDOW_TOO_LONG)
    return seconds


def parse_key(text: str) -> KeySpec:
    """`claim:<dotted.path>` | `header:<name>` | `sourceIP` | `global`. Raises ValueError."""
    if text == "global":
        return KeySpec(KeyKind.GLOBAL)
    if text == "sourceIP":
        return KeySpec(KeyKind.SOURCE_IP)
    kind, sep, rest = text.partition(":")
    if sep and kind == "claim":
        path = tuple(rest.split("."))
        if not rest or any(not part for part in path):
            raise ValueError("claim:<path> needs a dotted claim path without empty parts")
        return KeySpec(KeyKind.CLAIM, claim=path)
    if sep and kind == "header":
        if not _HEADER_NAME.match(rest):
            raise ValueError("header:<name> needs an HTTP header name")
        return KeySpec(KeyKind.HEADER, header=rest.lower())
    raise ValueError("must be claim:<dotted.path>, header:<name>, sourceIP or global")


def bucket_prefix(
    *, policy: str, rule: str, limit: str, algorithm: Algorithm, window_seconds: int
) -> str:
    """`authz:rl:{ns/name/rule}:limit:alg:window:` - the braces are the Redis Cluster hash tag, so
    every bucket of one rule lives on one slot and one script call can touch all of them."""
    return f"authz:rl:{{{policy}/{rule}}}:{limit}:{ALGORITHM_CODE[algorithm]}:{window_seconds}:"
