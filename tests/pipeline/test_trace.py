"""Trace and the null trace: details are written out only when recorded, and never interpreted."""

from __future__ import annotations

import pytest

from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.pipeline.decide import decide
from authz.pipeline.request import CheckInput
from authz.pipeline.trace import NULL_TRACE, Step, Trace
from authz.policy.store import PolicyStore, SourceDocument
from tests.support.policies import auth_policy, rule

POLICY = auth_policy("t", namespace="t", rules=[rule("only", paths=["/only"], anonymous=True)])
SNAPSHOT = PolicyStore(bind=offline_provider, publish=lambda _s: None).update(
    "t", [SourceDocument("t", POLICY)]
)


def test_a_template_is_formatted_with_its_arguments() -> None:
    trace = Trace()
    trace.add("host", "pass", "{!r} -> policy {}", "a.test", "ns/p")
    assert trace.steps == [Step("host", "pass", "'a.test' -> policy ns/p")]


def test_a_function_is_called_with_its_arguments() -> None:
    calls: list[tuple[object, ...]] = []

    def describe(*args: object) -> str:
        calls.append(args)
        return "described"

    trace = Trace()
    trace.add("ratelimit", "pass", describe, 1, "two")
    assert trace.steps == [Step("ratelimit", "pass", "described")]
    assert calls == [(1, "two")]


def test_a_detail_without_arguments_is_kept_as_written() -> None:
    trace = Trace()
    trace.add("token", "fail", "braces {0} {} {.x} stay")
    assert trace.steps[0].detail == "braces {0} {} {.x} stay"


def test_the_null_trace_formats_nothing() -> None:
    def explode(*_args: object) -> str:
        raise AssertionError("the null trace built a detail")

    NULL_TRACE.add("response", "info", explode, [1], [2])
    NULL_TRACE.add("host", "pass", "{.missing}", object())  # would raise if formatted


@pytest.mark.parametrize(
    "path",
    ["/x/{0.__class__}", "/{}/{!r}/{:>99999}", "/%7B0.__init__.__globals__%7D"],
    ids=["attribute", "conversion", "encoded"],
)
async def test_request_text_is_an_argument_never_a_template(path: str) -> None:
    trace = Trace()
    request = CheckInput("GET", "t.test", path)
    await decide(SNAPSHOT, request, verifier=Verifier(), now=0.0, trace=trace)
    assert trace.steps[1:] == [
        Step("path", "pass", f"normalized to {path!r}"),
        Step("rule", "fail", f"no rule matches GET {path}"),
    ]
    trace = Trace()
    await decide(
        SNAPSHOT, CheckInput("GET", "{0.__class__}", "/"), verifier=Verifier(), now=0.0, trace=trace
    )
    assert trace.steps == [Step("host", "fail", "no policy claims host '{0.__class__}'")]
