"""How `make unit` spreads the whole suite over pytest-xdist workers: the integration tests run
one after another in one worker (the lane), as they would without xdist, while the in-process
tests share the cores beside them.

The integration tests start real parts (Envoy, Redis, wrk, the fake API server) and some wait on
deadlines and leases, so two of them never run at once, and a worker running in-process tests
lowers its priority so the lane's processes get the CPU first. The in-process tests are
`make test-fast`'s, which already run in parallel; so do the chart's tests, which only render it
in the Helm engine in-process. Which tests are integration tests is decided in tests/conftest.py,
on the workers, from the fixtures each test uses - something the controller, which schedules by
test id alone, cannot see. So each worker writes the ids of the lane's tests to a file in a folder
the controller named, before it reports its collection; the scheduler reads them when it splits
the work. xdist's own `--dist loadgroup` carries its group inside the test id, which the pytest
versions this suite runs on no longer let a plugin change, so it would spread the group instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

#: The one work unit every test of the lane belongs to.
GROUP = "integration"
#: The key in each worker's `workerinput` naming the folder for the lists.
LISTS = "integration_lists"
#: Integration tests (by the start of their id) that render the chart in the Helm engine in-process and
#: start nothing else: they compete for nothing but the CPU, like the in-process tests.
BESIDE_THE_LANE = "tests/deploy/test_chart_"
#: How much of the CPU a worker running in-process tests leaves to the lane (see yield_cpu).
NICENESS = 10
_LANE = pytest.StashKey[frozenset[str]]()
_YIELDED = pytest.StashKey[bool]()


def in_lane(
    item: pytest.Item, part_fixtures: Iterable[str], *, beside: frozenset[str] = frozenset()
) -> bool:
    """Whether an integration test runs in the lane: all but the chart's and those whose only
    real parts come from `beside` fixtures, unless one of those uses a fixture that starts
    another real part (tests/conftest.py's INTEGRATION_FIXTURES)."""
    uses = set(getattr(item, "fixturenames", ()))
    if uses.intersection(set(part_fixtures) - beside):
        return True
    return not (uses.intersection(beside) or item.nodeid.startswith(BESIDE_THE_LANE))


def write_list(config: pytest.Config, nodeids: Iterable[str]) -> None:
    """On a worker started for IntegrationApart: the ids of the tests for the lane."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    folder = workerinput.get(LISTS)
    if folder is not None:
        lane = frozenset(nodeids)
        config.stash[_LANE] = lane
        name = f"{workerinput['workerid']}.txt"
        (Path(folder) / name).write_text("".join(f"{nodeid}\n" for nodeid in sorted(lane)))


def yield_cpu(item: pytest.Item) -> None:
    """Before a test outside the lane: this worker lowers its priority, once, so that the
    lane's real parts - which wait on deadlines and leases - get the CPU first, and the
    in-process tests take what they leave. The lane is the largest work unit, so the worker
    that gets it gets it first, and lowers its priority only once the lane is done."""
    lane = item.config.stash.get(_LANE, None)
    if lane is None or item.nodeid in lane or item.config.stash.get(_YIELDED, False):
        return
    item.config.stash[_YIELDED] = True
    os.nice(NICENESS)


class IntegrationApart(LoadGroupScheduling):  # type: ignore[misc]
    """xdist's loadgroup, with every test a worker listed for the lane in one group.

    Groups go out largest first (xdist reorders work units by size), so the integration tests
    start at once and the in-process tests fill the other workers around them."""

    def __init__(self, config: pytest.Config, log: Any, *, lists: Path) -> None:
        super().__init__(config, log)
        self._lists = lists
        self._lane: frozenset[str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._lane is None:
            # Every worker has reported its collection by now, so every list is complete.
            self._lane = frozenset(
                line for path in self._lists.glob("*.txt") for line in path.read_text().splitlines()
            )
        if nodeid in self._lane:
            return GROUP
        group: str = super()._split_scope(nodeid)
        return group
