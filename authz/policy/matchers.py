"""Host and path patterns, compiled once at policy load.

Paths: "*" matches exactly one non-empty segment, "{name}" too and captures it as a path
parameter, a trailing "/**" matches the prefix itself and anything below it, everything else is
literal. Patterns are matched against the normalized request path (see pipeline.steps.path), so
a pattern must itself be normalized: no "." or ".." segments and no "//". A captured parameter is
percent-decoded: the normal form keeps reserved characters encoded, and a claim it is compared
with holds them plain (an encoded "/" never gets this far: the path step refuses it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
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
    seen: set[str] = set()
    for index, segment in enumerate(segments):
        if "{" in segment or "}" in segment:
            param = _PARAM.fullmatch(segment)
            if param is None:
                return '"{name}" must be a whole segment ("/a/{id}/b"), name a letter or _ then letters, digits, _'
            if param.group(1) in seen:
                return f"the parameter {segment} is used twice in this path"
            seen.add(param.group(1))
        if segment in (".", ".."):
            return "must not contain . or .. segments"
        if segment == "**":
            if index != len(segments) - 1:
                return '"**" is allowed only as the last segment ("/prefix/**")'
        elif "*" in segment and segment != "*":
            return '"*" must be a whole segment ("/a/*/b"), not part of one'
    return None


def path_parameters(pattern: str) -> list[str]:
    """The names a pattern captures ("/t/{tenant}/o/{id}" -> tenant, id)."""
    return _PARAM.findall(pattern)


def _is_literal(pattern: str) -> bool:
    return "*" not in pattern and "{" not in pattern


def _pattern_regex(pattern: str, *, capture: bool = False) -> str:
    segments = pattern.split("/")[1:]
    out = ""
    for segment in segments:
        if segment == "**":
            return out + "(?:/.*)?"
        param = _PARAM.fullmatch(segment)
        if param is not None:
            out += f"/(?P<{param.group(1)}>[^/]+)" if capture else "/[^/]+"
        else:
            out += "/[^/]+" if segment == "*" else "/" + re.escape(segment)
    return out


@dataclass(frozen=True, slots=True)
class PathMatcher:
    """Matches a normalized path against a rule's patterns: a set lookup, then one regex."""

    exact: frozenset[str]
    regex: re.Pattern[str] | None
    #: One regex per pattern with parameters, in order, each capturing them by name.
    captures: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def compile(cls, patterns: Iterable[str]) -> PathMatcher:
        patterns = list(patterns)
        exact = {p for p in patterns if _is_literal(p)}
        wild = [p for p in patterns if not _is_literal(p)]
        regex = re.compile("|".join(f"(?:{_pattern_regex(p)})" for p in wild)) if wild else None
        captures = tuple(
            re.compile(_pattern_regex(p, capture=True)) for p in wild if path_parameters(p)
        )
        return cls(frozenset(exact), regex, captures)

    def matches(self, path: str) -> bool:
        if path in self.exact:
            return True
        return self.regex is not None and self.regex.fullmatch(path) is not None

    def parameters(self, path: str) -> dict[str, str]:
        """The parameters of the first pattern with parameters that matches (none: empty)."""
        for regex in self.captures:
            found = regex.fullmatch(path)
            if found is not None:
                return {k: unquote(v) if "%" in v else v for k, v in found.groupdict().items()}
        return {}
