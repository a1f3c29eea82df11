"""How `make unit` spreads the whole suite over pytest-xdist workers: the integration tests run
one after another in one worker, as they would without xdist, while the in-process tests share
the cores beside them.

The integration tests start real parts (Envoy, Redis, wrk, the fake API server) and some wait on
deadlines, so two of them never run at once; the in-process tests are `make test-fast`'s, which
already run in parallel. Which tests are integration tests is decided in tests/conftest.py, on the
workers, from the fixtures each test uses - something the controller, which schedules by test id
alone, cannot see. So each worker writes the ids of its integration tests to a file in a folder
the controller named, before it reports its collection; the scheduler reads them when it splits
the work. xdist's own `--dist loadgroup` carries its group inside the test id, which the pytest
versions this suite runs on no longer let a plugin change, so it would spread the group instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

#: The one work unit every integration test belongs to.
GROUP = "integration"
#: The key in each worker's `workerinput` naming the folder for the lists.
LISTS = "integration_lists"


def write_list(config: pytest.Config, nodeids: Iterable[str]) -> None:
    """On a worker started for IntegrationApart: the ids of its integration tests."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    folder = workerinput.get(LISTS)
    if folder is not None:
        name = f"{workerinput['workerid']}.txt"
        (Path(folder) / name).write_text("".join(f"{nodeid}\n" for nodeid in nodeids))


class IntegrationApart(LoadGroupScheduling):  # type: ignore[misc]
    """xdist's loadgroup, with every test a worker listed as integration in one group.

    Groups go out largest first (xdist reorders work units by size), so the integration tests
    start at once and the in-process tests fill the other workers around them."""

    def __init__(self, config: pytest.Config, log: Any, *, lists: Path) -> None:
        super().__init__(config, log)
        self._lists = lists
        self._integration: frozenset[str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._integration is None:
            # Every worker has reported its collection by now, so every list is complete.
            self._integration = frozenset(
                line for path in self._lists.glob("*.txt") for line in path.read_text().splitlines()
            )
        if nodeid in self._integration:
            return GROUP
        group: str = super()._split_scope(nodeid)
        return group
