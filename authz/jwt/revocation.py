"""Revoked tokens: by `jti`, or every token of a subject issued up to an instant.

A JWT cannot be recalled once issued; this list is how an operator refuses one anyway (`authz
revoke`, the admin API's Revoke). A revoked jti is refused; revoking a subject refuses each of
its tokens whose `iat` is at or before the revocation (a token without `iat` cannot prove it is
newer, so it is refused too). Both apply to introspected tokens as well. An entry names one
issuer or any issuer, and is dropped once `until` has passed: by then no token it could match
is still valid.

The check runs on every authenticated request, so it is two dict lookups per kind, skipped
entirely while the list is empty. The list is bounded: a Revoke beyond `max_entries` is refused
rather than growing memory without end.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from authz.errors import AuthzError

JTI: Final = "jti"
SUBJECT: Final = "subject"
#: How long an entry is kept when the caller does not say (seconds).
DEFAULT_KEEP = 86_400.0
REVOKED = "token has been revoked"


class RevocationError(AuthzError):
    """A revocation request cannot be honoured (the message says why)."""

    code = "invalid_revocation"


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: str
    value: str
    #: "" matches tokens of any issuer.
    issuer: str
    revoked_at: float
    until: float


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class Revocations:
    """The revocations this process enforces."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._jti: dict[tuple[str, str], Revocation] = {}
        self._subject: dict[tuple[str, str], Revocation] = {}
        #: False while the list is empty: the check path skips it with one attribute read.
        self.active = False
        #: Shares a new entry with the other replicas; True once it is shared. None: the list
        #: is this process's only (set by the shared store, see authz.sharedrevocations).
        self.publish: Callable[[Revocation], Awaitable[bool]] | None = None

    def revoke(
        self,
        *,
        kind: str,
        value: str,
        issuer: str = "",
        now: float,
        until: float | None = None,
    ) -> Revocation:
        if kind not in (JTI, SUBJECT):
            raise RevocationError(f"revoke by {JTI} or {SUBJECT}, not {kind!r}")
        if not value or len(value) > 2048 or len(issuer) > 2048:
            raise RevocationError(f"the {kind} must be 1 to 2048 characters (the issuer too)")
        keep_until = now + DEFAULT_KEEP if until is None else until
        if not math.isfinite(keep_until) or keep_until <= now:
            raise RevocationError("until must be a time in the future (UNIX seconds)")
        table = self._jti if kind == JTI else self._subject
        self.expire(now)
        previous = table.get((issuer, value))
        if previous is None and len(self) >= self._max:
            raise RevocationError(f"the revocation list is full ({self._max} entries)")
        if previous is not None:
            keep_until = max(keep_until, previous.until)
        entry = Revocation(kind, value, issuer, now, keep_until)
        table[(issuer, value)] = entry
        self.active = True
        return entry

    def refuses(self, claims: Mapping[str, Any], issuer: str, now: float) -> bool:
        """Whether a token with these claims from this issuer is revoked."""
        if self._jti:
            jti = claims.get("jti")
            if isinstance(jti, str):
                for entry in (self._jti.get((issuer, jti)), self._jti.get(("", jti))):
                    if entry is not None and entry.until > now:
                        return True
        if self._subject:
            sub = claims.get("sub")
            if isinstance(sub, str):
                for entry in (self._subject.get((issuer, sub)), self._subject.get(("", sub))):
                    if entry is not None and entry.until > now:
                        iat = _number(claims.get("iat"))
                        if iat is None or iat <= entry.revoked_at:
                            return True
        return False

    def replace(self, entries: Iterable[Revocation], now: float) -> None:
        """Become exactly `entries` (the shared list's current state), expired ones left out."""
        jti: dict[tuple[str, str], Revocation] = {}
        subject: dict[tuple[str, str], Revocation] = {}
        for entry in entries:
            if entry.until > now and entry.kind in (JTI, SUBJECT):
                table = jti if entry.kind == JTI else subject
                if len(jti) + len(subject) < self._max:
                    table[(entry.issuer, entry.value)] = entry
        self._jti, self._subject = jti, subject
        self.active = bool(jti or subject)

    def expire(self, now: float) -> None:
        for table in (self._jti, self._subject):
            for key in [k for k, entry in table.items() if entry.until <= now]:
                del table[key]
        self.active = bool(self._jti or self._subject)

    def entries(self, now: float) -> list[Revocation]:
        self.expire(now)
        return sorted(
            [*self._jti.values(), *self._subject.values()], key=lambda e: (e.revoked_at, e.value)
        )

    def __len__(self) -> int:
        return len(self._jti) + len(self._subject)
