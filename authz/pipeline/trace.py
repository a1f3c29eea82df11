"""An optional record of each step of a decision, for explaining it ("why was this denied?").

The check path passes None and pays nothing; explain passes a Trace and gets every step with
its outcome, from the same code that decides real requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["pass", "fail", "skip", "info"]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    outcome: Outcome
    detail: str


@dataclass(slots=True)
class Trace:
    steps: list[Step] = field(default_factory=list)

    def add(self, name: str, outcome: Outcome, detail: str) -> None:
        self.steps.append(Step(name, outcome, detail))
