"""A record of each step of a decision, for explaining it ("why was this denied?").

Every step reports to a tracer, always - there are no `if tracing` branches in the steps. Real
checks get NULL_TRACE, whose `add` does nothing; `authz explain` gets a Trace, which keeps every
step with its outcome, from the same code that decides real requests.

A detail is only written out by a Trace, so the check path must not pay for building it: pass a
`str.format` template and its arguments (`"{!r} -> policy {}", host, key`), or a function and its
arguments when the text takes work. Text that came from the request or the token belongs in the
arguments, never in the template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

Outcome = Literal["pass", "fail", "skip", "info"]
#: A step's detail: a literal or `str.format` template, or a function of the arguments.
Detail = str | Callable[..., str]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    outcome: Outcome
    detail: str


class Tracer(Protocol):
    def add(self, name: str, outcome: Outcome, detail: Detail, /, *args: object) -> None: ...


@dataclass(slots=True)
class Trace:
    steps: list[Step] = field(default_factory=list)

    def add(self, name: str, outcome: Outcome, detail: Detail, /, *args: object) -> None:
        if callable(detail):
            detail = detail(*args)
        elif args:
            detail = detail.format(*args)
        self.steps.append(Step(name, outcome, detail))


class NullTrace:
    """The tracer of real checks: keeps nothing, formats nothing."""

    __slots__ = ()

    def add(self, name: str, outcome: Outcome, detail: Detail, /, *args: object) -> None:
        return None


NULL_TRACE = NullTrace()
