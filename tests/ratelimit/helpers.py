"""Limits and hits for rate-limit tests, built through the same parsing the compiler uses."""

from __future__ import annotations

from authz.ratelimit.limiter import Hit
from authz.ratelimit.spec import (
    Algorithm,
    LimitSpec,
    bucket_prefix,
    parse_key,
    parse_window,
)


def limit(
    requests: int,
    window: str,
    algorithm: Algorithm = Algorithm.SLIDING_WINDOW,
    *,
    name: str = "l",
    key: str = "global",
    policy: str = "test/p",
    rule: str = "r",
) -> LimitSpec:
    seconds = parse_window(window)
    return LimitSpec(
        name=name,
        requests=requests,
        window_ms=seconds * 1000,
        algorithm=algorithm,
        key=parse_key(key),
        prefix=bucket_prefix(
            policy=policy, rule=rule, limit=name, algorithm=algorithm, window_seconds=seconds
        ),
        window_text=window,
    )


def hit(spec: LimitSpec, value: str = "*") -> Hit:
    return Hit(spec, spec.prefix + value)
