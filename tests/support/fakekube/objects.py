"""What the API server does to an object between the request body and storage.

These are the rules a controller silently depends on: the server owns uid, creationTimestamp,
resourceVersion and generation; generation moves only when something outside metadata and status
changes; with a status subresource, writes to the main resource cannot touch status and writes to
/status can touch nothing else; and a finalizer holds a deleted object until it is removed.
Everything here is a pure function of (type, old, new) so the store can decide no-op writes by
comparing results.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import JSON, ApiError, bad_request, internal, invalid
from .resources import ResourceType

# ObjectMeta's fields; anything else under metadata is dropped, as decoding into ObjectMeta does.
_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
# Set by the server alone; on update the stored values win over whatever the client sent.
_SERVER_META = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class Clock:
    """The server's wall clock: real time plus an offset that only the control API moves, so a
    test can make one object older than another without sleeping across the one-second
    resolution of creationTimestamp. The offset lives in memory: a restart resets it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)


CLOCK = Clock()


def now() -> str:
    """RFC 3339 in UTC with second precision, the format of metav1.Time."""
    return CLOCK.now().strftime(_TIME)


def _clean_meta(meta: Any) -> JSON:
    if not isinstance(meta, dict):
        return {}
    out = {k: copy.deepcopy(v) for k, v in meta.items() if k in _META_FIELDS}
    for key in ("labels", "annotations", "finalizers", "ownerReferences", "managedFields"):
        if not out.get(key):
            out.pop(key, None)
    return out


def check_identity(rt: ResourceType, body: Any, *, namespace: str, name: str | None) -> JSON:
    """A copy of ``body`` whose type, namespace and name agree with the URL, or a 400."""
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be a JSON object")
    obj = copy.deepcopy(body)
    if rt.custom and (not obj.get("kind") or not obj.get("apiVersion")):
        missing = "Kind" if not obj.get("kind") else "apiVersion"
        raise bad_request(f"Object '{missing}' is missing in '{_short(body)}'")
    api_version, kind = (
        obj.setdefault("apiVersion", rt.api_version),
        obj.setdefault("kind", rt.kind),
    )
    if api_version != rt.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rt.api_version})"
        )
    if kind != rt.kind:
        raise bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
        )
    meta = _clean_meta(obj.get("metadata"))
    if rt.namespaced:
        if meta.get("namespace", namespace) != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["namespace"] = namespace
    if name is not None and meta.get("name", name) != name:
        raise bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL "
            f"({name})"
        )
    obj["metadata"] = meta
    _normalize_times(rt, obj)
    return obj


def _normalize_times(rt: ResourceType, obj: JSON) -> None:
    """Re-encode typed timestamps as the server's decoder would: UTC, ``Z``, fixed precision."""
    for paths, fmt in ((rt.time_fields, _TIME), (rt.micro_time_fields, _MICRO_TIME)):
        for path in paths:
            *parents, leaf = path.split(".")
            node: Any = obj
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or node.get(leaf) is None:
                continue
            try:
                parsed = datetime.fromisoformat(str(node[leaf]).replace("Z", "+00:00"))
            except ValueError:
                raise bad_request(f"{path}: cannot parse {node[leaf]!r} as RFC 3339") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            node[leaf] = parsed.astimezone(UTC).strftime(fmt)


def _short(body: Any) -> str:
    text = json.dumps(body, separators=(",", ":"))
    return text if len(text) < 200 else text[:200] + "..."


def _check_name(rt: ResourceType, name: str) -> None:
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        message = (
            f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
            "character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
        raise invalid(
            rt,
            name,
            [{"reason": "FieldValueInvalid", "message": message, "field": "metadata.name"}],
        )


def prepare_create(rt: ResourceType, obj: JSON) -> JSON:
    """Fill in the server-owned metadata of an object about to be created."""
    meta = obj["metadata"]
    if meta.get("resourceVersion"):
        raise internal("resourceVersion should not be set on objects to be created")
    if not meta.get("name"):
        prefix = meta.get("generateName")
        if not prefix:
            raise invalid(
                rt,
                "",
                [
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value: name or generateName is required",
                        "field": "metadata.name",
                    }
                ],
            )
        suffix = "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
        meta["name"] = f"{prefix[:58]}{suffix}"
    _check_name(rt, meta["name"])
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "generation"):
        meta.pop(key, None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now()
    if rt.tracks_generation:
        meta["generation"] = 1
    if rt.status_subresource:
        obj.pop("status", None)
    return obj


def _content(obj: JSON, *, status_too: bool) -> JSON:
    drop = {"metadata", "status"} if status_too else {"metadata"}
    return {k: v for k, v in obj.items() if k not in drop}


def prepare_update(rt: ResourceType, old: JSON, new: JSON, *, subresource: str | None) -> JSON:
    """The object to store after an update of ``old`` with ``new`` (both with clean metadata).

    The result still carries ``old``'s resourceVersion: if it equals ``old``, the write is a no-op.
    """
    if subresource == "status":
        result = copy.deepcopy(old)
        if "status" in new:
            result["status"] = copy.deepcopy(new["status"])
        else:
            result.pop("status", None)
        return result
    result = copy.deepcopy(new)
    meta = result["metadata"]
    for key in _SERVER_META:
        if key in old["metadata"]:
            meta[key] = old["metadata"][key]
        else:
            meta.pop(key, None)
    meta.pop("generateName", None)
    if "generateName" in old["metadata"]:
        meta["generateName"] = old["metadata"]["generateName"]
    if rt.status_subresource:
        if "status" in old:
            result["status"] = copy.deepcopy(old["status"])
        else:
            result.pop("status", None)
    if rt.tracks_generation and _content(result, status_too=rt.status_subresource) != _content(
        old, status_too=rt.status_subresource
    ):
        meta["generation"] = int(old["metadata"].get("generation", 0)) + 1
    _check_finalizers(rt, old, result)
    return result


def _check_finalizers(rt: ResourceType, old: JSON, new: JSON) -> None:
    if "deletionTimestamp" not in old["metadata"]:
        return
    added = set(new["metadata"].get("finalizers", ())) - set(old["metadata"].get("finalizers", ()))
    if added:
        raise invalid(
            rt,
            old["metadata"]["name"],
            [
                {
                    "reason": "FieldValueForbidden",
                    "message": "Forbidden: no new finalizers can be added if the object is being "
                    f"deleted, found new finalizers {sorted(added)}",
                    "field": "metadata.finalizers",
                }
            ],
        )


def mark_deleting(rt: ResourceType, obj: JSON) -> JSON:
    """A DELETE of an object with finalizers: stamp it and keep it (generation moves, as real)."""
    result = copy.deepcopy(obj)
    meta = result["metadata"]
    if "deletionTimestamp" in meta:
        return result
    meta["deletionTimestamp"] = now()
    meta["deletionGracePeriodSeconds"] = 0
    if rt.tracks_generation:
        meta["generation"] = int(meta.get("generation", 0)) + 1
    return result


def finished_deleting(obj: JSON) -> bool:
    """An object being deleted whose last finalizer is gone must now really go."""
    meta = obj["metadata"]
    return "deletionTimestamp" in meta and not meta.get("finalizers")


def check_preconditions(rt: ResourceType, obj: JSON, options: Any) -> None:
    """DeleteOptions.preconditions: uid and resourceVersion must match, else 409 Conflict."""
    pre = options.get("preconditions") if isinstance(options, dict) else None
    if not isinstance(pre, dict):
        return
    meta = obj["metadata"]
    for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        want = pre.get(key)
        if want is not None and want != meta.get(key):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rt.qualified} "{meta["name"]}": Precondition '
                f"failed: {label} in precondition: {want}, {label} in object meta: {meta.get(key)}",
                details={"name": meta["name"], "group": rt.group, "kind": rt.plural},
            )
