"""Leader election over a coordination.k8s.io/v1 Lease: exactly one replica writes status.

The algorithm is client-go's leaderelection, reduced to what the RBAC grants (get, create,
update on leases in the pod's namespace - no list, no delete):

- a follower reads the Lease every retry period; it takes over only when the holder has not
  renewed for the lease's duration, measured on the follower's own monotonic clock from the
  moment it last saw the record change (clock skew between nodes cannot cut a lease short);
- the leader renews every retry period; every write is a replace guarded by resourceVersion,
  so two replicas racing for an expired lease cannot both win (the loser gets 409);
- a leader that could not renew for the renew deadline (two thirds of the duration) stops
  acting as leader before anyone else may take over, so two writers never overlap;
- on shutdown the leader releases the lease (empty holder) so a successor starts at once.

With the default 15 s duration: renew every 2 s, step down after 10 s without renewal, and a
killed leader is replaced at most duration + retry period (17 s) after its last renewal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from authz.controller.api import KubeApi, LeaseRecord
from authz.controller.errors import KubeError
from authz.controller.observer import ControllerObserver

log = logging.getLogger(__name__)


class LeaderElector:
    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: float,
        observer: ControllerObserver,
        on_change: Callable[[bool], None],
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._duration = duration
        self.retry_period = duration * 2 / 15
        self._renew_deadline = duration * 10 / 15
        self._observer = observer
        self._on_change = on_change
        self._monotonic = monotonic
        self._wall = wall
        self._stop = threading.Event()
        self._leading = False
        self._reported = False
        self._last_renew = float("-inf")
        self._observed: LeaseRecord | None = None
        self._observed_at = float("-inf")

    def is_leader(self) -> bool:
        """True while this replica holds a lease it renewed within the renew deadline."""
        return self._leading and self._monotonic() - self._last_renew < self._renew_deadline

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """The thread's body: elect, renew, and release on stop."""
        log.info(
            "leader election: Lease %s/%s as %r (duration %.0fs)",
            self.namespace,
            self.name,
            self.identity,
            self._duration,
        )
        failing = False
        while not self._stop.is_set():
            try:
                self.tick()
                if failing:
                    log.info("leader election works again")
                failing = False
            except KubeError as exc:
                # Once per failure streak: an outage (or missing RBAC on leases) is worth one
                # line, not one every retry period.
                (log.debug if failing else log.warning)("leader election: %s", exc)
                failing = True
            except Exception:
                log.exception("leader election failed; retrying")
            self._set_leading(self.is_leader())
            self._stop.wait(self.retry_period)
        self._release()

    def tick(self) -> None:
        """One attempt to acquire or renew."""
        now = self._monotonic()
        record = self._api.read_lease(self.namespace, self.name)
        if record is None:
            fresh = LeaseRecord(self.identity, self._lease_seconds(), self._wall(), self._wall(), 0)
            try:
                self._won(self._api.create_lease(self.namespace, self.name, fresh), now)
            except KubeError as exc:
                if exc.status != 409:
                    raise
            return
        if self._observed is None or _identity(record) != _identity(self._observed):
            self._observed, self._observed_at = record, now
        held_by_other = record.holder not in (None, self.identity)
        duration = record.duration_seconds or self._duration
        if held_by_other and now < self._observed_at + duration:
            self._leading = False
            return
        if held_by_other:
            log.info(
                "the leader %r has not renewed for %.0fs; taking over", record.holder, duration
            )
        mine = record.holder == self.identity
        wanted = LeaseRecord(
            self.identity,
            self._lease_seconds(),
            record.acquire_time if mine else self._wall(),
            self._wall(),
            record.transitions if mine else record.transitions + 1,
            record.resource_version,
        )
        try:
            self._won(self._api.replace_lease(self.namespace, self.name, wanted), now)
        except KubeError as exc:
            if exc.status != 409:
                raise
            self._leading = False  # another replica wrote first

    def _lease_seconds(self) -> int:
        return max(1, round(self._duration))

    def _won(self, record: LeaseRecord, now: float) -> None:
        self._observed, self._observed_at = record, now
        self._leading, self._last_renew = True, now

    def _set_leading(self, leading: bool) -> None:
        if leading == self._reported:
            return
        self._reported = leading
        if leading:
            log.info("became the leader: this replica writes AuthPolicy status")
        else:
            log.warning("no longer the leader: status writes stop")
        self._observer.leading(leading)
        self._on_change(leading)

    def _release(self) -> None:
        if not self.is_leader() or self._observed is None:
            return
        released = replace(self._observed, holder=None, duration_seconds=1, renew_time=self._wall())
        try:
            self._api.replace_lease(self.namespace, self.name, released)
            log.info("released the leader Lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release the leader Lease: %s", exc)
        self._leading = False
        self._set_leading(False)


def _identity(record: LeaseRecord) -> tuple[object, ...]:
    """What changes when the holder renews or changes (resourceVersion alone would do, but a
    restarted API server may reuse versions)."""
    return (record.holder, record.renew_time, record.transitions, record.resource_version)
