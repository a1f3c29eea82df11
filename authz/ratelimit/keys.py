"""Bucket keys: a limit's prefix plus the request's key value, encoded so values never collide.

<prefix>=<value>    a short printable value, verbatim (readable in `redis-cli --scan`)
<prefix>#<sha256>   a long or unusual value, hashed (bounded key size; no raw secrets stored)
<prefix>~           the value is missing (claim or header absent, client address unknown):
                    all such requests share this one bucket per limit
<prefix>*           key `global`: one bucket for every request the rule matches
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

MAX_VERBATIM: Final = 64
MISSING: Final = "~"
GLOBAL: Final = "*"


def bucket(prefix: str, value: str | None) -> str:
    if value is None:
        return prefix + MISSING
    if len(value) <= MAX_VERBATIM and value.isascii() and value.isprintable():
        return prefix + "=" + value
    return prefix + "#" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def claim_text(value: Any) -> str | None:
    """A claim as a key value: strings as they are, anything else as compact sorted JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
