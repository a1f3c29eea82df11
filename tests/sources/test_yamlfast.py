"""libyaml's fast path yields exactly what the pure-Python reference loader yields, or steps aside."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.sources import yamlfast
from authz.sources.yamlfiles import MAX_DEPTH, _chunks, _Loader, _parse_reference
from tests.support.tiers import examples

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"


def typed(value: Any) -> Any:
    """A value with every type spelled out, so 1 == 1.0 == True cannot hide a difference."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def fast(text: str) -> Any:
    return yamlfast.parse(text, max_depth=MAX_DEPTH)


def test_libyaml_is_there_and_limits_nesting() -> None:
    # Without it every policy file is read by the pure-Python parser, ten times slower.
    assert yamlfast.AVAILABLE


PLAIN = [
    "a: 1\nb: [x, 'y', \"z\"]\n",
    "ints: [0, -7, +3, 1_000, 0x1F, 0o17, 017, 0b101, '12', 1:30]\n",
    "floats: [1.5, -2., 1e3, 6.8523015e+5, .inf, -.Inf, .NaN, 1_0.5, 190:20:30.15]\n",
    "bools: [yes, No, on, OFF, true, False, y, n]\n",
    "nulls: [~, null, Null, '', ]\nempty:\n",
    "when: 2024-05-01T10:00:00Z\nday: 2002-12-14\n",
    "folded: >\n  one\n  two\n\nliteral: |-\n  a\n   b\nkept: |+\n  c\n\n",
    "quoted: 'it''s'\ndouble: \"tab\\there \\u00e9 \\x41\"\nplain: a # comment\n",
    "tagged: [!!str 123, !!int '7', !!float '1', !!bool 'yes', !!null '']\n",
    "dup: 1\ndup: 2\n",
    "1: int key\n2.5: float key\ntrue: bool key\n~: null key\n",
    "nested: {a: [1, {b: [2, 3]}], c: {}}\nlist: []\n",
    "- a\n- - b\n  - c\n-\n  d: e\n",
    "just a string\n",
    "unicode: \u00e9\u4e2d\U0001f600\n",
    "jwksUri: https://idp.test/keys?a=1&b=2\nanchored: &x but never aliased\n",
]


@pytest.mark.parametrize("text", PLAIN)
def test_plain_documents_take_the_fast_path_and_read_the_same(text: str) -> None:
    assert typed(fast(text)) == typed(_parse_reference(text))


UNUSUAL = [
    "a: &x 1\nb: *x\n",
    "base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n",
    "? [a, b]\n: complex key\n",
    "bin: !!binary aGVsbG8=\n",
    "set: !!set {a, b}\n",
    "when: !!timestamp 2024-05-01\n",
    "custom: !thing x\n",
    "bad: !!bool maybe\n",
    "bad: !!int twelve\n",
    "a: b: c\n",
    "a: [1, 2\n",
    "[" * 70 + "]" * 70 + "\n",
    "[" * 2000 + "]" * 2000 + "\n",
    "=: value key\n",
    "a: 1\n---\nb: 2\n",
]


@pytest.mark.parametrize("text", UNUSUAL)
def test_anything_unusual_is_left_to_the_reference_loader(text: str) -> None:
    with pytest.raises(yamlfast.NotPlain):
        fast(text)


def nested(levels: int, *, flow: bool) -> str:
    """A document `levels` nodes deep, counting the innermost scalar, as the reference counts."""
    if flow:
        return "[" * (levels - 1) + "x" + "]" * (levels - 1) + "\n"
    return "".join("  " * i + "k:\n" for i in range(levels - 2)) + "  " * (levels - 2) + "k: x\n"


@pytest.mark.parametrize("flow", [True, False])
@pytest.mark.parametrize("anchor", ["", "&a "])
def test_the_nesting_limit_is_the_references(flow: bool, anchor: str) -> None:
    deepest = anchor + nested(MAX_DEPTH, flow=flow)
    assert typed(fast(deepest)) == typed(_parse_reference(deepest))
    too_deep = anchor + nested(MAX_DEPTH + 1, flow=flow)
    with pytest.raises(yaml.YAMLError, match="nested too deeply"):
        _parse_reference(too_deep)
    with pytest.raises(yamlfast.NotPlain):
        fast(too_deep)


def test_every_fixture_reads_the_same() -> None:
    checked = 0
    for path in sorted(FIXTURES.rglob("*.*")):
        for _line, chunk in _chunks(path.read_text()):
            try:
                value = fast(chunk)
            except yamlfast.NotPlain:
                continue
            assert typed(value) == typed(_parse_reference(chunk)), path
            checked += 1
    assert checked >= 10


RESOLVED = [
    "",
    "~",
    "null",
    "NULL",
    "nul",
    "yes",
    "Yes",
    "YES",
    "yEs",
    "on",
    "Off",
    "y",
    "n",
    "true",
    "0",
    "-0",
    "+12",
    "0x1f",
    "0o7",
    "017",
    "0b11",
    "1_000",
    "1:30",
    "190:20:30",
    "1.5",
    ".5",
    "-.inf",
    ".NaN",
    "1e3",
    "6.8e+5",
    "2024-05-01",
    "2024-05-01T10:00:00Z",
    "<<",
    "=",
    "!x",
    "&a",
    "*a",
    "-",
    ".",
    "a",
    "name",
    "RS256",
    "\u00e9",
    "0.",
    "1__0",
    "--1",
    "+.inf",
]


@given(st.lists(st.sampled_from(RESOLVED) | st.text(max_size=6), min_size=1))
def test_scalars_resolve_to_the_reference_tags(values: list[str]) -> None:
    reference: Any = _Loader("")
    loader = yamlfast._Loader("")
    for value in values:
        for kind in (yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode):
            for implicit in ((True, False), (False, True), (False, False)):
                expected = reference.resolve(kind, value, implicit)
                assert loader.resolve(kind, value, implicit) == expected


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
    | st.sampled_from(["yes", "no", "~", "0x10", "1:20", "2024-05-01", ".inf", "012", "-", "? x"])
)
DATA = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(SCALARS.filter(lambda k: k == k), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DATA, st.booleans(), st.sampled_from([None, '"', "'", "|", ">"]), st.booleans())
def test_whatever_the_dumper_writes_reads_the_same(
    data: Any, flow: bool, style: str | None, unicode: bool
) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, default_style=style, allow_unicode=unicode)
    try:
        value = fast(text)
    except yamlfast.NotPlain:
        return
    assert typed(value) == typed(_parse_reference(text))
