"""The compiled schema check agrees with jsonschema: a document it accepts has no problems."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from authz.policy import schema
from authz.policy.fastschema import Unsupported, compile_schema
from tests.policy.test_schema import VALID
from tests.support.tiers import examples

KEYWORD_CASES: list[tuple[dict[str, Any], list[Any]]] = [
    ({"type": "integer"}, [1, 0, -3, True, 1.0, 1.5, "1", None]),
    ({"type": "number"}, [1, 1.5, -0.0, math.inf, False, "1", None]),
    ({"type": "boolean"}, [True, False, 0, 1, "true", None]),
    ({"type": "null"}, [None, 0, "", False]),
    ({"type": "string"}, ["", "x", 1, None, b"x"]),
    ({"type": "array"}, [[], [1], (), {}, "ab"]),
    ({"type": "object"}, [{}, {"a": 1}, [], "x"]),
    ({"type": ["string", "null"]}, ["x", None, 1, []]),
    ({"enum": ["a", "b"]}, ["a", "b", "c", 1, None, ["a"], {"a": 1}]),
    ({"type": "string", "enum": ["1", "True"]}, ["1", 1, True, "True"]),
    ({"type": "string", "pattern": "b+"}, ["abba", "a", "", 7]),
    ({"type": "string", "pattern": "^a$"}, ["a", "ab", "ba", "a\n"]),
    ({"pattern": "^a"}, ["ab", "b", 5, None, ["b"]]),
    (
        {"type": "string", "minLength": 2, "maxLength": 3},
        ["a", "ab", "abc", "abcd", "\u00e9\u00e9"],
    ),
    ({"maxLength": 1}, ["", "ab", 10, ["a", "b"]]),
    ({"type": "array", "minItems": 1, "maxItems": 2}, [[], [1], [1, 2], [1, 2, 3], "ab"]),
    ({"minItems": 1}, [[], [1], "", {}]),
    ({"type": "array", "items": {"type": "string"}}, [[], ["a"], ["a", 1], [None]]),
    ({"items": {"type": "integer"}}, [[1, 2], [1, "2"], "12", 3]),
    ({"type": "integer", "minimum": 0, "maximum": 10}, [0, 10, -1, 11, 5]),
    ({"minimum": 1}, [0, 1, 0.5, "0", None, True, False]),
    ({"maximum": 1.5}, [1, 2, 1.5, -math.inf, math.inf]),
    (
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        [{"a": "x"}, {}, {"a": 1}, {"a": "x", "b": 2}, {1: "x"}, []],
    ),
    (
        {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
        [{}, {"a": 1}, {"b": 1}, {"a": 1, "b": 2}, {1: 1}],
    ),
    (
        {"type": "object", "additionalProperties": {"type": "string"}},
        [{}, {"a": "x"}, {"a": 1}, {"a": "x", "b": None}],
    ),
    ({"required": ["a"]}, [{"a": None}, {}, [], "a"]),
    ({"properties": {"a": {"type": "integer"}}}, [{"a": 1}, {"a": "1"}, "x", 5]),
    ({"description": "anything", "format": "uri", "default": 3}, [1, "not a uri", None]),
    ({}, [1, None, {}, [], "x"]),
]


@pytest.mark.parametrize(("keywords", "instances"), KEYWORD_CASES)
def test_each_keyword_answers_as_draft4_does(
    keywords: dict[str, Any], instances: list[Any]
) -> None:
    valid = compile_schema(keywords)
    reference = Draft4Validator(keywords)
    assert [valid(i) for i in instances] == [reference.is_valid(i) for i in instances]


@pytest.mark.parametrize(
    "keywords",
    [
        {"anyOf": [{"type": "string"}]},
        {"$ref": "#/definitions/x"},
        {"type": "string", "exclusiveMinimum": True, "minimum": 1},
        {"patternProperties": {"^a": {}}},
        {"items": [{"type": "string"}]},
        {"enum": ["a", 1]},
        {"type": "decimal"},
        {"properties": {"a": {"uniqueItems": True}}},
    ],
)
def test_anything_else_turns_the_fast_path_off(keywords: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        compile_schema(keywords)


def test_the_crds_schema_gets_the_fast_path() -> None:
    # If the CRD grows a keyword the predicates do not mirror, every load gets 10x slower:
    # teach fastschema.py the keyword rather than let this pass.
    assert schema._valid() is not None


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 100_000)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["GET", "RS256", "enforce", "/x/*", "a.example.com", "x-user"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*path, index))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """VALID with a few of its values replaced, removed, or joined by a stranger."""
    document: dict[str, Any] = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        if not path:
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON)
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON)
        else:
            parent.append(draw(JSON))
    return document


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_the_fast_answer_is_jsonschemas_answer(document: dict[str, Any]) -> None:
    valid = schema._valid()
    assert valid is not None
    assert valid(document) == schema._validator().is_valid(document)
    if valid(document):
        assert schema.validate_document(document) == []


def test_an_array_remembered_valid_vouches_only_for_equal_content() -> None:
    check = compile_schema(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "s": {"type": "string"}},
            },
        }
    )
    assert check([{"n": 1, "s": "a"}])
    assert check([{"n": 1, "s": "a"}])
    # Equal to the remembered array under ==, but not the same content: checked afresh.
    assert not check([{"n": 1.0, "s": "a"}])
    assert not check([{"n": True, "s": "a"}])
    assert not check([{"n": 1, "s": 1}])
    assert check([{"n": 1, "s": "a"}])
