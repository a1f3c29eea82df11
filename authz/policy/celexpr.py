"""CEL conditions: checked and compiled once at policy load, so a request only evaluates them.

The evaluator is the `cel` module of PyPI `common-expression-language` (Rust's `cel` crate behind
PyO3): a native evaluator answers a small expression in microseconds where the pure-Python
cel-python takes ten times as long. It has no cost budget of its own and its parser recurses, so
the guards are ours, applied to the source before the library sees it:

- a length cap (the CRD's maxLength) and a bracket-nesting cap, so parsing cannot run deep;
- comprehensions (`all`, `exists`, `exists_one`) are allowed but not nested, and the list
  builders `map` and `filter` not at all (the crate builds their results by copying, which turns
  one comprehension quadratic): an expression's work then grows with its own length times the
  size of the largest list it walks - claims from a trusted issuer, or the request's headers,
  which Envoy bounds;
- `matches` takes a literal pattern only, checked here: a pattern from the request would be
  compiled per request (the crate's regex engine is linear-time, its compilation is not free);
- every variable is one of claims, request, params, source (or a comprehension's own), and every
  function one the crate provides: a typo is a load error, not a silent denial.

Converting a value into CEL costs about a microsecond per map entry, so the expression's reads
are worked out here too: when `claims` is only ever read as `claims.NAME`, only those claims are
handed over, and when `request.headers` is only ever read as `request.headers['name']`, only
those headers. Both give the same answer as handing everything over (a test keeps them equal).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import cel

MAX_LENGTH = 2048
MAX_NESTING = 32
VARIABLES = frozenset({"claims", "request", "params", "source"})
#: Type names an expression may compare with `type(x) == string`.
_TYPE_NAMES = frozenset({"int", "uint", "double", "string", "bytes", "bool", "list", "map"})
_COMPREHENSIONS = frozenset({"all", "exists", "exists_one"})
_LIST_BUILDERS = frozenset({"map", "filter"})
_FUNCTIONS = frozenset(
    {
        "bytes", "contains", "double", "duration", "dyn", "endsWith", "int", "matches", "max",
        "min", "size", "startsWith", "string", "timestamp", "type", "uint", "getFullYear",
        "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours",
        "getMinutes", "getSeconds", "getMilliseconds",
    }
)  # fmt: skip
_TOKEN = re.compile(
    r"""(?P<space>\s+|//[^\n]*)
      | (?P<str>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''
                 |"(?:\\.|[^\\"\n])*"|'(?:\\.|[^\\'\n])*'))
      | (?P<ident>[_A-Za-z][_A-Za-z0-9]*)
      | (?P<num>[0-9][0-9a-fA-FxX.eEuU+-]*)
      | (?P<punct>&&|\|\||==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])""",
    re.VERBOSE | re.DOTALL,
)
_OPEN, _CLOSE = "([{", ")]}"


@cache
def _cel() -> ModuleType:
    """The evaluator, imported when the first expression is compiled: importing the package also
    imports its command-line front end (typer, rich, prompt_toolkit), which costs every process
    tens of megabytes and a noticeable part of its start, whether or not any policy uses CEL."""
    import cel

    return cel


class CelProblem(ValueError):
    """Why an expression cannot be a condition (the message names the fix)."""


@dataclass(frozen=True, slots=True)
class CelProgram:
    source: str
    program: cel.Program
    #: Which of claims, request, params, source the expression reads.
    variables: frozenset[str]
    #: The only claims it reads (None: it may read any, hand over all of them).
    claim_names: tuple[str, ...] | None
    #: The only headers it reads (None: all of them).
    header_names: tuple[str, ...] | None
    #: Path parameters it reads as params.NAME.
    param_names: frozenset[str]


def _tokens(source: str) -> Iterator[tuple[str, str]]:
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise CelProblem(f"unexpected character {source[position]!r} at offset {position}")
        position = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            yield kind, match.group()


def _literal(text: str) -> str:
    value = _cel().compile(text).execute()
    if not isinstance(value, str):
        raise CelProblem(f"{text} is not a string literal")
    return value


def _scan(source: str) -> tuple[list[tuple[str, str]], set[str]]:
    """The tokens, after the shape checks; and the comprehensions' own variable names."""
    tokens = list(_tokens(source))
    stack: list[bool] = []  # one per open bracket: does it open a comprehension?
    bound: set[str] = set()
    for index, (kind, text) in enumerate(tokens):
        after = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        before = tokens[index - 1][1] if index else ""
        if kind == "ident" and before == "." and after == "(":
            if text in _LIST_BUILDERS:
                raise CelProblem(f"{text}() is not allowed: use all(), exists() or exists_one()")
            if text in _COMPREHENSIONS:
                if any(stack):
                    raise CelProblem(f"{text}() inside another comprehension is not allowed")
                if index + 2 < len(tokens) and tokens[index + 2][0] == "ident":
                    bound.add(tokens[index + 2][1])
            if text == "matches" and not (
                index + 3 < len(tokens)
                and tokens[index + 2][0] == "str"
                and tokens[index + 3][1] == ")"
            ):
                raise CelProblem("matches() takes one string literal: s.matches('^[a-z]+$')")
        if kind == "ident" and text == "matches" and before != "." and after == "(":
            raise CelProblem("write matches() as a method: s.matches('^[a-z]+$')")
        if kind == "punct" and text in _OPEN:
            opens_comprehension = (
                text == "("
                and index >= 2
                and before in _COMPREHENSIONS
                and tokens[index - 2][1] == "."
            )
            stack.append(opens_comprehension)
            if len(stack) > MAX_NESTING:
                raise CelProblem(f"brackets nest deeper than {MAX_NESTING}")
        elif kind == "punct" and text in _CLOSE and stack:
            stack.pop()
    return tokens, bound


def _reads(tokens: list[tuple[str, str]], name: str, index_kind: str) -> tuple[str, ...] | None:
    """The keys `name` is read with (`.key` for index_kind "field", `['key']` for "index");
    None when it is also used any other way."""
    keys: dict[str, None] = {}
    for index, (kind, text) in enumerate(tokens):
        if kind != "ident" or text != name:
            continue
        if name == "headers":
            if index < 2 or tokens[index - 1][1] != "." or tokens[index - 2][1] != "request":
                continue
        elif index and tokens[index - 1][1] == ".":
            continue  # a field of something else (x.claims)
        rest = tokens[index + 1 : index + 4]
        if index_kind == "field" and len(rest) >= 2 and rest[0][1] == "." and rest[1][0] == "ident":
            if len(rest) == 3 and rest[2][1] == "(":
                return None  # a method or macro on the whole map
            keys[rest[1][1]] = None
        elif index_kind == "index" and len(rest) == 3 and rest[0][1] == "[" and rest[1][0] == "str":
            if rest[2][1] != "]":
                return None
            key = _literal(rest[1][1])
            if key != key.lower():
                raise CelProblem(f"request.headers[{key!r}]: header names are lower-case")
            keys[key] = None
        else:
            return None
    return tuple(keys)


def compile_cel(source: str) -> CelProgram:
    """Check and compile one expression; raises CelProblem saying what to change."""
    if len(source) > MAX_LENGTH:
        raise CelProblem(f"the expression is longer than {MAX_LENGTH} characters")
    tokens, bound = _scan(source)
    try:
        program = _cel().compile(source)
    except (ValueError, RuntimeError) as exc:
        raise CelProblem(" ".join(str(exc).split())[:300]) from None
    references = program.references()
    for name in references["variables"]:
        if name not in VARIABLES and name not in bound and name not in _TYPE_NAMES:
            raise CelProblem(f"unknown variable {name!r}: use claims, request, params or source")
    for name in references["functions"]:
        if name[0].isalpha() and name not in _FUNCTIONS:
            raise CelProblem(f"unknown function {name}()")
    for index, (kind, text) in enumerate(tokens):
        if kind == "ident" and text == "matches" and index + 2 < len(tokens):
            try:
                _cel().compile(f"''.matches({tokens[index + 2][1]})").execute()
            except (ValueError, RuntimeError) as exc:
                raise CelProblem(
                    " ".join(f"invalid regular expression: {exc}".split())[:300]
                ) from None
    params = _reads(tokens, "params", "field")
    return CelProgram(
        source=source,
        program=program,
        variables=frozenset(references["variables"]) & VARIABLES,
        claim_names=_reads(tokens, "claims", "field"),
        header_names=_reads(tokens, "headers", "index"),
        param_names=frozenset(params or ()),
    )


def evaluate(program: CelProgram, activation: dict[str, Any]) -> bool:
    """True only when the expression evaluates to true; an error is the caller's to handle."""
    return program.program.execute(activation) is True
