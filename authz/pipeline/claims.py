"""Read claims by dotted path, and render them as header values.

Header values are rendered conservatively: strings as they are, numbers and booleans as JSON
would write them, arrays joined with "," (what Istio users asked for), objects as compact
JSON. A value that could split or smuggle a header (CR, LF, NUL) or is absurdly long renders
as None, and a header with no value is removed rather than sent empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

MAX_HEADER_VALUE = 8192
#: What could split or smuggle a header.
_UNSAFE = re.compile("[\r\n\0]")
_MISSING = object()


def claim_at(claims: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The claim at a dotted path, or None when any step is missing.

    A claim whose own name contains dots (e.g. "https://example.com/roles") is found too: the
    whole path is tried as one name first.
    """
    whole = claims.get(".".join(path), _MISSING)
    if whole is not _MISSING:
        return whole
    node: Any = claims
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return None


def header_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        parts = [_scalar(v) for v in value]
        if any(p is None for p in parts):
            return None
        text = ",".join(p for p in parts if p is not None)
    elif isinstance(value, dict):
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    else:
        scalar = _scalar(value)
        if scalar is None:
            return None
        text = scalar
    if not text or len(text) > MAX_HEADER_VALUE or _UNSAFE.search(text):
        return None
    return text


def granted_scopes(claims: Mapping[str, Any], scope_claim: Sequence[str] | None) -> frozenset[str]:
    """Scopes granted by a token: the configured claim, else "scope" (space-separated), then "scp"."""
    if scope_claim is not None:
        candidates = [claim_at(claims, scope_claim)]
    else:
        candidates = [claims.get("scope"), claims.get("scp")]
    for value in candidates:
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list):
            return frozenset(v for v in value if isinstance(v, str))
    return frozenset()
