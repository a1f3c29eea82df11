"""Compile `spec.protection`: the brute-force blocks of a policy.

Keys use the rate limits' syntax (`sourceIP`, `claim:<dotted.path>`, `header:<name>`) but not
`global`: one shared block would let any client lock everybody out. Windows and block lengths
are parsed once here; each protection gets the prefix of its block keys, so two policies (or two
protections of one policy) never share a counter. The MSG_* text is shared with the CRD's CEL rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from authz.errors import Problem
from authz.ratelimit.blocks import Protection
from authz.ratelimit.spec import WINDOW_TOO_LONG, KeyKind, parse_key, parse_window

MSG_UNIQUE_PROTECTIONS: Final = "bruteForce names must be unique"
MSG_FAILURE_WINDOW_MAX: Final = "window must be at most 1d"
MSG_BLOCK_FOR_MAX: Final = "blockFor must be at most 31d"
#: Failure windows beyond a day would hold a client's mistakes against it for too long.
MAX_WINDOW_SECONDS: Final = 86400


def compile_protection(
    raw: Mapping[str, Any] | None, *, policy: str, problems: list[Problem]
) -> tuple[Protection, ...]:
    if not raw:
        return ()
    where = "spec.protection.bruteForce"
    out: list[Protection] = []
    names: set[str] = set()
    for index, item in enumerate(raw.get("bruteForce", [])):
        at = f"{where}[{index}]"
        name = item["name"]
        if name in names:
            problems.append(Problem(where, MSG_UNIQUE_PROTECTIONS))
        names.add(name)
        try:
            key = parse_key(item["key"])
        except ValueError as exc:
            problems.append(Problem(f"{at}.key", str(exc)))
            continue
        if key.kind is KeyKind.GLOBAL:
            problems.append(
                Problem(f"{at}.key", "must be sourceIP, claim:<dotted.path> or header:<name>")
            )
            continue
        try:
            window = parse_window(item["window"])
            if window > MAX_WINDOW_SECONDS:
                raise ValueError(MSG_FAILURE_WINDOW_MAX)
        except ValueError as exc:
            text = MSG_FAILURE_WINDOW_MAX if str(exc) == WINDOW_TOO_LONG else str(exc)
            problems.append(Problem(f"{at}.window", text))
            continue
        try:
            block = parse_window(item["blockFor"])
        except ValueError as exc:
            text = MSG_BLOCK_FOR_MAX if str(exc) == WINDOW_TOO_LONG else str(exc)
            problems.append(Problem(f"{at}.blockFor", text))
            continue
        out.append(
            Protection(
                name=name,
                key=key,
                max_failures=int(item["maxFailures"]),
                window_ms=window * 1000,
                block_ms=block * 1000,
                prefix=f"{policy}:{name}",
                policy=policy,
                window_text=item["window"],
                block_text=item["blockFor"],
            )
        )
    return tuple(out)
