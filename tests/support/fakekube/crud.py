"""Create, replace, patch and delete, in the order the real API server runs the steps.

decode -> check type/name/namespace -> prune unknown fields -> preconditions (resourceVersion)
-> strategy (server-owned metadata, generation, status split) -> schema validation -> storage.
The order matters to a client: a stale resourceVersion is a 409 even when the body is also invalid,
and a patch is applied to the stored object before anything else is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import objects
from .errors import (
    JSON,
    ApiError,
    bad_request,
    conflict,
    invalid,
    not_found,
    unsupported_media_type,
)
from .patches import json_patch, merge_patch
from .resources import ResourceType
from .schema import StructuralSchema
from .store import Store

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_CR_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)


@dataclass
class Reply:
    code: int
    body: JSON
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict | Warn | Ignore, as the fieldValidation parameter


class Writer:
    """Every write the API offers, for any registered type, against one store."""

    def __init__(self, store: Store, schemas: dict[ResourceType, StructuralSchema]) -> None:
        self._store = store
        self._schemas = schemas

    # -- admission ---------------------------------------------------------------------------

    def _prune(self, rt: ResourceType, obj: JSON, opts: WriteOptions) -> tuple[JSON, list[str]]:
        schema = self._schemas.get(rt)
        if schema is None:
            return obj, []
        pruned, dropped = schema.prune(obj)
        if dropped and opts.field_validation == "Strict":
            fields = ", ".join(f'unknown field "{p}"' for p in dropped)
            raise bad_request(f"strict decoding error: {fields}")
        if opts.field_validation == "Ignore":
            return pruned, []
        return pruned, [f'unknown field "{p}"' for p in dropped]

    def _validate(self, rt: ResourceType, obj: JSON) -> None:
        schema = self._schemas.get(rt)
        causes = schema.validate(obj) if schema is not None else []
        if causes:
            raise invalid(rt, obj["metadata"].get("name", ""), causes)

    # -- verbs -------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: object, opts: WriteOptions) -> Reply:
        obj = objects.check_identity(rt, body, namespace=namespace, name=None)
        obj, warnings = self._prune(rt, obj, opts)
        obj = objects.prepare_create(rt, obj)
        self._validate(rt, obj)
        return Reply(201, self._store.create(rt, obj, dry_run=opts.dry_run), warnings)

    def replace(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: object,
        opts: WriteOptions,
        *,
        subresource: str | None,
    ) -> Reply:
        old = self._store.get(rt, namespace, name)
        if old is None:
            if rt.allow_create_on_update and subresource is None:
                return self.create(rt, namespace, body, opts)
            raise not_found(rt, name)
        new = objects.check_identity(rt, body, namespace=namespace, name=name)
        new, warnings = self._prune(rt, new, opts)
        rv = new["metadata"].get("resourceVersion")
        if not rv and not rt.allow_unconditional_update:
            cause = {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: 0x0: must be specified for an update",
                "field": "metadata.resourceVersion",
            }
            raise invalid(rt, name, [cause])
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        return self._update(rt, old, new, opts, subresource=subresource, warnings=warnings)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: object,
        content_type: str,
        opts: WriteOptions,
        *,
        subresource: str | None,
    ) -> Reply:
        accepted = _CR_PATCH_TYPES if rt.custom else (*_CR_PATCH_TYPES, STRATEGIC_PATCH)
        if content_type not in accepted:
            raise unsupported_media_type(content_type, accepted)
        if content_type == APPLY_PATCH:
            # Simplification: server-side apply (field managers, ownership) is not implemented.
            raise unsupported_media_type(content_type + " (not implemented by fakekube)", accepted)
        old = self._store.get(rt, namespace, name)
        if old is None:
            raise not_found(rt, name)
        if content_type == JSON_PATCH:
            patched = json_patch(old, patch)
        elif isinstance(patch, dict):
            # Strategic merge of a Lease or Event has no list merge keys to honour, so it is a
            # plain merge patch for the built-in types served here.
            patched = merge_patch(old, patch)
        else:
            raise bad_request("the body of a merge patch must be a JSON object")
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not a JSON object")
        rv = (patched.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        new = objects.check_identity(rt, patched, namespace=namespace, name=name)
        new, warnings = self._prune(rt, new, opts)
        return self._update(rt, old, new, opts, subresource=subresource, warnings=warnings)

    def _update(
        self,
        rt: ResourceType,
        old: JSON,
        new: JSON,
        opts: WriteOptions,
        *,
        subresource: str | None,
        warnings: list[str],
    ) -> Reply:
        result = objects.prepare_update(rt, old, new, subresource=subresource)
        self._validate(rt, result)
        if objects.finished_deleting(result):
            return Reply(200, self._store.delete(rt, old, dry_run=opts.dry_run), warnings)
        return Reply(200, self._store.update(rt, old, result, dry_run=opts.dry_run), warnings)

    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: object, opts: WriteOptions
    ) -> Reply:
        old = self._store.get(rt, namespace, name)
        if old is None:
            raise not_found(rt, name)
        objects.check_preconditions(rt, old, options)
        if old["metadata"].get("finalizers"):
            pending = objects.mark_deleting(rt, old)
            return Reply(200, self._store.update(rt, old, pending, dry_run=opts.dry_run))
        self._store.delete(rt, old, dry_run=opts.dry_run)
        details: JSON = {"name": name, "group": rt.group, "kind": rt.plural}
        details["uid"] = old["metadata"]["uid"]
        if not rt.group:
            del details["group"]
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        return Reply(200, {**status, "details": details})

    def delete_all(self, rt: ResourceType, victims: list[JSON], opts: WriteOptions) -> Reply:
        """DELETE on a collection: every object in ``victims`` (already selector-filtered)."""
        deleted = []
        for obj in victims:
            meta = obj["metadata"]
            try:
                self.delete(rt, meta.get("namespace", ""), meta["name"], None, opts)
            except ApiError as err:
                if err.code != 404:
                    raise
                continue
            deleted.append(obj)
        meta_out = {"resourceVersion": str(self._store.rv)}
        body = {"apiVersion": rt.api_version, "kind": rt.list_kind, "metadata": meta_out}
        return Reply(200, {**body, "items": deleted})
