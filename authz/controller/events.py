"""Kubernetes Events about AuthPolicies: a Warning when one becomes invalid or conflicted.

`kubectl describe ap NAME` and `kubectl get events` are where people look first, and an Event
keeps the history a status condition overwrites. Only the leader records events (the status
writer calls this after a successful write), so N replicas do not make N copies. Failing to
record one is logged and otherwise ignored: events are best effort, status is the record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from authz.controller.api import EventRecord, KubeApi, RawObject
from authz.controller.errors import KubeError

log = logging.getLogger(__name__)

COMPONENT = "authz"
MAX_EVENT_MESSAGE = 1024


class EventRecorder:
    def __init__(
        self,
        api: KubeApi,
        *,
        identity: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._identity = identity
        self._clock = clock

    def warn(self, obj: RawObject, *, reason: str, message: str) -> None:
        text = message if len(message) <= MAX_EVENT_MESSAGE else message[:1023] + "…"
        record = EventRecord(
            regarding=obj,
            type="Warning",
            reason=reason,
            message=text,
            component=COMPONENT,
            instance=self._identity,
            time=self._clock(),
        )
        try:
            self._api.create_event(record)
        except KubeError as exc:
            log.warning("could not record a %s event: %s", reason, exc)
