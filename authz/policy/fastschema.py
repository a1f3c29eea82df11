"""A compiled yes/no answer to "does jsonschema find any problem in this document?".

jsonschema's iter_errors walks a document through generic machinery (a validator object per
subschema, a generator per keyword) and spends about 0.3 ms on a typical policy: 3 s of the
10 k-policy load. Almost every document is valid, and for a valid one only the answer matters.
So the CRD's schema is also compiled into plain nested predicates, and validate_document asks
them first; only a document they reject goes through iter_errors, which words every problem
exactly as before.

The predicates mirror jsonschema's Draft 4 semantics for the keywords the CRD uses (types as
its draft-4 type checker defines them, `format` not checked since the validator has no format
checker); a schema with any other keyword raises Unsupported and the fast path stays off. The
one property that matters is: a document they accept, iter_errors accepts too. A test walks
mutated documents through both to hold them to it.
"""

from __future__ import annotations

import math
import numbers
import pickle
import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

#: Annotations, and `format`, which the validator does not check (it has no format checker).
_IGNORED = frozenset({"description", "default", "format", "title", "example", "examples"})
_KNOWN = _IGNORED | {
    "type",
    "properties",
    "additionalProperties",
    "required",
    "items",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
}


#: Arrays remembered as valid, per array schema; bounded, emptied when full.
_PASSED_MAX = 1024


class Unsupported(Exception):
    """The schema uses something the predicates do not mirror; validate with jsonschema only."""


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: jsonschema's draft-4 type checker.
_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def compile_schema(schema: Mapping[str, Any]) -> Check:
    """A predicate that is true only for instances Draft4Validator(schema) finds no error in."""
    if not isinstance(schema, Mapping):
        raise Unsupported(f"a subschema must be an object, not {type(schema).__name__}")
    unknown = set(schema) - _KNOWN
    if unknown:
        raise Unsupported(f"keywords {sorted(unknown)}")
    if "items" in schema and not isinstance(schema["items"], Mapping):
        raise Unsupported("items as a list of schemas")
    if "enum" in schema and (
        not isinstance(schema["enum"], list) or not all(isinstance(v, str) for v in schema["enum"])
    ):
        # jsonschema compares a string only with strings (1 is not "1", True is not "True").
        raise Unsupported("an enum of other values than strings")
    kind = schema.get("type")
    # One type (as nearly every node of the CRD has): only that kind's keywords can apply, so
    # one closure checks the type and then just those, in straight-line code.
    if kind == "string":
        return _string(schema)
    if kind == "object" and "enum" not in schema:
        return _object(schema)
    if kind == "array" and "enum" not in schema:
        return _array(schema)
    return _any(schema)


def _bounds(schema: Mapping[str, Any], low: str, high: str) -> tuple[float, float]:
    return schema.get(low, -math.inf), schema.get(high, math.inf)


def _string(schema: Mapping[str, Any]) -> Check:
    allowed = frozenset(schema["enum"]) if "enum" in schema else None
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
    low, high = _bounds(schema, "minLength", "maxLength")

    def check(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if allowed is not None and value not in allowed:
            return False
        if not low <= len(value) <= high:
            return False
        # jsonschema searches: a pattern is anchored only by its own ^ and $.
        return pattern is None or pattern.search(value) is not None

    return check


def _object(schema: Mapping[str, Any]) -> Check:
    properties = {name: compile_schema(sub) for name, sub in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    forbid_extra = extra is False
    extra_check = None if isinstance(extra, bool) else compile_schema(extra)
    required = frozenset(schema.get("required", ()))
    find = properties.get

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return False
        for name, item in value.items():
            test = find(name)
            if test is not None:
                if not test(item):
                    return False
            elif forbid_extra or (extra_check is not None and not extra_check(item)):
                return False
        return value.keys() >= required

    return check


def _content_key(value: Any) -> bytes | None:
    """Equal only for equal content (a pickle tells 1, 1.0 and True apart); None if not data."""
    try:
        return pickle.dumps(value, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


def _array(schema: Mapping[str, Any]) -> Check:
    item = compile_schema(schema["items"]) if "items" in schema else None
    low, high = _bounds(schema, "minItems", "maxItems")
    # Arrays of objects (issuers, rules) are what many policies repeat word for word: their
    # verdict is remembered by content, so a repeated one costs a pickle instead of a walk.
    objects = item is not None and schema["items"].get("type") == "object"
    passed: set[bytes] = set()

    def check(value: Any) -> bool:
        if not isinstance(value, list) or not low <= len(value) <= high:
            return False
        if item is not None:
            key = _content_key(value) if objects and value else None
            if key is not None and key in passed:
                return True
            for element in value:
                if not item(element):
                    return False
            if key is not None:
                if len(passed) >= _PASSED_MAX:
                    passed.clear()
                passed.add(key)
        return True

    return check


def _any(schema: Mapping[str, Any]) -> Check:
    """No type, several types or a rare one: every keyword applies to the kind it is about."""
    kinds = schema.get("type")
    names = [] if kinds is None else kinds if isinstance(kinds, list) else [kinds]
    try:
        types = [_TYPES[name] for name in names]
    except (KeyError, TypeError):
        raise Unsupported(f"type {kinds!r}") from None
    allowed = frozenset(schema["enum"]) if "enum" in schema else None
    as_object = _object({k: v for k, v in schema.items() if k != "type"})
    as_array = _array({k: v for k, v in schema.items() if k != "type"})
    as_string = _string({k: v for k, v in schema.items() if k not in {"type", "enum"}})
    low, high = _bounds(schema, "minimum", "maximum")

    def check(value: Any) -> bool:
        if types and not any(test(value) for test in types):
            return False
        if allowed is not None and not (isinstance(value, str) and value in allowed):
            return False
        if isinstance(value, dict):
            return as_object(value)
        if isinstance(value, list):
            return as_array(value)
        if isinstance(value, str):
            return as_string(value)
        if _is_number(value):
            return bool(low <= value <= high)
        return True

    return check
