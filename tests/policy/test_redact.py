"""The JSONPath subset and the redaction it drives: what each selector picks, what is refused at
load, and hostile bodies (malformed, non-JSON, deep, huge numbers, invalid UTF-8) becoming
Unparseable rather than a crash."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.errors import Problem
from authz.policy.jsonpath import MAX_SELECTORS, JsonPathError, apply, compile_path
from authz.policy.redact import (
    MSG_WITH_REMOVE,
    Redaction,
    Unparseable,
    compile_response_body,
    redact_json,
)

DOC: dict[str, Any] = {
    "ssn": "1",
    "cards": [{"number": "a", "cvv": 1}, {"number": "b"}, "loose"],
    "odd key": {"password": "p0"},
    "profile": {"password": "p1", "nested": [{"password": "p2"}, {"other": 3}]},
}


def selected(text: str, document: Any = DOC) -> list[Any]:
    hits: list[Any] = []
    apply(compile_path(text), document, lambda c, k: hits.append(c[k]))
    return hits


@pytest.mark.parametrize(
    ("path", "values"),
    [
        ("$.ssn", ["1"]),
        ("$['ssn']", ["1"]),
        ('$["odd key"].password', ["p0"]),
        ("$.cards[0].number", ["a"]),
        ("$.cards[-2].number", ["b"]),
        ("$.cards[7].number", []),
        ("$.cards[*].number", ["b", "a"]),
        ("$.cards.*.number", ["b", "a"]),
        ("$.missing.deeper", []),
        ("$.ssn.not_an_object", []),
        ("$.cards[0]['number']", ["a"]),
    ],
)
def test_selectors_pick_what_they_name(path: str, values: list[Any]) -> None:
    assert selected(path) == values


def test_recursive_descent_finds_every_depth() -> None:
    assert sorted(selected("$..password")) == ["p0", "p1", "p2"]
    assert selected("$..nothing") == []
    assert selected("$..password", "a string") == []


@pytest.mark.parametrize(
    "path",
    [
        "ssn",
        "$",
        "$.",
        "$..",
        "$.a[?(@.x)]",
        "$.a[0:2]",
        "$.a[0,1]",
        "$.a[",
        "$.a['unterminated]",
        "$.1abc",
        "$.a b",
        "$" + ".a" * (MAX_SELECTORS + 1),
        "$.length()",
    ],
)
def test_anything_outside_the_subset_is_refused(path: str) -> None:
    with pytest.raises(JsonPathError):
        compile_path(path)


def redaction(*paths: str, remove: bool = False, replacement: str = "***") -> Redaction:
    return Redaction(tuple(compile_path(p) for p in paths), frozenset(), remove, replacement)


def test_mask_and_remove() -> None:
    body = json.dumps(DOC).encode()
    out = json.loads(
        redact_json(
            body,
            [
                redaction("$.ssn", "$.cards[*].number", replacement="[hidden]"),
                redaction("$..password", "$.cards[2]", remove=True),
            ],
        )
    )
    assert out["ssn"] == "[hidden]"
    assert out["cards"] == [{"number": "[hidden]", "cvv": 1}, {"number": "[hidden]"}]
    assert out["profile"] == {"nested": [{}, {"other": 3}]}
    assert out["odd key"] == {}


def test_removing_every_element_of_an_array_keeps_indices_straight() -> None:
    out = json.loads(redact_json(b'{"a": [1, 2, 3, 4]}', [redaction("$.a[*]", remove=True)]))
    assert out == {"a": []}
    nested = b'{"a": {"a": {"a": 1}}, "b": [{"a": 2}, {"a": 3}]}'
    assert json.loads(redact_json(nested, [redaction("$..a", remove=True)])) == {"b": [{}, {}]}
    assert json.loads(redact_json(nested, [redaction("$..a")])) == {
        "a": "***",
        "b": [{"a": "***"}, {"a": "***"}],
    }


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"ssn=1",
        b'{"ssn": "1",',
        b'{"ssn": NaN}',
        b'{"ssn": Infinity}',
        b'{"ssn": "\xff\xfe"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"ssn": 1}{"ssn": 2}',
        b"\xef\xbb\xbf" + b'{"ssn": 1}' + b"\x00",
    ],
)
def test_hostile_bodies_are_unparseable_not_a_crash(body: bytes) -> None:
    with pytest.raises(Unparseable):
        redact_json(body, [redaction("$..ssn")])


def test_duplicate_keys_are_all_masked() -> None:
    # JSON parsers keep the last duplicate; the re-serialized body has one key, masked
    assert json.loads(redact_json(b'{"ssn": "1", "ssn": "2"}', [redaction("$.ssn")])) == {
        "ssn": "***"
    }


def test_compile_reports_every_bad_path_and_with_on_remove() -> None:
    problems: list[Problem] = []
    raw = {
        "redact": [
            {"paths": ["$.ok", "$.a[?(@.b)]"], "action": "remove", "with": "x"},
            {"paths": ["$"], "unlessScopes": ["pii:read"]},
        ],
        "onUnparseable": "passThrough",
    }
    body = compile_response_body(raw, "spec.rules[0].responseBody", problems)
    assert [p.path for p in problems] == [
        "spec.rules[0].responseBody.redact[0]",
        "spec.rules[0].responseBody.redact[0].paths[1]",
        "spec.rules[0].responseBody.redact[1].paths[0]",
    ]
    assert problems[0].message == MSG_WITH_REMOVE
    assert body is not None
    assert body.pass_unparseable
    assert body.scopes == frozenset({"pii:read"})


def test_waiving_scopes_need_all_of_them() -> None:
    problems: list[Problem] = []
    raw = {
        "redact": [
            {"paths": ["$.a"], "unlessScopes": ["x", "y"]},
            {"paths": ["$.b"]},
        ]
    }
    body = compile_response_body(raw, "r", problems)
    assert body is not None
    assert not problems
    assert len(body.redactions_for(frozenset({"x"}))) == 2
    assert len(body.redactions_for(frozenset({"x", "y", "z"}))) == 1  # $.b: nobody is exempt


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("abc"), inner),
    max_leaves=30,
)


@given(json_values)
def test_recursive_mask_leaves_no_value_behind(document: Any) -> None:
    out = orjson.loads(redact_json(orjson.dumps(document), [redaction("$..a")]))
    assert selected("$..a", out) == ["***"] * len(selected("$..a", out))
    removed = orjson.loads(redact_json(orjson.dumps(document), [redaction("$..a", remove=True)]))
    assert selected("$..a", removed) == []


def test_unparseable_messages_never_quote_the_body() -> None:
    for body in (b'{"ssn": "123-45-6789" oops}', b'{"ssn": "123-45-6789", "x": tru}'):
        with pytest.raises(Unparseable) as caught:
            redact_json(body, [redaction("$.ssn")])
        assert "123" not in str(caught.value)
        assert str(caught.value) == "the response body is not valid JSON"
