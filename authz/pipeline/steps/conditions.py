"""The conditions step: every `when` condition of the matched rule must hold, else 403.

It runs after the scopes, so a token without the right scopes hears insufficient_scope (which
tells the client what to ask for) before a condition is ever read. Conditions were compiled when
the policy loaded (see policy.conditions and policy.celexpr); here they are only compared, in
the order the policy lists them, and the first that does not hold answers 403 condition_failed,
naming the rule and the condition's index - never the values compared, which are token data.

Nothing here raises: a missing claim, header or parameter makes a condition false (only
`exists: false` holds then), a claim of a type the operator cannot compare is false, and a CEL
error at run time (a missing key, a wrong type, an overflow) is false and logged at debug.

How subjects read: a string is itself; a number or boolean claim reads as its JSON text ("42",
"true"); an object or null never equals anything. For the contains operators an array claim is
the list of its scalar items, any other claim a list of one, and a header the comma-separated
list Envoy makes of repeated headers.
"""

from __future__ import annotations

import logging
from typing import Any

from authz.pipeline import decision as d
from authz.pipeline.claims import claim_at
from authz.pipeline.context import Context
from authz.pipeline.decision import Decision
from authz.policy.celexpr import CelProgram, evaluate
from authz.policy.conditions import Condition

log = logging.getLogger(__name__)
_SHOWN = 80  # characters of a value an explanation shows


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # JSON's text for the numbers a JSON claim can hold
    return None


def _items(condition: Condition, value: Any) -> set[str]:
    if isinstance(value, list):
        return {t for t in map(_text, value) if t is not None}
    if condition.subject == "header" and isinstance(value, str):
        return {part.strip() for part in value.split(",")} - {""}
    text = _text(value)
    return set() if text is None else {text}


def _subject(ctx: Context, condition: Condition) -> Any:
    if condition.subject == "claim":
        return claim_at(ctx.claims, condition.claim_path)
    if condition.subject == "header":
        return ctx.request.headers.get(condition.name)
    return ctx.params.get(condition.name)


def _holds(ctx: Context, condition: Condition, value: Any) -> bool:
    operator = condition.operator
    if operator == "exists":
        return condition.exists
    if operator in ("contains", "containsAny", "containsAll"):
        items = _items(condition, value)
        if operator == "contains":
            return condition.value in items
        if operator == "containsAny":
            return not condition.values.isdisjoint(items)
        return condition.values <= items
    text = _text(value)
    if text is None:
        return False
    if operator == "equals":
        return text == condition.value
    if operator == "notEquals":
        return text != condition.value
    if operator == "in":
        return text in condition.values
    if operator == "notIn":
        return text not in condition.values
    if condition.regex is not None:  # matches
        return condition.regex.fullmatch(text)
    return text == ctx.params.get(condition.value)  # equalsParam


def _activation(ctx: Context, program: CelProgram) -> dict[str, Any]:
    variables, activation = program.variables, {}
    if "claims" in variables:
        claims, names = ctx.claims, program.claim_names
        activation["claims"] = (
            dict(claims) if names is None else {n: claims[n] for n in names if n in claims}
        )
    if "request" in variables:
        request, names = ctx.request, program.header_names
        headers = request.headers
        activation["request"] = {
            "method": request.method,
            "path": ctx.path,
            "host": request.host,
            "headers": dict(headers)
            if names is None
            else {n: headers[n] for n in names if n in headers},
        }
    if "params" in variables:
        activation["params"] = dict(ctx.params)
    if "source" in variables:
        address = ctx.address()
        activation["source"] = {"ip": "" if address is None else str(address)}
    return activation


def _cel_holds(ctx: Context, condition: Condition, program: CelProgram) -> str | None:
    """None when the expression is true, else why not."""
    try:
        if evaluate(program, _activation(ctx, program)):
            return None
        return "it evaluates to false (or to something other than true)"
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"[:200]
    except BaseException as panic:  # the native evaluator's panic is not an Exception
        if type(panic).__name__ != "PanicException":
            raise
        why = "the evaluator failed"
    log.debug("rule %r when[%d]: CEL error is false: %s", ctx.rule.name, condition.index, why)
    return f"evaluation failed, which counts as false ({why})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _refusal(condition: Condition, why: str) -> str:
    return f"when[{condition.index}] {condition.describe()} does not hold: {why}"


def check_conditions(ctx: Context) -> Decision | None:
    rule = ctx.rule
    if not rule.conditions:
        return None  # like rate limits: a rule without any says nothing in an explanation
    for condition in rule.conditions:
        program = condition.program
        if program is not None:
            why = _cel_holds(ctx, condition, program)
            if why is None:
                continue
            ctx.trace.add("conditions", "fail", _refusal, condition, why)
        else:
            value = _subject(ctx, condition)
            if value is None:
                if condition.operator == "exists" and not condition.exists:
                    continue
            elif _holds(ctx, condition, value):
                continue
            ctx.trace.add("conditions", "fail", _why_not, condition, value, ctx.params)
        return d.condition_failed(rule.name, condition.index)
    ctx.trace.add("conditions", "pass", "all {} conditions hold", len(rule.conditions))
    return None


def _why_not(condition: Condition, value: Any, params: Any) -> str:
    if value is None:
        why = f"the {condition.subject} is missing"
    elif condition.operator == "exists":
        why = f"the {condition.subject} is present"
    else:
        why = f"the {condition.subject} is {_shown(value)}"
        if condition.operator == "equalsParam":
            why += f", the parameter is {_shown(params.get(condition.value))}"
    return _refusal(condition, why)
