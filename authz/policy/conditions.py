"""A rule's `when` conditions, compiled once at load into what one request only has to compare.

A condition is one subject (a claim, a header or a path parameter) with one operator, or a CEL
expression alone (see celexpr). The schema allows every field; which combinations make sense is
checked here, with the messages of the CRD's x-kubernetes-validations rules so files and the API
server refuse the same documents. Everything a request would otherwise redo - lower-casing a
header name, splitting a claim path, building a set of values, compiling a regular expression or
an expression - is done here, and a problem is a Problem of the policy like any other: the
policy is refused, the good ones keep serving.

Regular expressions are RE2 (google-re2): linear time in the subject, whatever the pattern, so a
pattern such as "(a+)+$" cannot be turned against the sidecar by a long header or claim. The
package's `fullmatch` builds a match object through a generator and maps byte offsets back to
characters - most of its cost, for an answer that is only yes or no - so Pattern asks the
compiled RE2 object directly when the package exposes it (a test keeps both answers equal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from authz.errors import Problem
from authz.policy.celexpr import CelProblem, CelProgram, compile_cel

SUBJECTS = ("claim", "header", "param", "cel")
OPERATORS = (
    "equals",
    "notEquals",
    "in",
    "notIn",
    "contains",
    "containsAny",
    "containsAll",
    "matches",
    "exists",
    "equalsParam",
)
#: Operators whose operand is a list of values, compared as a set.
_SET_OPERATORS = frozenset({"in", "notIn", "containsAny", "containsAll"})

# Messages shared with the CRD's CEL rules (tests/crd/test_cel.py keeps them in step).
MSG_ONE_SUBJECT = "set exactly one of claim, header, param or cel"
MSG_ONE_OPERATOR = (
    "set exactly one operator (equals, notEquals, in, notIn, contains, containsAny, containsAll,"
    " matches, exists, equalsParam); a cel condition takes none"
)

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_ANCHOR_BOTH = getattr(getattr(re2, "_Anchor", None), "ANCHOR_BOTH", None)
_NO_MATCH = (-1, -1)


class Pattern:
    """An RE2 pattern that answers whether a whole string matches."""

    __slots__ = ("_compiled", "_raw", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled = re2.compile(pattern, _RE2_OPTIONS)
        raw = getattr(self._compiled, "_regexp", None)
        self._raw = raw if _ANCHOR_BOTH is not None and hasattr(raw, "Match") else None

    def fullmatch(self, text: str) -> bool:
        raw = self._raw
        if raw is None:
            return self._compiled.fullmatch(text) is not None
        try:
            data = text.encode()
        except UnicodeEncodeError:  # a lone surrogate from a JSON claim: matches nothing
            return False
        return bool(raw.Match(_ANCHOR_BOTH, data, 0, len(data))[0] != _NO_MATCH)


@dataclass(frozen=True, slots=True)
class Condition:
    """One compiled condition; `index` is its place in the rule's `when` list."""

    index: int
    #: "claim", "header", "param" or "cel".
    subject: str
    #: The claim path as written, the lower-case header name, the parameter name ("" for cel).
    name: str
    #: The operator, or "cel".
    operator: str
    #: The claim path split at dots (claims only).
    claim_path: tuple[str, ...] = ()
    #: The operand of equals, notEquals, contains, equalsParam.
    value: str = ""
    #: The operand of in, notIn, containsAny, containsAll.
    values: frozenset[str] = frozenset()
    #: The operand of exists.
    exists: bool = True
    regex: Pattern | None = None
    program: CelProgram | None = None

    def describe(self) -> str:
        """The condition as a person wrote it, for explanations (no request data)."""
        if self.program is not None:
            return f"cel {self.program.source!r}"
        if self.operator in _SET_OPERATORS:
            operand = "[" + ", ".join(repr(v) for v in sorted(self.values)) + "]"
        elif self.operator == "exists":
            operand = "true" if self.exists else "false"
        elif self.regex is not None:
            operand = repr(self.regex.pattern)
        else:
            operand = repr(self.value)
        return f"{self.subject} {self.name} {self.operator} {operand}"


def _one(
    raw: Mapping[str, Any], index: int, where: str, params: frozenset[str], problems: list[Problem]
) -> Condition | None:
    subjects = [s for s in SUBJECTS if s in raw]
    operators = [o for o in OPERATORS if o in raw]
    if len(subjects) != 1:
        problems.append(Problem(where, MSG_ONE_SUBJECT))
        return None
    subject = subjects[0]
    if len(operators) != (0 if subject == "cel" else 1):
        problems.append(Problem(where, MSG_ONE_OPERATOR))
        return None
    if subject == "cel":
        try:
            program = compile_cel(raw["cel"])
        except CelProblem as exc:
            problems.append(Problem(f"{where}.cel", str(exc)))
            return None
        for name in sorted(program.param_names - params):
            problems.append(Problem(f"{where}.cel", _no_param(name, params)))
        return Condition(index, "cel", "", "cel", program=program)
    operator, name = operators[0], raw[subject]
    if subject == "param" and name not in params:
        problems.append(Problem(f"{where}.param", _no_param(name, params)))
    operand = raw[operator]
    if operator == "equalsParam" and operand not in params:
        problems.append(Problem(f"{where}.equalsParam", _no_param(operand, params)))
    condition = Condition(
        index,
        subject,
        name.lower() if subject == "header" else name,
        operator,
        claim_path=tuple(name.split(".")) if subject == "claim" else (),
    )
    if operator in _SET_OPERATORS:
        return _with(condition, values=frozenset(operand))
    if operator == "exists":
        return _with(condition, exists=bool(operand))
    if operator == "matches":
        try:
            return _with(condition, regex=Pattern(operand))
        except re2.error as exc:
            detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            problems.append(Problem(f"{where}.matches", f"not a valid RE2 expression: {detail}"))
            return None
    return _with(condition, value=operand)


def _with(condition: Condition, **changes: Any) -> Condition:
    fields = {f: getattr(condition, f) for f in condition.__slots__}
    fields.update(changes)
    return Condition(**fields)


def _no_param(name: str, params: frozenset[str]) -> str:
    known = ", ".join("{" + p + "}" for p in sorted(params)) or "none"
    return (
        f"{{{name}}} is not a parameter of this rule's match.paths (they capture: {known});"
        f' add it to a path, e.g. "/items/{{{name}}}"'
    )


def compile_conditions(
    raw: Sequence[Mapping[str, Any]], where: str, *, params: frozenset[str], problems: list[Problem]
) -> tuple[Condition, ...]:
    """The compiled `when` list of one rule; `params` are the names its paths capture."""
    compiled = (_one(item, i, f"{where}[{i}]", params, problems) for i, item in enumerate(raw))
    return tuple(c for c in compiled if c is not None)
