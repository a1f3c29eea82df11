"""KubeApi over the official `kubernetes` client: the only module that imports it.

Keeping the client behind one module (an import-linter contract enforces it, as kopf does) keeps
its large, partly untyped surface and its exceptions out of the controller's logic, which sees
raw JSON objects and authz.controller.errors.KubeError. Three choices matter here:

- urllib3 retries are off: the watcher owns reconnecting (capped backoff with jitter) and must
  see an outage as it happens, not after hidden retries.
- a watch is a raw streaming response (stream.WatchResponse) read line by line, so the
  socket's read timeout is the stall detector and `close()` from another thread ends a blocked
  read at once - SIGTERM does not wait for the next event or bookmark.
- configuration comes from --kubeconfig, else the in-cluster service account, else KUBECONFIG
  (or ~/.kube/config), like kubectl and client-go.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from authz.controller.api import GROUP, PLURAL, VERSION, EventRecord, LeaseRecord, ListPage
from authz.controller.errors import KubeError, KubeUnavailable
from authz.controller.stream import WatchResponse
from authz.errors import ConfigError

log = logging.getLogger(__name__)

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: (connect, read) seconds for every request that is not a watch.
_REQUEST_TIMEOUT = (5.0, 30.0)
_T = TypeVar("_T")


def load_configuration(kubeconfig: Path | None) -> tuple[client.Configuration, str]:
    """The client configuration and the namespace this process lives in (for its Lease).

    Raises ConfigError when no configuration can be found or the file is unusable.
    """
    cfg = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
            return _finish(cfg), _context_namespace(str(kubeconfig))
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except ConfigException:
            config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            return _finish(cfg), _context_namespace(None)
        namespace = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        return _finish(cfg), namespace
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "in-cluster config or KUBECONFIG"
        raise ConfigError(f"--kubernetes: cannot load {where}: {exc}") from None


def _finish(cfg: client.Configuration) -> client.Configuration:
    cfg.retries = False  # the watcher retries, with backoff, and counts the outage
    return cfg


def _context_namespace(config_file: str | None) -> str:
    _, current = config.list_kube_config_contexts(config_file=config_file)  # type: ignore[no-untyped-call]
    namespace = (current or {}).get("context", {}).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else "default"


def _call(what: str, func: Callable[[], _T]) -> _T:
    """Run one API call, turning the client's exceptions into authz.controller.errors ones."""
    try:
        return func()
    except ApiException as exc:
        if exc.status in (0, None):
            raise KubeUnavailable(f"{what}: {exc.reason}") from None
        reason, message = _status_body(exc)
        status = int(exc.status)
        error = KubeUnavailable if status in (502, 503, 504) else KubeError
        raise error(
            f"{what}: HTTP {status} {reason}: {message}", status=status, reason=reason
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None


def _status_body(exc: ApiException) -> tuple[str, str]:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return str(body.get("reason") or exc.reason or ""), str(body.get("message") or "")


def _lease_body(name: str, record: LeaseRecord) -> client.V1Lease:
    return client.V1Lease(
        api_version="coordination.k8s.io/v1",
        kind="Lease",
        metadata=client.V1ObjectMeta(name=name, resource_version=record.resource_version),
        spec=client.V1LeaseSpec(
            holder_identity=record.holder,
            lease_duration_seconds=record.duration_seconds,
            acquire_time=record.acquire_time,
            renew_time=record.renew_time,
            lease_transitions=record.transitions,
        ),
    )


def _lease_record(lease: client.V1Lease) -> LeaseRecord:
    spec = lease.spec or client.V1LeaseSpec()
    return LeaseRecord(
        holder=spec.holder_identity or None,
        duration_seconds=int(spec.lease_duration_seconds or 0),
        acquire_time=spec.acquire_time,
        renew_time=spec.renew_time,
        transitions=int(spec.lease_transitions or 0),
        resource_version=lease.metadata.resource_version if lease.metadata else None,
    )


class KubeClient:
    """The KubeApi the sidecar uses. Thread-safe (urllib3's pool is)."""

    def __init__(self, cfg: client.Configuration) -> None:
        self._client = client.ApiClient(cfg)
        self._objects = client.CustomObjectsApi(self._client)
        self._leases = client.CoordinationV1Api(self._client)
        self._core = client.CoreV1Api(self._client)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _list(self, namespace: str | None, kwargs: dict[str, Any]) -> Any:
        """List (or, with watch=True, watch) AuthPolicies: every namespace when None."""
        if namespace is None:
            return self._objects.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)
        return self._objects.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, **kwargs
        )

    def list_policies(
        self,
        namespace: str | None,
        *,
        selector: str | None,
        limit: int,
        continue_token: str | None,
    ) -> ListPage:
        kwargs: dict[str, Any] = {"limit": limit, "_request_timeout": _REQUEST_TIMEOUT}
        if selector:
            kwargs["label_selector"] = selector
        if continue_token:
            kwargs["_continue"] = continue_token
        body = _call(f"list {PLURAL}", lambda: self._list(namespace, kwargs))
        meta = body.get("metadata") or {}
        return ListPage(
            tuple(item for item in body.get("items") or () if isinstance(item, dict)),
            str(meta.get("resourceVersion") or ""),
            meta.get("continue") or None,
        )

    def watch_policies(
        self,
        namespace: str | None,
        *,
        selector: str | None,
        resource_version: str,
        timeout_seconds: int,
        stall_timeout: float,
    ) -> WatchResponse:
        kwargs: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "resource_version": resource_version,
            "timeout_seconds": timeout_seconds,
            "_preload_content": False,
            "_request_timeout": (_REQUEST_TIMEOUT[0], stall_timeout),
        }
        if selector:
            kwargs["label_selector"] = selector

        what = f"watch {PLURAL}" + (f" in {namespace}" if namespace else "")
        return WatchResponse(_call(what, lambda: self._list(namespace, kwargs)), what)

    def patch_policy_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        result = _call(
            f"patch {namespace}/{name} status",
            lambda: self._objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                dict(patch),
                _request_timeout=_REQUEST_TIMEOUT,
            ),
        )
        return result if isinstance(result, dict) else {}

    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        try:
            lease = _call(
                f"read lease {namespace}/{name}",
                lambda: self._leases.read_namespaced_lease(
                    name, namespace, _request_timeout=_REQUEST_TIMEOUT
                ),
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return _lease_record(lease)

    def create_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        body = _lease_body(name, LeaseRecord(**{**_fields(record), "resource_version": None}))
        return _lease_record(
            _call(
                f"create lease {namespace}/{name}",
                lambda: self._leases.create_namespaced_lease(
                    namespace, body, _request_timeout=_REQUEST_TIMEOUT
                ),
            )
        )

    def replace_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        body = _lease_body(name, record)
        return _lease_record(
            _call(
                f"replace lease {namespace}/{name}",
                lambda: self._leases.replace_namespaced_lease(
                    name, namespace, body, _request_timeout=_REQUEST_TIMEOUT
                ),
            )
        )

    def create_event(self, event: EventRecord) -> None:
        body = _event_body(event)
        namespace = body.involved_object.namespace or "default"
        _call(
            f"create event in {namespace}",
            lambda: self._core.create_namespaced_event(
                namespace, body, _request_timeout=_REQUEST_TIMEOUT
            ),
        )


def _event_body(event: EventRecord) -> client.CoreV1Event:
    meta = event.regarding.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace") or "default")
    return client.CoreV1Event(
        # Like client-go's recorder: the object's name and a unique hexadecimal suffix.
        metadata=client.V1ObjectMeta(name=f"{name}.{time.time_ns():x}", namespace=namespace),
        involved_object=client.V1ObjectReference(
            api_version=str(event.regarding.get("apiVersion") or f"{GROUP}/{VERSION}"),
            kind=str(event.regarding.get("kind") or "AuthPolicy"),
            name=name,
            namespace=namespace,
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
        ),
        type=event.type,
        reason=event.reason,
        message=event.message,
        source=client.V1EventSource(component=event.component),
        reporting_component=event.component,
        reporting_instance=event.instance,
        first_timestamp=event.time,
        last_timestamp=event.time,
        count=1,
    )


def _fields(record: LeaseRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in LeaseRecord.__slots__}


def connect(kubeconfig: Path | None) -> tuple[KubeClient, str]:
    """A client for the configured cluster, and the namespace this process lives in."""
    cfg, namespace = load_configuration(kubeconfig)
    log.info("Kubernetes API at %s", cfg.host)
    return KubeClient(cfg), namespace
