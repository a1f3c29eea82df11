"""LIST with resourceVersion semantics, selectors, and limit/continue paging.

The list's ``metadata.resourceVersion`` is what a controller starts its watch from, so it must be
the store's revision at the moment of the list, not the largest item revision. Pages after the
first come from the same snapshot (rebuilt from the history), and a continue token whose snapshot
has been compacted is 410 Expired with a fresh token, as on the real server. The token is the real
server's shape (base64 JSON with ``rv`` and ``start``) but clients must treat it as opaque anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import JSON, ApiError, bad_request, expired
from .resources import ResourceType
from .selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector
from .store import Store, key_of

_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can start "
    "a new list without the continue parameter, or use the continue token in this response to "
    "retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)


@dataclass(frozen=True)
class Filter:
    """Which objects a list or watch request is about."""

    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector

    def matches(self, obj: JSON) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    @property
    def selective(self) -> bool:
        return bool(self.labels.requirements or self.fields.terms)


def request_filter(rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> Filter:
    return Filter(
        namespace=namespace,
        labels=parse_label_selector(query.get("labelSelector")),
        fields=parse_field_selector(query.get("fieldSelector"), allowed=rt.field_selectors),
    )


def parse_rv(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f'invalid resource version "{text}"') from None
    if value < 0:
        raise bad_request(f'invalid resource version "{text}"')
    return value


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    token = {"v": "meta.k8s.io/v1", "rv": rv, "start": f"{key[0]}/{key[1]}\x00"}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def _decode_continue(text: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        token = json.loads(raw)
        namespace, _, name = str(token["start"]).rstrip("\x00").partition("/")
        return int(token["rv"]), (namespace, name)
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad_request(f"continue key is not valid: {text!r}") from None


def list_objects(store: Store, rt: ResourceType, flt: Filter, query: Mapping[str, str]) -> JSON:
    rv_text, cont = query.get("resourceVersion"), query.get("continue")
    match = query.get("resourceVersionMatch")
    after: tuple[str, str] | None = None
    at: int | None = None
    if cont:
        if rv_text:
            raise bad_request("specifying resource version is not allowed when using continue")
        token_rv, after = _decode_continue(cont)
        at = token_rv if token_rv > 0 else None  # rv -1: continue inconsistently, from now
        if at is not None and at < store.floor(rt):
            raise expired(_CONTINUE_EXPIRED, continue_token=_encode_continue(-1, after))
    elif match == "Exact":
        if not rv_text:
            raise bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided"
            )
        at = parse_rv(rv_text)
        if at > store.rv:
            raise _too_large(at, store.rv)
    elif rv_text:
        wanted = parse_rv(rv_text)
        if wanted > store.rv:
            raise _too_large(wanted, store.rv)
    elif match:
        raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
    snapshot_rv = at if at is not None else store.rv
    items = [o for o in store.items(rt, at=at) if flt.matches(o)]
    if after is not None:
        items = [o for o in items if key_of(o) > after]
    meta: JSON = {"resourceVersion": str(snapshot_rv)}
    limit = _limit(query.get("limit"))
    if 0 < limit < len(items):
        meta["continue"] = _encode_continue(snapshot_rv, key_of(items[limit - 1]))
        if not flt.selective:
            meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    return {"apiVersion": rt.api_version, "kind": rt.list_kind, "metadata": meta, "items": items}


def _limit(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        raise bad_request(f"limit: invalid value {text!r}") from None


def _too_large(wanted: int, current: int) -> ApiError:
    # The real server waits up to 3 s for the revision to appear first; the fake answers at once.
    return ApiError(
        504,
        "Timeout",
        f"Too large resource version: {wanted}, current: {current}",
        details={
            "causes": [
                {
                    "reason": "ResourceVersionTooLarge",
                    "message": f"Too large resource version: {wanted}, current: {current}",
                }
            ],
            "retryAfterSeconds": 1,
        },
    )
