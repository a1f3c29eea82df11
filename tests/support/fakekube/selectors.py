"""Label and field selectors with the API server's grammar and matching rules.

A controller that narrows its list+watch with ``labelSelector`` must see exactly the objects the
real server would send, including the edge cases that bite: ``a!=b`` and ``a notin (x)`` match
objects without label ``a``, ``!a`` is existence negation, and ``in``/``notin`` lists contain commas
that do not separate requirements. A malformed selector is a 400, as on the real server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*$")
_BINARY = re.compile(rf"^\s*({_KEY})\s*(==|!=|=|>|<)\s*(\S*)\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")

Matcher = Callable[[dict[str, str]], bool]


@dataclass(frozen=True)
class LabelSelector:
    """A parsed labelSelector: every requirement must hold (they are ANDed)."""

    text: str
    requirements: tuple[Matcher, ...]

    def matches(self, labels: dict[str, str] | None) -> bool:
        have = labels or {}
        return all(req(have) for req in self.requirements)


def _split_requirements(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _value(text: str, whole: str) -> str:
    if not re.fullmatch(_VALUE, text) or len(text) > 63:
        raise bad_request(
            f"unable to parse requirement: invalid label value: {text!r} in {whole!r}"
        )
    return text


def _requirement(part: str, whole: str) -> Matcher:
    if m := _SET.match(part):
        key, op = m.group(1), m.group(3)
        values = frozenset(_value(v.strip(), whole) for v in m.group(4).split(","))
        if op == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    if m := _BINARY.match(part):
        key, op, raw = m.group(1), m.group(3), m.group(4)
        if op in ("<", ">"):
            try:
                bound = int(raw)
            except ValueError:
                raise bad_request(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                    f"an integer: {whole!r}"
                ) from None
            return _compare(key, op, bound)
        value = _value(raw, whole)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: key in labels and labels[key] == value
    if m := _EXISTS.match(part):
        negate, key = m.group(1) == "!", m.group(2)
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: found {part.strip()!r} in {whole!r}")


def _compare(key: str, op: str, bound: int) -> Matcher:
    def check(labels: dict[str, str]) -> bool:
        try:
            have = int(labels[key])
        except (KeyError, ValueError):
            return False
        return have > bound if op == ">" else have < bound

    return check


def parse_label_selector(text: str | None) -> LabelSelector:
    if text is None or not text.strip():
        return LabelSelector("", ())
    reqs = tuple(_requirement(part, text) for part in _split_requirements(text))
    return LabelSelector(text, reqs)


@dataclass(frozen=True)
class FieldSelector:
    """A parsed fieldSelector: ``path=value``, ``path==value`` or ``path!=value`` terms, ANDed."""

    terms: tuple[tuple[str, bool, str], ...]

    def matches(self, obj: dict[str, Any]) -> bool:
        for path, equal, value in self.terms:
            have = _lookup(obj, path)
            if (have == value) != equal:
                return False
        return True


def _lookup(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    return node if isinstance(node, str) else str(node)


def parse_field_selector(text: str | None, *, allowed: tuple[str, ...]) -> FieldSelector:
    if text is None or not text.strip():
        return FieldSelector(())
    terms = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*", part)
        if m is None:
            raise bad_request(f"invalid selector: {text!r}; can't understand {part!r}")
        path, op, value = m.group(1), m.group(2), m.group(3)
        if path not in allowed:
            raise _unknown_field(path, allowed)
        terms.append((path, op != "!=", value))
    return FieldSelector(tuple(terms))


def _unknown_field(path: str, allowed: tuple[str, ...]) -> ApiError:
    listed = ", ".join(f'"{a}"' for a in allowed)
    return bad_request(f"field label not supported: {path} (supported: {listed})")
