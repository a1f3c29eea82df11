"""Claims by dotted path, header rendering, and granted scopes."""

from __future__ import annotations

from typing import Any

import pytest

from authz.pipeline.claims import MAX_HEADER_VALUE, claim_at, granted_scopes, header_value

CLAIMS: dict[str, Any] = {
    "sub": "alice",
    "org": {"tenant": "t1", "ids": [1, 2], "deep": {"er": True}},
    "https://example.com/roles": ["admin", "ops"],
    "a.b": "dotted name",
    "a": {"b": "nested"},
    "zero": 0,
    "nothing": None,
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("sub",), "alice"),
        (("org", "tenant"), "t1"),
        (("org", "deep", "er"), True),
        (("org", "ids"), [1, 2]),
        (("org",), CLAIMS["org"]),
        (("https://example", "com/roles"), ["admin", "ops"]),  # a name containing dots
        (("a", "b"), "dotted name"),  # the whole name wins over the nested path
        (("zero",), 0),
        (("missing",), None),
        (("org", "missing"), None),
        (("sub", "length"), None),  # stepping into a string
        (("org", "ids", "0"), None),  # arrays are not indexed
        (("nothing", "x"), None),
    ],
)
def test_claim_at(path: tuple[str, ...], value: object) -> None:
    assert claim_at(CLAIMS, path) == value


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("alice", "alice"),
        ("with space", "with space"),
        (42, "42"),
        (-1.5, "-1.5"),
        (True, "true"),
        (False, "false"),
        (["admin", "ops"], "admin,ops"),
        ([1, True, "x"], "1,true,x"),
        ({"b": 1, "a": [1, 2]}, '{"a":[1,2],"b":1}'),
        ({"k": "a\nb"}, '{"k":"a\\nb"}'),  # JSON escapes control characters
        ("x" * MAX_HEADER_VALUE, "x" * MAX_HEADER_VALUE),
        ("caf\u00e9", "caf\u00e9"),
    ],
)
def test_header_value(value: object, rendered: str) -> None:
    assert header_value(value) == rendered


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param([], id="empty-array"),
        pytest.param("a\r\nx-evil: 1", id="crlf"),
        pytest.param("a\nb", id="lf"),
        pytest.param("a\rb", id="cr"),
        pytest.param("a\0b", id="nul"),
        pytest.param(["ok", "a\nb"], id="array-with-lf"),
        pytest.param([{"a": 1}], id="array-of-objects"),
        pytest.param([["a"]], id="nested-array"),
        pytest.param(["a", None], id="array-with-null"),
        pytest.param("x" * (MAX_HEADER_VALUE + 1), id="too-long"),
        pytest.param(["x" * MAX_HEADER_VALUE, "y"], id="array-too-long"),
    ],
)
def test_values_that_cannot_be_a_header_render_as_none(value: object) -> None:
    assert header_value(value) is None


@pytest.mark.parametrize(
    ("claims", "scope_claim", "granted"),
    [
        ({"scope": "a b  c"}, None, {"a", "b", "c"}),
        ({"scope": ""}, None, set()),
        ({"scope": ["a", "b"]}, None, {"a", "b"}),
        ({"scp": ["a", "b", 3]}, None, {"a", "b"}),
        ({"scp": "a b"}, None, {"a", "b"}),
        ({"scope": "a", "scp": ["b"]}, None, {"a"}),  # scope first
        ({"scope": 7, "scp": ["b"]}, None, {"b"}),  # unusable scope: fall back to scp
        ({}, None, set()),
        ({"realm": {"scopes": ["x", "y"]}, "scope": "a"}, ("realm", "scopes"), {"x", "y"}),
        ({"realm": {"scopes": "x y"}}, ("realm", "scopes"), {"x", "y"}),
        ({"scope": "a"}, ("realm", "scopes"), set()),  # a configured claim replaces the defaults
        ({"permissions": ["p"]}, ("permissions",), {"p"}),
        ({"roles": {"admin": True}}, ("roles",), set()),
    ],
)
def test_granted_scopes(
    claims: dict[str, Any], scope_claim: tuple[str, ...] | None, granted: set[str]
) -> None:
    assert granted_scopes(claims, scope_claim) == granted
