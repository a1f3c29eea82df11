"""List, then watch; on trouble re-list or reconnect - in one worker thread per watched scope.

The loop is the reflector pattern (client-go, kopf): a paged list gives the complete set and a
resourceVersion; a watch from that version with bookmarks gives every change after it, and each
event or bookmark moves the version on. What can go wrong, and what happens:

- the server ends the watch (timeoutSeconds): watch again from the last version at once.
- 410 Gone (the version was compacted away): list again and replace the scope's objects with
  the list, so deletions that happened while we were not watching are seen too.
- nothing arrives, not even a bookmark, within the stall timeout: the connection is presumed
  dead (a half-open TCP connection never errors); watch again from the last version.
- the API server is unreachable or refuses: wait with capped exponential backoff and full
  jitter (many replicas must not reconnect in lockstep), log the outage once when it starts and
  once when it ends, and keep serving the last snapshot meanwhile.

Stopping sets a flag and closes the open stream, so a blocked read ends immediately.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Protocol

from authz.controller.api import KubeApi, RawObject, WatchStream
from authz.controller.errors import (
    WATCH_ENDED,
    WATCH_ERROR,
    WATCH_EXPIRED,
    WATCH_STALLED,
    WATCH_UNAVAILABLE,
    KubeError,
    KubeUnavailable,
    WatchStalled,
)
from authz.controller.observer import ControllerObserver
from authz.settings import KubernetesSettings

log = logging.getLogger(__name__)

LIST_PAGE = 500
_HINTS = {
    403: " (the service account needs get/list/watch on authpolicies.authz.dev; see the README's RBAC)",
    404: " (is the CRD installed? kubectl apply -f deploy/crds/authz.dev_authpolicies.yaml)",
}
_MIN_HEALTHY_WATCH = 1.0


class Sink(Protocol):
    """Where a watcher puts what it learns (documents.ObjectCache)."""

    def replace(self, scope: str, objects: Iterable[RawObject]) -> None:
        """A complete list of the scope: everything not in it is gone."""

    def apply(self, scope: str, event_type: str, obj: RawObject) -> None:
        """One ADDED, MODIFIED or DELETED event."""


class Backoff:
    """Capped exponential backoff with jitter: the n-th delay is drawn from [c/2, c] with
    c = min(cap, initial * 2**n), so replicas that failed together do not retry together."""

    def __init__(self, initial: float, cap: float, *, rng: random.Random | None = None) -> None:
        self._initial = initial
        self._cap = cap
        self._attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def next(self) -> float:
        ceiling = min(self._cap, self._initial * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0


def scope_name(namespace: str | None) -> str:
    return namespace if namespace is not None else "*"


class Watcher:
    """Keeps one scope (a namespace, or all of them) of AuthPolicies in the sink."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str | None,
        settings: KubernetesSettings,
        sink: Sink,
        observer: ControllerObserver,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self.scope = scope_name(namespace)
        self._settings = settings
        self._sink = sink
        self._observer = observer
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stream: WatchStream | None = None
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self._rv: str | None = None
        self._outage_since: float | None = None
        #: Set once the first complete list has reached the sink.
        self.listed = threading.Event()

    def stop(self) -> None:
        """Ask the loop to end and abort the open watch; callable from any thread."""
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def run(self) -> None:
        """The thread's body: returns only after stop()."""
        log.info("watching AuthPolicies in %s", _describe(self._namespace))
        while not self._stop.is_set():
            try:
                self._cycle()
            except WatchStalled as exc:
                log.warning("%s; watching again from version %s", exc, self._rv)
                self._observer.watch_restart(WATCH_STALLED)
            except KubeUnavailable as exc:
                self._unavailable(exc)
            except KubeError as exc:
                if exc.status == 410:
                    log.info("%s: the version is too old (410 Gone); listing again", exc)
                    self._observer.watch_restart(WATCH_EXPIRED)
                    self._rv = None
                    continue
                self._failed(exc)
            except Exception as exc:  # a bug must not end the watch: log it loudly and retry
                log.exception("watching AuthPolicies in %s failed", _describe(self._namespace))
                self._failed(exc)

    def _cycle(self) -> None:
        if self._rv is None:
            self._rv = self._list()
        timeout = int(self._settings.watch_timeout * random.uniform(1.0, 1.5))  # noqa: S311
        stream = self._api.watch_policies(
            self._namespace,
            selector=self._settings.selector,
            resource_version=self._rv,
            timeout_seconds=max(1, timeout),
            stall_timeout=self._settings.stall_timeout,
        )
        self._reachable()
        with self._lock:
            if self._stop.is_set():
                stream.close()
                return
            self._stream = stream
        started, events, broken = time.monotonic(), 0, False
        try:
            for event in stream:
                events += 1
                self._observer.watch_event(event.type)
                if event.type in ("ADDED", "MODIFIED", "DELETED"):
                    self._sink.apply(self.scope, event.type, event.object)
                rv = event.resource_version
                if rv is not None:
                    self._rv = rv
        except KubeUnavailable as exc:
            if isinstance(exc, WatchStalled) or self._stop.is_set():
                raise
            # The stream broke after the server had answered: reconnect; an outage is declared
            # only if reconnecting fails.
            log.info("%s; watching again from version %s", exc, self._rv)
            broken = True
        finally:
            with self._lock:
                self._stream = None
        if self._stop.is_set():
            return
        self._observer.watch_restart(WATCH_UNAVAILABLE if broken else WATCH_ENDED)
        healthy = events > 0 or time.monotonic() - started >= _MIN_HEALTHY_WATCH
        if healthy:
            self._backoff.reset()
        if broken or not healthy:
            # Never reconnect in a tight loop to a server that hangs up at once.
            self._stop.wait(self._backoff.next())

    def _list(self) -> str:
        started = time.monotonic()
        items: list[RawObject] = []
        token: str | None = None
        while True:
            try:
                page = self._api.list_policies(
                    self._namespace,
                    selector=self._settings.selector,
                    limit=LIST_PAGE,
                    continue_token=token,
                )
            except KubeError as exc:
                if exc.status == 410 and token is not None:
                    log.info("list continuation expired; listing again from the start")
                    items, token = [], None
                    continue
                raise
            items.extend(page.items)
            token = page.continue_token
            if token is None:
                break
        self._reachable()
        self._sink.replace(self.scope, items)
        seconds = time.monotonic() - started
        self._observer.listed(len(items), seconds)
        log.info(
            "listed %d AuthPolic%s in %s (version %s) in %.2fs",
            len(items),
            "y" if len(items) == 1 else "ies",
            _describe(self._namespace),
            page.resource_version,
            seconds,
        )
        self.listed.set()
        return page.resource_version

    def _reachable(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "Kubernetes API reachable again after %.1fs",
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None
            self._observer.outage(False)

    def _unavailable(self, exc: KubeUnavailable) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self._observer.outage(True)
            log.warning(
                "Kubernetes API unreachable (%s); the last policies keep serving, retrying", exc
            )
        else:
            log.debug("Kubernetes API still unreachable: %s", exc)
        self._observer.watch_restart(WATCH_UNAVAILABLE)
        self._stop.wait(self._backoff.next())

    def _failed(self, exc: Exception) -> None:
        delay = self._backoff.next()
        status = exc.status if isinstance(exc, KubeError) else None
        log.error(
            "watching AuthPolicies in %s: %s%s; retrying in %.1fs",
            _describe(self._namespace),
            exc,
            _HINTS.get(status, "") if status is not None else "",
            delay,
        )
        self._observer.watch_restart(WATCH_ERROR)
        self._stop.wait(delay)


def _describe(namespace: str | None) -> str:
    return f"namespace {namespace}" if namespace is not None else "all namespaces"


def object_key(obj: Mapping[str, object]) -> str | None:
    """namespace/name of a Kubernetes object."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        return None
    return f"{namespace if isinstance(namespace, str) else ''}/{name}"
