"""Reading block by block yields exactly what yamlfast yields for the whole text, and shares
the blocks documents repeat; the regular-expression split of a stream is the line loop's."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.sources import yamlblocks, yamlfast
from authz.sources.yamlfiles import MAX_DEPTH, _chunks, _chunks_by_line
from tests.sources.test_yamlfast import PLAIN, UNUSUAL, nested, typed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"

TRICKY = [
    "a: 1\nb:\n- x\n- y\nc: z\n",
    "a:\n  b:\n  - - p\n    - q\n  -\n    k: v\n  - \n    k: w\n",
    "---\nkind: AuthPolicy\nspec:\n  hosts:\n  - a.example\n",
    "# lead\nk: v   # trailing\n  # indented comment\nm:\n  # first\n  n: o\n",
    "yes:\n  a: b\n1:\n  c: d\nnull:\n  e: f\n'quoted':\n  g: h\n",
    "k: a\n  continued\nl: b\n",
    "k: a\ncontinued\n",
    "seq:\n- a\n -b\n",
    "s:\n  - a\n  -b\n",
    "-x: 1\n",
    "k:\n    deeper: 1\n  shallower: 2\n",
    "k:\n  - a\n  k2: b\n",
    "dup:\n  a: 1\ndup:\n  b: 2\n",
    "k: [a,\n  b]\nl: {c: d,\n  e: f}\n",
    "k: [a,\nb]\n",
    "k: 'multi\n  line'\nl: \"x\n  y\"\n",
    "k: 'multi\nline'\n",
    "k: v\n\n\nl:\n\n  m: n\n\n",
    "k:\n",
    "k:\nl:\n",
    "- k: v\n  l: w\n- m\n-   n: o\n    p: q\n",
    "ints:\n  a: 12\n  b: 1.5\n  c: true\n  d: ~\n  e: 0x1F\n  f: 1_000\n",
    "path: /bench/**\nother: /items/{id}\nurl: https://a.example/x?y=1\n",
    "key with spaces: 1\nk-dash: 2\nk.dot: 3\n",
    "k: v: w\n",
    "k: -\n",
    "k: - a\n",
    "k:\n  -\n",
    "a: b # c\n",
    "\n\n",
    "# only a comment\n",
    "---\n",
    "--- \nk: v\n",
    "k: v",
    "top\n",
]


def blocks(text: str) -> Any:
    return yamlblocks.parse(text, max_depth=MAX_DEPTH)


def outcome(read: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", typed(read(text))
    except yamlfast.NotPlain:
        return "not plain", None
    except yaml.YAMLError:
        return "error", None


@pytest.mark.parametrize("text", TRICKY + PLAIN + UNUSUAL)
def test_reads_what_yamlfast_reads(text: str) -> None:
    assert outcome(blocks, text) == outcome(lambda t: yamlfast.parse(t, max_depth=MAX_DEPTH), text)


def nested_items(levels: int) -> str:
    """Sequences in sequences, one item a line, `levels` nodes deep with the scalar."""
    return "".join("  " * i + "-\n" for i in range(levels - 2)) + "  " * (levels - 2) + "- x\n"


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
@pytest.mark.parametrize("shape", ["mappings", "items", "items on one line"])
def test_the_nesting_limit_is_yamlfasts(levels: int, shape: str) -> None:
    if shape == "mappings":
        text = nested(levels, flow=False)
    elif shape == "items":
        text = nested_items(levels)
    else:
        text = "- " * (levels - 1) + "x\n"
    assert outcome(blocks, text) == outcome(lambda t: yamlfast.parse(t, max_depth=MAX_DEPTH), text)


def test_every_fixture_reads_the_same() -> None:
    checked = 0
    for path in sorted(FIXTURES.rglob("*.*")):
        for _line, chunk in _chunks(path.read_text()):
            assert outcome(blocks, chunk) == outcome(
                lambda t: yamlfast.parse(t, max_depth=MAX_DEPTH), chunk
            ), path
            checked += 1
    assert checked >= 10


def random_value(rng: random.Random, depth: int) -> Any:
    scalars = ["a", "b-c", "/x/**", "yes", "1", "1.5", "", "x y", "null", "k: v", "- z", "#"]
    if depth > 3 or rng.random() < 0.3:
        return rng.choice([*scalars, 7, None, True])
    if rng.random() < 0.5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["a", "b", "yes", "1", "k-1", "x.y", "n"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_random_documents_read_the_same() -> None:
    rng = random.Random(5)
    for _ in range(400):
        value = random_value(rng, 0)
        indent = rng.choice([2, 4])
        text = yaml.safe_dump(value, indent=indent, default_flow_style=rng.random() < 0.1)
        assert outcome(blocks, text) == outcome(
            lambda t: yamlfast.parse(t, max_depth=MAX_DEPTH), text
        ), text


ISSUER = """\
  issuers:
  - issuer: https://issuer.example
    jwks:
      keys:
      - kty: RSA
        n: {n}
        e: AQAB
"""


def policy(name: str, n: str = "abc") -> str:
    return f"kind: AuthPolicy\nmetadata:\n  name: {name}\nspec:\n" + ISSUER.format(n=n)


def test_repeated_blocks_are_one_object_and_an_edit_is_its_own() -> None:
    first, second, edited = blocks(policy("a")), blocks(policy("b")), blocks(policy("c", n="xyz"))
    assert (first["metadata"]["name"], second["metadata"]["name"]) == ("a", "b")
    assert second["spec"]["issuers"] is first["spec"]["issuers"]
    assert edited["spec"]["issuers"] is not first["spec"]["issuers"]
    assert edited["spec"]["issuers"][0]["jwks"]["keys"][0]["n"] == "xyz"
    assert first["spec"]["issuers"][0]["jwks"]["keys"][0]["n"] == "abc"


def stream(rng: random.Random) -> str:
    atoms = ["---", "...", "--- x", "... y", "a: 1", "# c", "", "  ", " #x", "-", "---\t", "\xa0a"]
    lines = [rng.choice(atoms) for _ in range(rng.randrange(8))]
    return "\n".join(lines) + rng.choice(["", "\n", "\r\n"])


def test_streams_split_as_line_by_line() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        text = stream(rng)
        assert list(_chunks(text)) == list(_chunks_by_line(text)), repr(text)
