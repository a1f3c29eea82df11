"""Host and path patterns, compiled once at policy load.

Paths: "*" matches exactly one non-empty segment, a trailing "/**" matches the prefix itself and
anything below it, everything else is literal. Patterns are matched against the normalized
request path (see authz.pipeline.paths), so a pattern must itself be normalized: no "." or ".."
segments and no "//".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_HOST = re.compile(
    r"(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
)


def normalize_host_pattern(pattern: str) -> str:
    """Lower-case a host pattern; raise ValueError when it is not a host or "*.suffix"."""
    host = pattern.strip().lower().rstrip(".")
    if not _HOST.fullmatch(host):
        raise ValueError(f"{pattern!r} is not a host name or a *.domain wildcard")
    return host


def path_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a usable path pattern, or None."""
    if not pattern.startswith("/"):
        return "must start with /"
    if "?" in pattern or "#" in pattern:
        return "must not contain a query or fragment"
    if "//" in pattern:
        return "must not contain empty segments (//)"
    segments = pattern.split("/")[1:]
    for index, segment in enumerate(segments):
        if segment in (".", ".."):
            return "must not contain . or .. segments"
        if segment == "**":
            if index != len(segments) - 1:
                return '"**" is allowed only as the last segment ("/prefix/**")'
        elif "*" in segment and segment != "*":
            return '"*" must be a whole segment ("/a/*/b"), not part of one'
    return None


def _pattern_regex(pattern: str) -> str:
    segments = pattern.split("/")[1:]
    out = ""
    for segment in segments:
        if segment == "**":
            return out + "(?:/.*)?"
        out += "/[^/]+" if segment == "*" else "/" + re.escape(segment)
    return out


@dataclass(frozen=True, slots=True)
class PathMatcher:
    """Matches a normalized path against a rule's patterns: a set lookup, then one regex."""

    exact: frozenset[str]
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, patterns: Iterable[str]) -> PathMatcher:
        exact = {p for p in patterns if "*" not in p}
        wild = [p for p in patterns if "*" in p]
        regex = re.compile("|".join(f"(?:{_pattern_regex(p)})" for p in wild)) if wild else None
        return cls(frozenset(exact), regex)

    def matches(self, path: str) -> bool:
        if path in self.exact:
            return True
        return self.regex is not None and self.regex.fullmatch(path) is not None
