"""A deliberately small JSONPath: the selectors a redaction needs, compiled once, applied in place.

Supported (RFC 9535 notation, a subset): `$` (the document), `.name` and `['name']` (a member),
`[n]` (an array element, counted from 0; `[-1]` is the last), `[*]` and `.*` (every element or
member), `..name` and `..*` (descendants at any depth). Filters, slices, unions and functions
are refused at load: a redaction path must say plainly which fields it covers, and a selector
that runs user-supplied expressions per response is cost and attack surface the check path does
not need. The maintained JSONPath libraries on PyPI evaluate through generic ASTs at several
times the cost per node and none keeps to this subset, so compiling the few selectors here
keeps the per-response cost bounded and the accepted syntax exact.

A path never selects the document itself (`$` alone is refused): the response must stay a JSON
document of the same shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

#: The longest path accepted, in selectors: deeper fields are reached with `..name`.
MAX_SELECTORS = 32

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"\[(-?[0-9]{1,9})\]")
_QUOTED = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")
_ESCAPE = re.compile(r"\\(.)")


class Kind(Enum):
    MEMBER = "member"
    INDEX = "index"
    WILDCARD = "wildcard"
    DESCENDANT = "descendant"  # a member of this name at any depth (None: every node)


@dataclass(frozen=True, slots=True)
class Selector:
    kind: Kind
    name: str | None = None
    index: int = 0


@dataclass(frozen=True, slots=True)
class JsonPath:
    text: str
    selectors: tuple[Selector, ...]


class JsonPathError(ValueError):
    """A path outside the supported syntax; the message says where and what is allowed."""


_SYNTAX = "use $, .name, ['name'], [n], [*], .* or ..name"


def compile_path(text: str) -> JsonPath:
    if not text.startswith("$"):
        raise JsonPathError(f"must start with $ ({_SYNTAX})")
    selectors: list[Selector] = []
    at = 1
    while at < len(text):
        rest = text[at:]
        if rest.startswith(".."):
            name = _NAME.match(text, at + 2)
            if name:
                selectors.append(Selector(Kind.DESCENDANT, name.group()))
                at = name.end()
            elif text.startswith("*", at + 2):
                selectors.append(Selector(Kind.DESCENDANT))
                at += 3
            else:
                raise JsonPathError(
                    f"at offset {at}: .. must be followed by a name or * ({_SYNTAX})"
                )
        elif rest.startswith(".*"):
            selectors.append(Selector(Kind.WILDCARD))
            at += 2
        elif rest.startswith("."):
            name = _NAME.match(text, at + 1)
            if not name:
                raise JsonPathError(
                    f"at offset {at}: expected a name after . (other names: ['name']; {_SYNTAX})"
                )
            selectors.append(Selector(Kind.MEMBER, name.group()))
            at = name.end()
        elif rest.startswith("[*]"):
            selectors.append(Selector(Kind.WILDCARD))
            at += 3
        elif index := _INDEX.match(text, at):
            selectors.append(Selector(Kind.INDEX, index=int(index.group(1))))
            at = index.end()
        elif quoted := _QUOTED.match(text, at):
            raw = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
            selectors.append(Selector(Kind.MEMBER, _ESCAPE.sub(r"\1", raw)))
            at = quoted.end()
        else:
            raise JsonPathError(f"at offset {at}: unsupported selector ({_SYNTAX})")
        if len(selectors) > MAX_SELECTORS:
            raise JsonPathError(f"more than {MAX_SELECTORS} selectors")
    if not selectors:
        raise JsonPathError("$ alone would replace the whole document; name a field")
    return JsonPath(text, tuple(selectors))


#: Called with (container, key) for each selected node; may replace or delete it.
Visit = Callable[[Any, Any], None]


def apply(path: JsonPath, document: Any, visit: Visit) -> None:
    """Call `visit(container, key)` for every node `path` selects in `document`.

    Keys are collected before any visit, so a visit that deletes does not disturb the walk;
    list elements are visited from the last to the first, so deleting one keeps the indices
    of those still to come."""
    _walk(document, path.selectors, 0, visit)


def _children(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, dict):
        return [(node, key) for key in list(node)]
    if isinstance(node, list):
        return [(node, index) for index in range(len(node) - 1, -1, -1)]
    return []


def _walk(node: Any, selectors: tuple[Selector, ...], at: int, visit: Visit) -> None:
    selector = selectors[at]
    last = at == len(selectors) - 1
    targets: list[tuple[Any, Any]]
    if selector.kind is Kind.MEMBER:
        targets = (
            [(node, selector.name)] if isinstance(node, dict) and selector.name in node else []
        )
    elif selector.kind is Kind.INDEX:
        targets = []
        if isinstance(node, list) and -len(node) <= selector.index < len(node):
            targets = [(node, selector.index % len(node))]
    elif selector.kind is Kind.WILDCARD:
        targets = _children(node)
    else:
        targets = _descendants(node, selector.name)
    for container, key in targets:
        if last:
            visit(container, key)
        else:
            _walk(container[key], selectors, at + 1, visit)


def _descendants(node: Any, name: str | None) -> list[tuple[Any, Any]]:
    """Every (container, key) below `node` whose key is `name` (None: every one), found
    without recursion so a deep document cannot exhaust the stack."""
    found: list[tuple[Any, Any]] = []
    stack = [node] if isinstance(node, dict | list) else []
    while stack:
        current = stack.pop()
        keys = list(current) if isinstance(current, dict) else range(len(current))
        for key in keys:
            if name is None or key == name:
                found.append((current, key))
            child = current[key]
            if isinstance(child, dict | list):
                stack.append(child)
    # Reversed, a node comes before its ancestors and a list's elements from the last.
    found.reverse()
    return found
