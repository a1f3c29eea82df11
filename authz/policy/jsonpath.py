"""A deliberately small JSONPath: the selectors a redaction needs, compiled once, applied in place.

Supported (RFC 9535 notation, a subset): `$` (the document), `.name` and `['name']` (a member),
`[n]` (an array element, counted from 0; `[-1]` is the last), `[*]` and `.*` (every element or
member), `..name` and `..*` (descendants at any depth). Filters, slices, unions and functions
are refused at load: a redaction path must say plainly which fields it covers, and a selector
that runs user-supplied expressions per response is cost and attack surface the check path does
not need. The maintained JSONPath libraries on PyPI (jsonpath-ng and its kin) evaluate through
generic ASTs and accept far more than this subset; here each path is compiled at load into a
chain of closures, one per selector, so a response pays only for the nodes it visits and the
accepted syntax is exactly the documented one (bench/redaction.py measures it). `..` walks with
an explicit stack, never recursion, so a deep document cannot exhaust the stack.

A path never selects the document itself (`$` alone is refused): the response must stay a JSON
document of the same shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
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
    walk: Walk = field(compare=False, repr=False)


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
    return JsonPath(text, tuple(selectors), _chain(tuple(selectors)))


#: Called with (container, key) for each selected node; may replace or delete it.
Visit = Callable[[Any, Any], None]
#: A compiled path: walks a document and calls the visit for each selected node.
Walk = Callable[[Any, Visit], None]
_CONTAINERS = (dict, list)


def apply(path: JsonPath, document: Any, visit: Visit) -> None:
    """Call `visit(container, key)` for every node `path` selects in `document`.

    The keys of a container are collected before any of them is visited, so a visit that
    deletes does not disturb the walk; list elements are visited from the last to the first,
    so deleting one keeps the indices of those still to come."""
    path.walk(document, visit)


def _chain(selectors: tuple[Selector, ...]) -> Walk:
    """One closure per selector, each calling the next: no interpretation per node."""
    walk: Walk | None = None
    for selector in reversed(selectors):
        walk = _step(selector, walk)
    assert walk is not None
    return walk


def _step(selector: Selector, then: Walk | None) -> Walk:
    name, index = selector.name, selector.index
    if selector.kind is Kind.MEMBER:

        def member(node: Any, visit: Visit) -> None:
            if type(node) is dict and name in node:
                if then is None:
                    visit(node, name)
                else:
                    then(node[name], visit)

        return member
    if selector.kind is Kind.INDEX:

        def element(node: Any, visit: Visit) -> None:
            if type(node) is list and -len(node) <= index < len(node):
                if then is None:
                    visit(node, index % len(node))
                else:
                    then(node[index], visit)

        return element
    if selector.kind is Kind.WILDCARD:

        def every(node: Any, visit: Visit) -> None:
            if type(node) is dict:
                keys: Any = list(node)
            elif type(node) is list:
                keys = range(len(node) - 1, -1, -1)
            else:
                return
            if then is None:
                for key in keys:
                    visit(node, key)
            else:
                for key in keys:
                    then(node[key], visit)

        return every

    def descendants(node: Any, visit: Visit) -> None:
        for container, key in _descendants(node, name):
            if then is None:
                visit(container, key)
            else:
                then(container[key], visit)

    return descendants


def _descendants(node: Any, name: str | None) -> list[tuple[Any, Any]]:
    """Every (container, key) below `node` whose key is `name` (None: every one), found
    without recursion so a deep document cannot exhaust the stack."""
    found: list[tuple[Any, Any]] = []
    stack = [node] if type(node) in _CONTAINERS else []
    push, pop = stack.append, stack.pop
    while stack:
        current = pop()
        if type(current) is dict:
            if name is None:
                found.extend((current, key) for key in current)
            elif name in current:
                found.append((current, name))
            children: Any = current.values()
        else:
            if name is None:
                found.extend((current, i) for i in range(len(current)))
            children = current
        for child in children:
            if type(child) in _CONTAINERS:
                push(child)
    # Reversed, a node comes before its ancestors and a list's elements from the last.
    found.reverse()
    return found
