"""The rule step: the first rule whose methods and paths match the normalized request.

Rules are tried in the order the policy lists them, so a policy reads top to bottom like a
route table; a request no rule matches is refused (403 access_denied) - least privilege means
an endpoint nobody described is closed. A rule whose paths have "{name}" segments leaves the
values they captured for the conditions step.
"""

from __future__ import annotations

from authz.pipeline import decision as d
from authz.pipeline.context import Context
from authz.pipeline.decision import Decision


def match_rule(ctx: Context) -> Decision | None:
    method, path = ctx.request.method, ctx.path
    for rule in ctx.policy.rules:
        if rule.matches(method, path):
            ctx.rule = rule
            if rule.captures and rule.paths is not None:
                ctx.params = rule.paths.parameters(path)
            ctx.trace.add("rule", "pass", "rule {.name!r} matches {} {}", rule, method, path)
            return None
    ctx.trace.add("rule", "fail", "no rule matches {} {}", method, path)
    return d.access_denied()
