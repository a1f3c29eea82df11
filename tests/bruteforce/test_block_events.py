"""Warning Events for brute-force blocks: one per policy per interval, the next one counting the
blocks in between, none for policies that came from files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from authz.controller.api import EventRecord, KubeApi
from authz.controller.blockevents import REASON, REASON_DRY_RUN, BlockEvents
from authz.controller.events import EventRecorder
from authz.ratelimit.blocks import Started, Strike
from tests.bruteforce.support import build, policy

PROTECTION = build(policy()).policies[0].brute_force[0]
OBJECT = {"apiVersion": "authz.dev/v1alpha1", "kind": "AuthPolicy", "metadata": {"name": "api"}}


class Api:
    def __init__(self) -> None:
        self.events: list[EventRecord] = []

    def create_event(self, event: EventRecord) -> None:
        self.events.append(event)


def started(ip: str) -> Started:
    return Started(Strike(PROTECTION, f"{PROTECTION.prefix}={ip}"), until_ms=0, failures=3)


def events(
    found: dict[str, Any] | None = OBJECT,
) -> tuple[Api, BlockEvents, list[float]]:
    api, now = Api(), [0.0]

    def run(work: Callable[[], None]) -> None:
        work()

    recorder = EventRecorder(cast(KubeApi, api), identity="pod-a")
    observer = BlockEvents(
        recorder=recorder, find=lambda _key: found, submit=run, interval=60.0, clock=lambda: now[0]
    )
    return api, observer, now


def test_one_event_per_policy_per_interval_counting_the_rest() -> None:
    api, observer, now = events()
    for i in range(5):
        observer.on_block(started(f"10.0.0.{i}"), dry_run=False)
    assert len(api.events) == 1
    first = api.events[0]
    assert (first.type, first.reason, first.regarding) == ("Warning", REASON, OBJECT)
    assert first.message == (
        "per-ip: sourceIP 10.0.0.0 is blocked for 15m after 3 failed authentications within 60s"
    )
    now[0] = 60.0
    observer.on_block(started("10.0.0.9"), dry_run=True)
    assert api.events[-1].reason == REASON_DRY_RUN
    assert api.events[-1].message.endswith("(4 more blocks started since the last event)")
    assert "would be blocked" in api.events[-1].message


def test_policies_from_files_get_no_event() -> None:
    api, observer, _ = events(found=None)
    observer.on_block(started("10.0.0.1"), dry_run=False)
    assert api.events == []
